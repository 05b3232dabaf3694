/**
 * Node entry point of the client (`switchyard/node`): the client core with Node's transports —
 * `ws` for WebSocket, keep-alive http.request for long-polling and polling. WebTransport is the opt-in
 * `switchyard/node/webtransport` (node-webtransport.ts): it loads a native QUIC binding, which a
 * WebSocket client should not pay for. For https/wss against a self-signed certificate pass its PEM
 * as `transportOptions.ca` (or `rejectUnauthorized: false`): WebSocket, the polling requests and
 * the signalling fetch of the other transports then use it (undici is loaded only then: Node's
 * global fetch takes no TLS options).
 */
import { SwitchyardClient, type ClientOptions } from './client.ts';
import { connectLongPolling, connectPolling, type PollingClientOptions } from './long-polling/client.ts';
import { nodeHttpFetch } from './node-http-fetch.ts';
import type { ClientTransportFactory, ClientTransportOptions, TransportName } from './transport.ts';
import { connectWebSocketNode } from './websocket/node.ts';

/** TLS trust options Node clients accept alongside the common transport options. */
export interface NodeTlsOptions {
  ca?: string;
  rejectUnauthorized?: boolean;
}

/** A fetch that trusts `ca`, or undefined (the global fetch) when no TLS option is given. */
export function fetchTrusting(tls: NodeTlsOptions): typeof fetch | undefined {
  if (tls.ca === undefined && tls.rejectUnauthorized === undefined) return undefined;
  const undici = import('undici').then(({ Agent, fetch }) => ({ fetch, dispatcher: new Agent({ connect: { ca: tls.ca, rejectUnauthorized: tls.rejectUnauthorized } }) }));
  return (async (input: string | URL, init?: RequestInit) => {
    const { fetch, dispatcher } = await undici;
    return fetch(input, { ...(init as object), dispatcher });
  }) as unknown as typeof fetch;
}

function polling(connect: (options: PollingClientOptions) => ReturnType<ClientTransportFactory>): ClientTransportFactory {
  return (options: ClientTransportOptions & NodeTlsOptions) => connect({ ...options, fetch: nodeHttpFetch(options) });
}

export * from './client.ts';
export type * from './transport.ts';

/** Transport factories available in Node without native code. */
export const nodeConnectors: Partial<Record<TransportName, ClientTransportFactory>> = {
  websocket: connectWebSocketNode,
  'long-polling': polling(connectLongPolling),
  polling: polling(connectPolling),
};

/** Options of a Node client: `url` is the server's http(s) URL; `connectors` add or replace transports. */
export type NodeClientOptions = Omit<ClientOptions, 'connectors'> & Partial<Pick<ClientOptions, 'connectors'>>;

/** Creates a client that connects from Node. */
export function createClient(options: NodeClientOptions): SwitchyardClient {
  return new SwitchyardClient({ ...options, connectors: { ...nodeConnectors, ...options.connectors } });
}
