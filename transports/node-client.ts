/**
 * Node entry point of the client: the client core with Node's transports (`ws` for WebSocket,
 * fetch for long-polling and polling). For https/wss against a self-signed certificate pass its PEM
 * as `transportOptions.ca` (or `rejectUnauthorized: false`): both WebSocket and fetch then use it.
 */
import { Agent, fetch as undiciFetch } from 'undici';
import { SwitchyardClient, type ClientOptions } from './client.ts';
import { connectLongPolling, connectPolling, type PollingClientOptions } from './long-polling/client.ts';
import type { ClientTransportFactory, ClientTransportOptions, TransportName } from './transport.ts';
import { connectWebRtcNode } from './webrtc/node.ts';
import { loadWrtc } from './webrtc/wrtc.ts';
import { connectWebSocketNode } from './websocket/node.ts';
import { connectWebTransportNode } from './webtransport/node.ts';

/** TLS trust options Node clients accept alongside the common transport options. */
export interface NodeTlsOptions {
  ca?: string;
  rejectUnauthorized?: boolean;
}

/** A fetch that trusts `ca` (Node's global fetch takes no TLS options). */
function fetchTrusting(tls: NodeTlsOptions): typeof fetch | undefined {
  if (tls.ca === undefined && tls.rejectUnauthorized === undefined) return undefined;
  const dispatcher = new Agent({ connect: { ca: tls.ca, rejectUnauthorized: tls.rejectUnauthorized } });
  return ((input: string | URL, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher })) as unknown as typeof fetch;
}

function polling(connect: (options: PollingClientOptions) => ReturnType<ClientTransportFactory>): ClientTransportFactory {
  return (options: ClientTransportOptions & NodeTlsOptions) => connect({ ...options, fetch: fetchTrusting(options) });
}

export * from './client.ts';
export type * from './transport.ts';

/** Transport factories available in Node. */
export const nodeConnectors: Partial<Record<TransportName, ClientTransportFactory>> = {
  websocket: connectWebSocketNode,
  'long-polling': polling(connectLongPolling),
  polling: polling(connectPolling),
  webtransport: (options: ClientTransportOptions & NodeTlsOptions) => connectWebTransportNode({ ...options, fetch: fetchTrusting(options) }),
  webrtc: (options: ClientTransportOptions & NodeTlsOptions) => connectWebRtcNode({ ...options, fetch: fetchTrusting(options) }),
};

/** Creates a client that connects from Node. */
export function createClient(options: Omit<ClientOptions, 'connectors'> & Partial<Pick<ClientOptions, 'connectors'>>): SwitchyardClient {
  return new SwitchyardClient({ ...options, connectors: { ...nodeConnectors, ...options.connectors }, peers: { loadRTCPeerConnection: loadWrtc, ...options.peers } });
}
