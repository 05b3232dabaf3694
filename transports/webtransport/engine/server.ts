/**
 * WebTransport over HTTP/3 server: a UDP endpoint whose QUIC connections each get an HTTP/3
 * connection; CONNECTs are routed by path (`route()`), or decided by an `onRequest` hook, and
 * accepted sessions go to `onSession`. `close()` sends GOAWAY and DRAIN, gives sessions a moment,
 * then closes every connection and the socket.
 */
import { H3Connection, type ConnectRequest } from './h3-connection.ts';
import { H3ErrorCode } from '../h3/errors.ts';
import { deriveServerKeys } from './address-validation.ts';
import { LOOPBACK_UDP_PAYLOAD, QuicEndpoint, quicConfig, type AdmissionCounters } from './quic.ts';
import type { WebTransportSession } from './session.ts';

export interface WebTransportServerOptions {
  host?: string;
  /** UDP port; 0 picks one. */
  port: number;
  certPem: string;
  keyPem: string;
  /** QUIC idle timeout (ms). Default 30 000. */
  idleTimeoutMs?: number;
  /** Per-stream receive window (bytes). */
  streamWindow?: number;
  /**
   * Handshakes in progress at which new clients must first complete a Retry round trip (RFC 9000
   * §8.1.2); 0: always. Default 16: a quiet server answers in one round trip, a flooded one keeps
   * at most this many unvalidated connections (about 95 KB each).
   */
  retryAfterHandshakes?: number;
  /** Handshakes in progress beyond which new Initials are dropped (counted). Default 512. */
  maxHandshakes?: number;
  /** A handshake not complete after this long is closed (ms). Default 10 000. */
  handshakeTimeoutMs?: number;
  /**
   * Static secret for Retry tokens and stateless reset tokens. Default: derived from `keyPem`, so
   * a server restarted with the same certificate (kept under certs/generated) resets the
   * connections of its previous run, and accepts the Retry tokens it issued.
   */
  statelessSecret?: string | Uint8Array;
}

export interface WebTransportServerStats extends AdmissionCounters {
  connections: number;
  /** Connections whose handshake is in progress. */
  handshakes: number;
  routes: number;
  sessions: number;
  streams: number;
}

export class WebTransportServer {
  readonly #endpoint: QuicEndpoint;
  readonly #connections = new Set<H3Connection>();
  readonly #paths = new Set<string>();
  #requestHook: ((request: ConnectRequest) => { status: number }) | undefined;
  #connectionErrors = 0;
  #sessionHandler: ((session: WebTransportSession) => void) | undefined;

  constructor(readonly options: WebTransportServerOptions) {
    const type = options.host?.includes(':') ? 'udp6' : 'udp4';
    this.#endpoint = new QuicEndpoint('server', quicConfig('server', options), type, quicConfig('server', { ...options, maxUdpPayload: LOOPBACK_UDP_PAYLOAD }), {
      keys: deriveServerKeys(options.statelessSecret ?? options.keyPem),
      retryAfterHandshakes: options.retryAfterHandshakes ?? 16,
      maxHandshakes: options.maxHandshakes ?? 512,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
    });
    this.#endpoint.onAccept = (quic) => {
      const h3 = new H3Connection(quic, 'server', {
        request: (request) => this.#decide(request),
        session: (session) => this.#sessionHandler?.(session),
        closed: (info) => {
          this.#connections.delete(h3);
          if (info?.local && info.code !== H3ErrorCode.NO_ERROR) this.#connectionErrors++;
        },
      });
      quic.handler = h3;
      this.#connections.add(h3);
    };
  }

  /** Accepts CONNECTs to this path (the part before any query). */
  route(path: string): this {
    this.#paths.add(path);
    return this;
  }

  /** Decides CONNECTs itself (200 accepts; 403, 404… reject), instead of the route table. */
  onRequest(hook: (request: ConnectRequest) => { status: number }): this {
    this.#requestHook = hook;
    return this;
  }

  onSession(handler: (session: WebTransportSession) => void): this {
    this.#sessionHandler = handler;
    return this;
  }

  async listen(): Promise<{ port: number }> {
    const local = await this.#endpoint.bind(this.options.port, this.options.host ?? '127.0.0.1');
    return { port: local.port };
  }

  /** Connections this server closed with an error (a peer broke HTTP/3 or QUIC). */
  get connectionErrors(): number {
    return this.#connectionErrors;
  }

  /** Packets and bytes through the UDP socket. */
  get socketCounters(): QuicEndpoint['counters'] {
    return this.#endpoint.counters;
  }

  /** Sizes of the internal maps (for leak checks and the lab) and the admission counters. */
  stats(): WebTransportServerStats {
    let sessions = 0;
    let streams = 0;
    for (const connection of this.#connections) {
      sessions += connection.sessions.size;
      streams += connection.streamCount;
    }
    return { connections: this.#endpoint.connectionCount, handshakes: this.#endpoint.handshakeCount, routes: this.#endpoint.routeCount, sessions, streams, ...this.#endpoint.admissionCounters };
  }

  async close(graceMs = 1_000): Promise<void> {
    for (const connection of this.#connections) connection.goaway();
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && [...this.#connections].some((c) => c.sessions.size > 0)) await new Promise((resolve) => setTimeout(resolve, 20));
    for (const connection of this.#connections) connection.io.close(true, H3ErrorCode.NO_ERROR, 'server shutting down');
    await new Promise((resolve) => setTimeout(resolve, 20));
    await this.#endpoint.close();
  }

  #decide(request: ConnectRequest): { status: number } {
    if (this.#requestHook) return this.#requestHook(request);
    return { status: this.#paths.has(request.path.split('?')[0]!) ? 200 : 404 };
  }
}
