/** `webtransport` client for Node: the shared client over our engine's WebTransport class. */
import type { Connection } from '../transport.ts';
import { connectWebTransport, type WebTransportClientOptions, type WebTransportConstructor } from './client.ts';
import { WebTransport } from './engine/client.ts';

export function connectWebTransportNode(options: WebTransportClientOptions): Connection {
  return connectWebTransport({ ...options, WebTransport: WebTransport as unknown as WebTransportConstructor });
}
