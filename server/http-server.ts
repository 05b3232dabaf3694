/**
 * One TCP port for plain HTTP and HTTPS: the first byte of a connection tells them apart (0x16 is
 * a TLS handshake record), so `http://` and `https://` (ws:// and wss://) share a port number,
 * the same number WebTransport uses on UDP. Requests and upgrades go to the transports first,
 * then to the app's handler (lab files, info endpoints). Malformed HTTP gets a 400 and a close
 * of that socket only; a handler that throws gets a 500 (or a destroyed socket) for that request
 * only: nothing one request does can throw out of the server.
 *
 * Every stage of a connection has a deadline, so stalled peers cannot pile up descriptors:
 * the first byte (`firstByteTimeoutMs`), the TLS handshake (`tlsHandshakeTimeoutMs`), each request's
 * header block (`headersTimeoutMs`, answered 408), each request's body (`requestTimeoutMs`) and an
 * idle keep-alive connection between requests (`idleTimeoutMs`). None applies to a request whose
 * headers arrived and that is being answered (a held long-poll) or to an upgraded WebSocket (the
 * router's heartbeat and liveness timeout watch those).
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { HttpTransportServer } from '../transports/http-transport-server.ts';

export interface DualHttpServerOptions {
  host: string;
  port: number;
  /** PEM certificate and key for HTTPS; without them only plain HTTP is served. */
  tls?: { certPem: string; keyPem: string } | undefined;
  transports: readonly HttpTransportServer[];
  /** Everything the transports do not claim. */
  fallback: (request: http.IncomingMessage, response: http.ServerResponse) => void;
  /** Upgrades the transports do not claim; true when it took the socket (else 404). */
  upgrade?: (request: http.IncomingMessage, socket: Duplex, head: Buffer) => boolean;
  /** Largest request header block (bytes). */
  maxHeaderSize?: number;
  /** Deadlines per connection stage (ms); see TCP_TIMEOUT_DEFAULTS. */
  timeouts?: TcpTimeouts;
}

/** Deadlines on the TCP port, in ms. */
export interface TcpTimeouts {
  /** From accept to the first byte (which picks HTTP or TLS); then the socket is destroyed. */
  firstByteTimeoutMs?: number;
  /** From the first byte to a finished TLS handshake; then the socket is destroyed. */
  tlsHandshakeTimeoutMs?: number;
  /** From the start of a request (or of the connection) to its complete header block; then 408 and close. */
  headersTimeoutMs?: number;
  /** From the start of a request to its complete body; then 408 and close. */
  requestTimeoutMs?: number;
  /** A keep-alive connection with no request in progress is closed after this long. */
  idleTimeoutMs?: number;
}

export const TCP_TIMEOUT_DEFAULTS: Required<TcpTimeouts> = {
  firstByteTimeoutMs: 10_000,
  tlsHandshakeTimeoutMs: 10_000,
  headersTimeoutMs: 20_000,
  requestTimeoutMs: 60_000,
  idleTimeoutMs: 30_000,
};

const TLS_HANDSHAKE = 0x16;

/**
 * Gives a fresh TCP connection to `secure` when its first byte starts a TLS handshake, else to
 * `plain` — after peeking at that byte without consuming it.
 */
export function handOverByFirstByte(socket: net.Socket, plain: http.Server, secure: https.Server | undefined, firstByteTimeoutMs = TCP_TIMEOUT_DEFAULTS.firstByteTimeoutMs): void {
  socket.on('error', () => socket.destroy());
  const timer = setTimeout(() => socket.destroy(), firstByteTimeoutMs);
  socket.once('close', () => clearTimeout(timer));
  socket.once('readable', () => {
    clearTimeout(timer);
    const first = socket.read(1) as Buffer | null;
    if (!first) {
      socket.once('readable', () => socket.destroy());
      return;
    }
    socket.unshift(first);
    (first[0] === TLS_HANDSHAKE && secure ? secure : plain).emit('connection', socket);
  });
}

/** Runs one request or upgrade handler; a throw answers that request (500) or ends that socket, never the server. */
function guarded<A extends unknown[]>(handler: (...args: A) => void, fail: (...args: A) => void): (...args: A) => void {
  return (...args: A) => {
    try {
      handler(...args);
    } catch {
      fail(...args);
    }
  };
}

