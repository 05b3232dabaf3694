/**
 * The `webtransport` transport, server side: the HTTP/3 engine on a UDP port, accepting sessions
 * at `path` (default `/wt`) and handing each over as a uniform Connection as soon as the session
 * is established. It is still 'connecting' until the client opens its reliable stream (sends
 * queue meanwhile); handing it over already then lets the router's hello timeout and connection
 * limit bound a session that never opens that stream and keeps QUIC alive with datagrams.
 */
import type { Connection, ServerTransportOptions, TransportServer } from '../transport.ts';
import { CloseCode } from '../transport.ts';
import { WebTransportConnection } from './connection.ts';
import { WebTransportServer, type WebTransportServerOptions as EngineOptions } from './engine/server.ts';

/** The engine's QUIC admission settings (Retry, handshake bounds, stateless reset secret). */
export type WebTransportQuicOptions = Pick<EngineOptions, 'retryAfterHandshakes' | 'maxHandshakes' | 'handshakeTimeoutMs' | 'statelessSecret' | 'idleTimeoutMs'>;

export interface WebTransportServerOptions extends ServerTransportOptions {
  host?: string;
  /** UDP port (0 picks one). */
  port: number;
  certPem: string;
  keyPem: string;
  path?: string;
  quic?: WebTransportQuicOptions;
}

export class WebTransportTransportServer implements TransportServer {
  readonly name = 'webtransport' as const;
  readonly path: string;
  readonly engine: WebTransportServer;
  readonly #connections = new Set<Connection>();
  #handler: ((connection: Connection) => void) | undefined;

  constructor(readonly options: WebTransportServerOptions) {
    this.path = options.path ?? '/wt';
    this.engine = new WebTransportServer({ ...options.quic, host: options.host, port: options.port, certPem: options.certPem, keyPem: options.keyPem }).route(this.path);
    this.engine.onSession((session) => {
      const connection = new WebTransportConnection(session, {
        role: 'server',
        backpressure: options.backpressure,
        laneFallback: options.laneFallback,
        maxMessageSize: options.maxMessageSize,
      });
      this.#connections.add(connection);
      void connection.closed.then(() => this.#connections.delete(connection));
      this.#handler?.(connection);
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
