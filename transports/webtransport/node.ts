/**
 * `webtransport` client for Node: the shared client over our engine's WebTransport class. `ca`
 * (PEM) is trusted when the server publishes no certificate hash (a CA-signed certificate).
 */
import type { Connection } from '../transport.ts';
import { connectWebTransport, type WebTransportClientOptions, type WebTransportConstructor } from './client.ts';
import { WebTransport, type WebTransportOptions } from './engine/client.ts';

export function connectWebTransportNode(options: WebTransportClientOptions & { ca?: string }): Connection {
  const { ca } = options;
  const WebTransportClass =
    ca === undefined
      ? WebTransport
      : class extends WebTransport {
          constructor(url: string, init: WebTransportOptions = {}) {
            super(url, { ...init, ca });
          }
        };
  return connectWebTransport({ ...options, WebTransport: WebTransportClass as unknown as WebTransportConstructor });
}
