/**
 * `switchyard/node/webtransport`: the Node client with WebTransport too, over our HTTP/3 engine
 * on quiche (`@matrixai/quic`, a native binding). Same API as `switchyard/node`.
 */
import { SwitchyardClient } from './client.ts';
import { fetchTrusting, nodeConnectors as withoutWebTransport, type NodeClientOptions, type NodeTlsOptions } from './node-client.ts';
import type { ClientTransportFactory, ClientTransportOptions, TransportName } from './transport.ts';
import type { WebTransportClientOptions } from './webtransport/client.ts';
import { connectWebTransportNode } from './webtransport/node.ts';

export * from './node-client.ts';
export type { WebTransportClientOptions } from './webtransport/client.ts';

/** The `webtransport` connector for Node (add it to `connectors` of a `switchyard/node` client). */
export const webtransport: ClientTransportFactory = (options: ClientTransportOptions & NodeTlsOptions & Partial<WebTransportClientOptions>) =>
  connectWebTransportNode({ ...options, fetch: fetchTrusting(options) });

/** Transport factories available in Node, WebTransport included. */
export const nodeConnectors: Partial<Record<TransportName, ClientTransportFactory>> = { ...withoutWebTransport, webtransport };

/** Creates a client that connects from Node over any transport, WebTransport included. */
export function createClient(options: NodeClientOptions): SwitchyardClient {
  return new SwitchyardClient({ ...options, connectors: { ...nodeConnectors, ...options.connectors } });
}
