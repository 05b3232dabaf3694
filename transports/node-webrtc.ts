/**
 * `switchyard/node/webrtc`: the Node client with WebRTC data channels too — the `webrtc` transport
 * and `client.peer()` — over `@roamhq/wrtc` (libwebrtc, a native binding, loaded at the first
 * peer connection). Same API as `switchyard/node`; combine with `switchyard/node/webtransport`
 * by passing `connectors: { webtransport }`.
 */
import { SwitchyardClient } from './client.ts';
import { fetchTrusting, nodeConnectors as withoutWebRtc, type NodeClientOptions, type NodeTlsOptions } from './node-client.ts';
import type { ClientTransportFactory, ClientTransportOptions, TransportName } from './transport.ts';
import type { WebRtcClientOptions } from './webrtc/client.ts';
import { connectWebRtcNode } from './webrtc/node.ts';
import { loadWrtc } from './webrtc/wrtc.ts';

export * from './node-client.ts';
export type { WebRtcClientOptions } from './webrtc/client.ts';

/** The `webrtc` connector for Node (add it to `connectors` of any Node client). */
export const webrtc: ClientTransportFactory = (options: ClientTransportOptions & NodeTlsOptions & Partial<WebRtcClientOptions>) =>
  connectWebRtcNode({ ...options, fetch: fetchTrusting(options) });

/** Transport factories available in Node, WebRTC included. */
export const nodeConnectors: Partial<Record<TransportName, ClientTransportFactory>> = { ...withoutWebRtc, webrtc };

/** Creates a client that connects from Node over any transport, WebRTC included, and can `peer()` with other clients. */
export function createClient(options: NodeClientOptions): SwitchyardClient {
  return new SwitchyardClient({ ...options, connectors: { ...nodeConnectors, ...options.connectors }, peers: { loadRTCPeerConnection: loadWrtc, ...options.peers } });
}
