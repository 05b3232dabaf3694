/**
 * Browser entry point of the client: the client core with the browser's native transports
 * (WebSocket, fetch for long-polling and polling, WebTransport and RTCPeerConnection where present).
 */
import { SwitchyardClient, type ClientOptions } from './client.ts';
import { connectLongPolling, connectPolling } from './long-polling/client.ts';
import type { ClientTransportFactory, TransportName } from './transport.ts';
import { connectWebRtc } from './webrtc/client.ts';
import { connectWebSocket } from './websocket/client.ts';
import { connectWebTransport } from './webtransport/client.ts';

export * from './client.ts';
export type * from './transport.ts';

/** Transport factories available in this browser. */
export const browserConnectors: Partial<Record<TransportName, ClientTransportFactory>> = {
  ...(typeof WebSocket === 'function' ? { websocket: (options) => connectWebSocket(options) } : {}),
  'long-polling': connectLongPolling,
  polling: connectPolling,
  ...(typeof (globalThis as { WebTransport?: unknown }).WebTransport === 'function' ? { webtransport: connectWebTransport } : {}),
  ...(typeof (globalThis as { RTCPeerConnection?: unknown }).RTCPeerConnection === 'function' ? { webrtc: connectWebRtc } : {}),
};

/** Creates a client that connects from the browser; `url` defaults to this page's origin. */
export function createClient(options: Omit<ClientOptions, 'connectors' | 'url'> & Partial<Pick<ClientOptions, 'connectors' | 'url'>>): SwitchyardClient {
  return new SwitchyardClient({ url: location.origin, ...options, connectors: { ...browserConnectors, ...options.connectors } });
}
