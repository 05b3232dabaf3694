/** Test fixture (transports/webrtc/webrtc.test.ts): connects over webrtc and sends until killed. */
import { connectWebRtcNode } from '../transports/webrtc/node.ts';

const connection = connectWebRtcNode({ url: process.argv[2]! });
await connection.opened;
process.stdout.write('sending\n');
setInterval(() => {
  if (connection.writable) connection.send(new Uint8Array(16 * 1024));
}, 1);
