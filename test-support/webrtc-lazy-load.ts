/** Test fixture (transports/webrtc/webrtc.test.ts): is wrtc's native binding mapped after a WebSocket client ran, and after a webrtc one? */
import { readFileSync } from 'node:fs';
import { startServer } from '../server/index.ts';
import { createClient } from '../transports/node-client.ts';
import { webrtc as webrtcConnector } from '../transports/node-webrtc.ts';

const wrtcMapped = () => readFileSync('/proc/self/maps', 'utf8').includes('wrtc.node');
const server = await startServer({ port: 0, certificate: 'none' });
const websocket = createClient({ url: server.urls.http, transports: 'websocket' });
await websocket.connect();
await websocket.send(websocket.id!, 'hi', { ack: true });
const afterWebSocket = wrtcMapped();
const webrtc = createClient({ url: server.urls.http, transports: 'webrtc', connectors: { webrtc: webrtcConnector } });
await webrtc.connect();
const afterWebRtc = wrtcMapped();
websocket.close();
webrtc.close();
await server.close();
process.stdout.write(JSON.stringify({ afterWebSocket, afterWebRtc }));
process.exit(0);
