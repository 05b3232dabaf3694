/**
 * Node entry point of the client: the client core with Node's transports (`ws` for WebSocket,
 * global fetch for long-polling and polling).
 */
import { SwitchyardClient, type ClientOptions } from './client.ts';
import { connectLongPolling } from './long-polling/client.ts';
import { connectPolling } from './polling/client.ts';
import type { ClientTransportFactory, TransportName } from './transport.ts';
import { connectWebSocketNode } from './websocket/node.ts';

export * from './client.ts';
export type * from './transport.ts';

/** Transport factories available in Node. */
export const nodeConnectors: Partial<Record<TransportName, ClientTransportFactory>> = {
  websocket: connectWebSocketNode,
  'long-polling': connectLongPolling,
  polling: connectPolling,
};

/** Creates a client that connects from Node. */
export function createClient(options: Omit<ClientOptions, 'connectors'> & Partial<Pick<ClientOptions, 'connectors'>>): SwitchyardClient {
  return new SwitchyardClient({ ...options, connectors: { ...nodeConnectors, ...options.connectors } });
}