/** A request handler whose throw answers that request with 500 (or cuts it, if the answer had begun). */
export function guardedRequest(handler: (request: http.IncomingMessage, response: http.ServerResponse) => void): (request: http.IncomingMessage, response: http.ServerResponse) => void {
  return guarded(handler, (_request, response) => {
    if (response.headersSent) response.destroy();
    else response.writeHead(500, { 'content-type': 'application/json', connection: 'close' }).end(JSON.stringify({ error: { code: 'ERR_INTERNAL', message: 'internal error' } }));
  });
}

/** An upgrade handler whose throw ends that socket only. */
export function guardedUpgrade(handler: (request: http.IncomingMessage, socket: Duplex, head: Buffer) => void): (request: http.IncomingMessage, socket: Duplex, head: Buffer) => void {
  return guarded(handler, (_request, socket) => void socket.destroy());
}

export class DualHttpServer {
  readonly #listener: net.Server;
  readonly #http: http.Server;
  readonly #https: https.Server | undefined;
  readonly #sockets = new Set<net.Socket>();
  readonly #firstByteTimeoutMs: number;

  constructor(readonly options: DualHttpServerOptions) {
    const handleRequest = guardedRequest((request, response) => {
      for (const transport of options.transports) if (transport.handleRequest?.(request, response)) return;
      options.fallback(request, response);
    });
    const handleUpgrade = guardedUpgrade((request, socket, head) => {
      for (const transport of options.transports) if (transport.handleUpgrade?.(request, socket, head)) return;
      if (options.upgrade?.(request, socket, head)) return;
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    });
    const timeouts = { ...TCP_TIMEOUT_DEFAULTS, ...definedOnly(options.timeouts ?? {}) };
    this.#firstByteTimeoutMs = timeouts.firstByteTimeoutMs;
    const serverOptions: http.ServerOptions = {
      maxHeaderSize: options.maxHeaderSize ?? 16 * 1024,
      keepAliveTimeout: timeouts.idleTimeoutMs,
      headersTimeout: timeouts.headersTimeoutMs,
      requestTimeout: timeouts.requestTimeoutMs,
      // Node checks the header and request deadlines this often (its default is 30 s).
      connectionsCheckingInterval: Math.max(10, Math.min(1_000, timeouts.headersTimeoutMs / 4)),
    };
    this.#http = http.createServer(serverOptions, handleRequest);
    this.#https = options.tls ? https.createServer({ ...serverOptions, handshakeTimeout: timeouts.tlsHandshakeTimeoutMs, cert: options.tls.certPem, key: options.tls.keyPem }, handleRequest) : undefined;
    // A failed or timed-out handshake: Node reports it here and leaves the socket open.
    this.#https?.on('tlsClientError', (_error: Error, socket: Duplex) => socket.destroy());
    for (const server of [this.#http, this.#https]) {
      if (!server) continue;
      // These inner servers never listen (the listener below hands them sockets), and Node starts
      // its header/request deadline checks on 'listening': start them here.
      server.emit('listening');
      server.on('upgrade', handleUpgrade);
      server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
        // Malformed HTTP, or a header/request deadline passed: answer this one socket, keep serving everyone else.
        const status = error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
        if (socket.writable && error.code !== 'ECONNRESET') socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        else socket.destroy();
      });
    }
    this.#listener = net.createServer({ noDelay: true }, (socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      handOverByFirstByte(socket, this.#http, this.#https, this.#firstByteTimeoutMs);
    });
  }

  /** Starts listening; resolves with the bound port. */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#listener.once('error', reject);
      // A deep accept queue (the kernel caps it at somaxconn): a burst of connects is accepted, and so
      // held to the deadlines above, instead of overflowing into half-open connections.
      this.#listener.listen({ port: this.options.port, host: this.options.host, backlog: 4096 }, () => {
        this.#listener.off('error', reject);
        resolve((this.#listener.address() as net.AddressInfo).port);
      });
    });
  }

  /** Stops accepting and destroys lingering sockets (after the transports closed theirs). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#listener.close(() => resolve());
      // Stops Node's deadline checks (started by the 'listening' emitted in the constructor).
      this.#http.close();
      this.#https?.close();
      this.#http.closeAllConnections();
      this.#https?.closeAllConnections();
      for (const socket of this.#sockets) socket.destroy();
    });
  }
}

/** The entries whose value is not undefined (options given as undefined keep their defaults). */
function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}
