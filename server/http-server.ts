/**
 * One TCP port for plain HTTP and HTTPS: the first byte of a connection tells them apart (0x16 is
 * a TLS handshake record), so `http://` and `https://` (ws:// and wss://) share a port number,
 * the same number WebTransport uses on UDP. Requests and upgrades go to the transports first,
 * then to the app's handler (lab files, info endpoints). Malformed HTTP gets a 400 and a close
 * of that socket only.
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
}

const TLS_HANDSHAKE = 0x16;

/**
 * Gives a fresh TCP connection to `secure` when its first byte starts a TLS handshake, else to
 * `plain` — after peeking at that byte without consuming it.
 */
export function handOverByFirstByte(socket: net.Socket, plain: http.Server, secure: https.Server | undefined): void {
  socket.on('error', () => socket.destroy());
  socket.once('readable', () => {
    const first = socket.read(1) as Buffer | null;
    if (!first) {
      socket.once('readable', () => socket.destroy());
      return;
    }
    socket.unshift(first);
    (first[0] === TLS_HANDSHAKE && secure ? secure : plain).emit('connection', socket);
  });
}

export class DualHttpServer {
  readonly #listener: net.Server;
  readonly #http: http.Server;
  readonly #https: https.Server | undefined;
  readonly #sockets = new Set<net.Socket>();

  constructor(readonly options: DualHttpServerOptions) {
    const handleRequest = (request: http.IncomingMessage, response: http.ServerResponse) => {
      for (const transport of options.transports) if (transport.handleRequest?.(request, response)) return;
      options.fallback(request, response);
    };
    const handleUpgrade = (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      for (const transport of options.transports) if (transport.handleUpgrade?.(request, socket, head)) return;
      if (options.upgrade?.(request, socket, head)) return;
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    };
    const serverOptions = { maxHeaderSize: options.maxHeaderSize ?? 16 * 1024, keepAliveTimeout: 30_000, requestTimeout: 60_000 };
    this.#http = http.createServer(serverOptions, handleRequest);
    this.#https = options.tls ? https.createServer({ ...serverOptions, cert: options.tls.certPem, key: options.tls.keyPem }, handleRequest) : undefined;
    for (const server of [this.#http, this.#https]) {
      if (!server) continue;
      server.on('upgrade', handleUpgrade);
      server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
        // Malformed HTTP (or a TLS failure): answer this one socket, keep serving everyone else.
        if (socket.writable && error.code !== 'ECONNRESET') socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        else socket.destroy();
      });
    }
    this.#listener = net.createServer({ noDelay: true }, (socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      handOverByFirstByte(socket, this.#http, this.#https);
    });
  }

  /** Starts listening; resolves with the bound port. */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#listener.once('error', reject);
      this.#listener.listen(this.options.port, this.options.host, () => {
        this.#listener.off('error', reject);
        resolve((this.#listener.address() as net.AddressInfo).port);
      });
    });
  }

  /** Stops accepting and destroys lingering sockets (after the transports closed theirs). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#listener.close(() => resolve());
      this.#http.closeAllConnections();
      this.#https?.closeAllConnections();
      for (const socket of this.#sockets) socket.destroy();
    });
  }
}
