/**
 * The `webtransport` transport, server side: the HTTP/3 engine on a UDP port, accepting sessions
 * at `path` (default `/wt`) and handing each over as a uniform Connection once the client opened
 * its reliable stream.
 */
import type { Connection, ServerTransportOptions, TransportServer } from '../transport.ts';
import { CloseCode } from '../transport.ts';
import { WebTransportConnection } from './connection.ts';
import { WebTransportServer } from './engine/server.ts';

export interface WebTransportServerOptions extends ServerTransportOptions {
  host?: string;
  /** UDP port (0 picks one). */
  port: number;
  certPem: string;
  keyPem: string;
  path?: string;
}

export class WebTransportTransportServer implements TransportServer {
  readonly name = 'webtransport' as const;
  readonly path: string;
  readonly engine: WebTransportServer;
  readonly #connections = new Set<Connection>();
  #handler: ((connection: Connection) => void) | undefined;

  constructor(readonly options: WebTransportServerOptions) {
    this.path = options.path ?? '/wt';
    this.engine = new WebTransportServer({ host: options.host, port: options.port, certPem: options.certPem, keyPem: options.keyPem }).route(this.path);
    this.engine.onSession((session) => {
      const connection = new WebTransportConnection(session, {
        role: 'server',
        backpressure: options.backpressure,
        laneFallback: options.laneFallback,
        maxMessageSize: options.maxMessageSize,
      });
      this.#connections.add(connection);
      void connection.closed.then(() => this.#connections.delete(connection));
      connection.on('open', () => this.#handler?.(connection));
    });
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  onConnection(handler: (connection: Connection) => void): void {
    this.#handler = handler;
  }

  /** Binds the UDP port; resolves with it. */
  listen(): Promise<{ port: number }> {
    return this.engine.listen();
  }

  async close(): Promise<void> {
    for (const connection of this.#connections) connection.close(CloseCode.goingAway, 'server shutting down');
    await this.engine.close(500);
  }
}
