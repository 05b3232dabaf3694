/**
 * The Switchyard server (PRODUCT.md §4): every transport in one process, every connection handed
 * to one Router, so clients on different transports talk to each other.
 *
 * - `startServer()` listens itself. TCP port: plain HTTP and HTTPS on the same number
 *   (long-polling, polling, WebSocket upgrade, `/info`); UDP port of the same number: WebTransport
 *   over HTTP/3.
 * - `attach()` serves the HTTP transports from an existing `http`/`https` server (Express,
 *   Fastify, …), and WebTransport on a UDP port when given a certificate.
 *
 * The core knows nothing of the lab or the benchmarks: extra routes come in as `plugins`.
 */
import type http from 'node:http';
import type https from 'node:https';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { certificateFromPem, createCertificate, loadOrCreateCertificate, MAX_VALIDITY_DAYS, type CertificateBundle } from '../certs/index.ts';
import type { Payload } from '../transports/codec/envelope.ts';
import type { HttpTransportServer } from '../transports/http-transport-server.ts';
import type { BackpressureOptions, TransportName } from '../transports/transport.ts';
import packageJson from '../package.json' with { type: 'json' };
import type { ConnectRequest } from '../transports/webtransport/engine/h3-connection.ts';
import type { WebTransportQuicOptions, WebTransportTransportServer } from '../transports/webtransport/server.ts';
import { DualHttpServer, guardedRequest, guardedUpgrade, type TcpTimeouts } from './http-server.ts';
import { decide, hostName, originGuard, type OriginPolicy, type OriginPolicyOptions } from './origins.ts';
import type { RouterEngine } from './engine.ts';
import { RedisEngine } from './redis-engine.ts';
import { Router, type RouterEvents, type RouterOptions } from './router.ts';
import { SERVER_TRANSPORTS, type TransportSetup } from './transports.ts';

export type { EngineStatus, HistoryOptions, RouterEngine } from './engine.ts';
export { Router, type RouterOptions, type RouterEvents, type RoutedClient, type Action, type HelloInfo } from './router.ts';
export { staticFiles } from './static-files.ts';
export type { Payload } from '../transports/codec/envelope.ts';
export type { OriginPolicyOptions } from './origins.ts';
/** The package's version: package.json is its one source. */
export const VERSION: string = packageJson.version;

/** A certificate: PEM files, PEM text, or one made by the server. */
export type CertificateOption =
  | { certFile: string; keyFile: string }
  | { certPem: string; keyPem: string }
  /** A ≤ 14-day development certificate kept under the package's certs/generated and renewed there. */
  | 'generate'
  /** A fresh ≤ 14-day certificate in memory (the default). */
  | 'ephemeral'
  /** Plain HTTP only, no WebTransport. */
  | 'none';

/** What the core offers a plugin: extra routes, the running server, WebTransport CONNECTs it decided. */
export interface ServerPlugin {
  /** Offered every request no transport and no core route (`/info`) claimed; true when it answered. */
  handleRequest?(request: http.IncomingMessage, response: http.ServerResponse): boolean | Promise<boolean>;
  /** Called once the server listens. */
  started?(server: SwitchyardServer): void;
  /** Each WebTransport CONNECT with the status the server answered. */
  webTransportConnect?(request: ConnectRequest, status: number): void;
  close?(): Promise<void>;
}

export interface SwitchyardOptions extends OriginPolicyOptions {
  /** Transports to serve. Default: all of them (webtransport needs a certificate). */
  transports?: readonly TransportName[];
  /** Largest inbound message in bytes (default 2 MiB). */
  maxMessageSize?: number;
  /** Outbound queue limits per connection (default 1 MiB high water, 16 MiB hard, 'disconnect'). */
  backpressure?: BackpressureOptions;
  /** Long-polling hold time (ms, default 25 000) and how long a silent session lives (ms). */
  longPolling?: { holdMs?: number; pollTimeoutMs?: number };
  /** WebRTC signalling limits (ICE timeout, pending sessions, offer size) and ICE servers. */
  webrtc?: TransportSetup['webrtc'];
  router?: RouterOptions;
  /**
   * Host name clients are told to use (`/info`'s URLs, `server.urls`), e.g. `chat.example.com`.
   * Default: the bound address; on a wildcard (`0.0.0.0`, `::`) the host each request named.
   */
  publicHost?: string;
  /** Extra routes (the lab is one). None by default. */
  plugins?: readonly ServerPlugin[];
  /**
   * WebTransport's QUIC admission: Retry threshold, handshake bounds, stateless reset secret
   * (default derived from the certificate's key: give one when the certificate is ephemeral).
   */
  webtransport?: WebTransportQuicOptions;
  /**
   * Several server processes as one: their shared state and messages in Redis (`redis://host:port`).
   * Rooms, topics, unicast by id, receipts, history and resumes then work across every process
   * given the same Redis. Without it, this process is the whole server (in memory).
   */
  cluster?: ClusterOptions;
}

export interface ClusterOptions {
  /** `redis://host:port` of the Redis every node shares. */
  redis: string;
  /** A node silent this long (ms) is taken for dead: its clients leave their rooms, its streams stop waiting for it. Default 5 000. */
  nodeTimeoutMs?: number;
  /** Entries a live node may fall behind a room's or topic's stream before it is trimmed under it (the node's members there are closed with 4011 and resume). Default 100 000. */
  maxBacklog?: number;
}

export interface SwitchyardServerOptions extends SwitchyardOptions {
  /** Interface to bind. Default 127.0.0.1. */
  host?: string;
  /** TCP (and UDP) port; 0 picks a free one. Default 8080. */
  port?: number;
  /** Certificate for HTTPS/WSS and WebTransport. Default 'ephemeral'. */
  certificate?: CertificateOption;
  /** Deadlines on the TCP port (first byte, TLS handshake, headers, request, idle): see TcpTimeouts. */
  timeouts?: TcpTimeouts;
}

export interface AttachOptions extends SwitchyardOptions {
  /**
   * WebTransport needs a certificate and binds UDP itself: on `webTransport.port` (default the
   * attached server's port number). Without a certificate only the HTTP transports are served.
   */
  certificate?: CertificateOption;
  webTransport?: { host?: string; port?: number };
}

/** The server-side messaging API, shared by `startServer` and `attach`. */
export interface SwitchyardHub {
  readonly router: Router;
  readonly transports: readonly HttpTransportServer[];
  /** The WebTransport server on the UDP port, when served. */
  readonly webtransport: WebTransportTransportServer | null;
  readonly certificate: CertificateBundle | null;
  /**
   * Publishes to a topic's subscribers (kind 'topic', from 'server'); returns the deliveries queued.
   * These four return the deliveries queued in this process at once. In a cluster that is always
   * 0: the message goes through Redis, and each node delivers it to its own recipients when it reads
   * it (use `presence()` to know who is in a room).
   */
  publish(topic: string, data: Payload): number;
  /** Sends to every member of a room (kind 'room', from 'server'); returns the deliveries queued (0 in a cluster). */
  toRoom(room: string, data: Payload): number;
  /** Sends to one client by id (kind 'send', from 'server'); 0 when it is not connected (always 0 in a cluster). */
  sendTo(clientId: string, data: Payload): number;
  /** Sends to every client (kind 'broadcast', from 'server'); returns the deliveries queued (0 in a cluster). */
  broadcast(data: Payload): number;
  /** Who is in a room (in a cluster: on every node). */
  presence(room: string): Promise<string[]>;
  /** `connect`, `disconnect`, `join`, `leave`, `subscribe`, `unsubscribe`, `presence`; returns the remover. */
  on<E extends keyof RouterEvents>(event: E, listener: RouterEvents[E]): () => void;
  close(): Promise<void>;
}

export interface SwitchyardServer extends SwitchyardHub {
  /** The address it listens on (as given: `0.0.0.0` stays `0.0.0.0`). */
  readonly host: string;
  readonly port: number;
  readonly urls: { http: string; https: string | null; webtransport: string | null };
}

const WILDCARDS = new Set(['0.0.0.0', '::', '']);
const MAX_HASHABLE_MS = MAX_VALIDITY_DAYS * 24 * 60 * 60 * 1000;

function bracketed(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

async function certificateOf(option: CertificateOption | undefined): Promise<CertificateBundle | null> {
  if (option === 'none') return null;
  if (option === undefined || option === 'ephemeral') return createCertificate();
  if (option === 'generate') return loadOrCreateCertificate();
  if ('certPem' in option) return certificateFromPem(option.certPem, option.keyPem);
  return loadOrCreateCertificate(option);
}

/**
 * Chromium accepts `serverCertificateHashes` only for certificates valid ≤ 14 days; for any other
 * certificate the client must use normal TLS validation, so no hash is advertised.
 */
function hashable(certificate: CertificateBundle | null): certificate is CertificateBundle {
  return certificate !== null && certificate.notAfter.getTime() - certificate.notBefore.getTime() <= MAX_HASHABLE_MS;
}

interface Core extends Omit<SwitchyardHub, 'webtransport' | 'close'> {
  readonly webtransport: WebTransportTransportServer | null;
  /** Whether a request's path is one of Switchyard's (a transport's or `/info`). */
  owns(request: http.IncomingMessage): boolean;
  handleRequest(request: http.IncomingMessage, response: http.ServerResponse): boolean;
  fallback(request: http.IncomingMessage, response: http.ServerResponse): void;
  handleUpgrade(request: http.IncomingMessage, socket: Duplex, head: Buffer): boolean;
  /** Binds WebTransport's UDP port. */
  listenQuic(host: string, port: number): Promise<void>;
  /** The URLs for a host name and port as clients use them. */
  urlsFor(host: string, port: number): SwitchyardServer['urls'];
  setOwnOrigins(origins: readonly string[]): void;
  /** Where clients reach us, for `/info` when the server listens on a wildcard. */
  setAddress(host: string, port: number): void;
  started(server: SwitchyardServer): void;
  close(): Promise<void>;
}

async function createCore(options: SwitchyardOptions & { certificate?: CertificateOption }): Promise<Core> {
  const wanted = new Set<TransportName>(options.transports ?? (Object.keys(SERVER_TRANSPORTS) as TransportName[]));
  const certificate = await certificateOf(options.certificate);
  let engine: RouterEngine | undefined;
  if (options.cluster) {
    const { redis: url, nodeTimeoutMs, maxBacklog } = options.cluster;
    const redis = new RedisEngine({ url, nodeTimeoutMs, maxBacklog, history: options.router?.history, dedupWindow: options.router?.dedupWindow, sessionTtlMs: options.router?.resumeGraceMs === undefined ? undefined : Math.max(60_000, options.router.resumeGraceMs) });
    try {
      await redis.connect();
    } catch (error) {
      await redis.close();
      throw new Error(`cannot reach Redis at ${options.cluster.redis}: ${(error as Error).message}`, { cause: error });
    }
    engine = redis;
  }
  const router = new Router({ ...options.router, engine, maxMessageSize: options.maxMessageSize ?? options.router?.maxMessageSize });
  // A delivery keeps the lane it was sent on where the recipient's transport has it, and goes
  // reliably (counted in laneDowngrades) where it does not: clients on any transport talk.
  const setup = { common: { maxMessageSize: options.maxMessageSize, backpressure: options.backpressure, laneFallback: 'reliable' as const }, longPolling: options.longPolling, webrtc: options.webrtc };
  const transports: HttpTransportServer[] = [];
  for (const name of wanted) {
    const entry = SERVER_TRANSPORTS[name];
    if (entry.kind === 'http') transports.push(entry.create(setup));
  }
  for (const transport of transports) transport.onConnection((connection) => router.attach(connection));
  const plugins = options.plugins ?? [];
  let ownOrigins: readonly string[] = [];
  let address = { host: '127.0.0.1', port: 0 };
  let webtransport: WebTransportTransportServer | null = null;
  let quicPort = 0;
  const policy: OriginPolicy = { ownOrigins: () => ownOrigins, publicHost: options.publicHost, options };
  const guard = originGuard(policy);

  const urlsFor = (host: string, port: number): SwitchyardServer['urls'] => ({
    http: `http://${bracketed(host)}:${port}`,
    https: certificate ? `https://${bracketed(host)}:${port}` : null,
    webtransport: webtransport ? `https://${bracketed(host)}:${quicPort}${webtransport.path}` : null,
  });

  const info = (request: http.IncomingMessage, response: http.ServerResponse) => {
    // On a wildcard address, the name this client reached us by is the one it can use again.
    const named = request.headers.host ? hostName(request.headers.host) : address.host;
    const host = options.publicHost ?? (WILDCARDS.has(address.host) ? named : address.host);
    const body = JSON.stringify({
      version: VERSION,
      transports: [...transports.map((t) => t.name), ...(webtransport ? [webtransport.name] : [])],
      paths: Object.fromEntries([...transports, ...(webtransport ? [webtransport] : [])].map((t) => [t.name, t.path])),
      urls: urlsFor(host, address.port),
      certificateSha256: hashable(certificate) ? certificate.sha256Hex : null,
      certificateNotAfter: certificate?.notAfter.toISOString() ?? null,
      // A cluster node says which node it is and whether it reaches the shared store.
      ...(options.cluster ? { cluster: router.engine.status() } : {}),
    });
    response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body);
  };

  const notFound = (request: http.IncomingMessage, response: http.ServerResponse) => {
    if (response.headersSent) return;
    const pathname = (request.url ?? '/').split('?')[0];
    response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'ERR_NOT_FOUND', message: `no route for ${request.method} ${pathname}` } }));
  };

  async function offerPlugins(request: http.IncomingMessage, response: http.ServerResponse): Promise<boolean> {
    for (const plugin of plugins) if (await plugin.handleRequest?.(request, response)) return true;
    return false;
  }

  return {
    router,
    transports,
    get webtransport() {
      return webtransport;
    },
    certificate,
    publish: (topic, data) => router.publish(topic, data),
    toRoom: (room, data) => router.toRoom(room, data),
    sendTo: (clientId, data) => router.sendTo(clientId, data),
    broadcast: (data) => router.broadcast(data),
    presence: (room) => router.presence(room),
    on: (event, listener) => router.on(event, listener),
    owns(request) {
      const pathname = (request.url ?? '/').split('?')[0]!;
      return pathname === '/info' || transports.some((t) => pathname === t.path || pathname.startsWith(`${t.path}/`));
    },
    handleRequest(request, response) {
      if (guard.request(request, response)) return true;
      for (const transport of transports) if (transport.handleRequest?.(request, response)) return true;
      return false;
    },
    fallback(request, response) {
      const pathname = (request.url ?? '/').split('?')[0];
      if (pathname === '/info' && (request.method === 'GET' || request.method === 'HEAD')) return info(request, response);
      offerPlugins(request, response).then(
        (served) => served || notFound(request, response),
        () => notFound(request, response),
      );
    },
    handleUpgrade(request, socket, head) {
      if (guard.upgrade(request, socket)) return true;
      for (const transport of transports) if (transport.handleUpgrade?.(request, socket, head)) return true;
      return false;
    },
    async listenQuic(host, port) {
      const entry = SERVER_TRANSPORTS.webtransport;
      if (!wanted.has('webtransport') || !certificate || entry.kind !== 'quic') return;
      const server = await entry.create({ ...setup, host, port, certificate, quic: options.webtransport });
      // The session path, and the same Origin/Host policy as the HTTP transports.
      server.engine.onRequest((connect) => {
        const status = !decide(connect.origin, connect.authority, policy).ok ? 403 : connect.path.split('?')[0] === server.path ? 200 : 404;
        for (const plugin of plugins) plugin.webTransportConnect?.(connect, status);
        return { status };
      });
      try {
        ({ port: quicPort } = await server.listen());
      } catch (error) {
        await server.close().catch(() => undefined);
        throw error;
      }
      server.onConnection((connection) => router.attach(connection));
      webtransport = server;
    },
    urlsFor,
    setOwnOrigins(origins) {
      ownOrigins = origins;
    },
    setAddress(host, port) {
      address = { host, port };
    },
    started(server) {
      for (const plugin of plugins) plugin.started?.(server);
    },
    async close() {
      await Promise.all(plugins.map((plugin) => plugin.close?.()));
      router.close();
      await router.engine.close();
      await Promise.all([...transports, ...(webtransport ? [webtransport] : [])].map((transport) => transport.close()));
    },
  };
}

/** The public face of the core (its request handlers stay inside). */
function hubOf(core: Core): SwitchyardHub {
  const { router, transports, certificate, publish, toRoom, sendTo, broadcast, presence, on, close } = core;
  return {
    router,
    transports,
    certificate,
    get webtransport() {
      return core.webtransport;
    },
    publish,
    toRoom,
    sendTo,
    broadcast,
    presence,
    on,
    close,
  };
}

function ownOriginsOf(urls: SwitchyardServer['urls']): string[] {
  return [urls.http, ...(urls.https ? [urls.https] : [])].map((url) => new URL(url).origin);
}

/** Starts a server; resolves once it listens. */
export async function startServer(options: SwitchyardServerOptions = {}): Promise<SwitchyardServer> {
  const host = options.host ?? '127.0.0.1';
  const core = await createCore(options);
  const certificate = core.certificate;
  const listenHttp = async () => {
    const server = new DualHttpServer({
      host,
      port: options.port ?? 8080,
      tls: certificate ? { certPem: certificate.certPem, keyPem: certificate.keyPem } : undefined,
      // The core offers requests to its transports itself, after the Origin and Host checks.
      transports: [],
      fallback: (request, response) => core.handleRequest(request, response) || core.fallback(request, response),
      upgrade: core.handleUpgrade,
      timeouts: options.timeouts,
    });
    return { server, port: await server.listen() };
  };
  let http: DualHttpServer;
  let port: number;
  try {
    ({ server: http, port } = await listenHttp());
  } catch (error) {
    await core.close();
    throw error;
  }
  // WebTransport takes the UDP port of the same number (WebTransport is always TLS: it needs the certificate).
  for (let attempt = 1; ; attempt++) {
    try {
      await core.listenQuic(host, port);
      break;
    } catch (error) {
      await http.close();
      // An ephemeral TCP port's number can be taken on UDP: try another pair; a chosen port is final.
      if (options.port !== 0 || attempt >= 5) {
        await core.close();
        throw new Error(`WebTransport could not bind UDP ${host}:${port}: ${(error as Error).message}`, { cause: error });
      }
      ({ server: http, port } = await listenHttp());
    }
  }
  const advertised = options.publicHost ?? (WILDCARDS.has(host) ? 'localhost' : host);
  const urls = core.urlsFor(advertised, port);
  core.setAddress(host, port);
  core.setOwnOrigins(ownOriginsOf(urls));
  const server: SwitchyardServer = {
    ...hubOf(core),
    host,
    port,
    urls,
    async close() {
      await core.close();
      await http.close();
    },
  };
  core.started(server);
  return server;
}

/** What `attach()` returns: the server API plus `close()`, which leaves the host server running. */
export type SwitchyardAttachment = SwitchyardHub;

/**
 * Serves Switchyard from an existing `http` or `https` server (plain Node, Express's
 * `app.listen()`, Fastify's `fastify.server`): the transports' paths and `/info` are answered
 * here, every other request goes to the server's own handlers, untouched. Call it before or after
 * `listen()`; WebTransport binds its UDP port once the server listens.
 */
export async function attach(server: http.Server | https.Server, options: AttachOptions = {}): Promise<SwitchyardAttachment> {
  const core = await createCore(options);
  const previous = server.listeners('request') as ((request: http.IncomingMessage, response: http.ServerResponse) => void)[];
  server.removeAllListeners('request');
  // Only Switchyard's paths get its Origin/Host checks and CORS headers; the app's routes are the app's.
  // Guarded as startServer's are: a handler that throws costs that request (500) or that socket, never the host server.
  const onRequest = guardedRequest((request, response) => {
    if (core.owns(request) || previous.length === 0) {
      if (!core.handleRequest(request, response)) core.fallback(request, response);
      return;
    }
    for (const listener of previous) listener.call(server, request, response);
  });
  const onUpgrade = guardedUpgrade((request, socket, head) => {
    if (core.owns(request) && core.handleUpgrade(request, socket, head)) return;
    // Another upgrade handler (a dev server's HMR socket, say) may want it; else nobody will.
    if (server.listenerCount('upgrade') === 1) socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
  server.on('request', onRequest);
  server.on('upgrade', onUpgrade);

  const bound = async () => {
    const address = server.address() as net.AddressInfo;
    const host = options.webTransport?.host ?? address.address;
    await core.listenQuic(host, options.webTransport?.port ?? address.port);
    const secure = 'setSecureContext' in server;
    const advertised = options.publicHost ?? (WILDCARDS.has(address.address) ? 'localhost' : address.address);
    const origin = `${secure ? 'https' : 'http'}://${bracketed(advertised)}:${address.port}`;
    core.setAddress(address.address, address.port);
    core.setOwnOrigins([new URL(origin).origin]);
  };
  // Not listening yet: WebTransport follows once it does (a failure to bind is the server's 'error').
  if (server.listening) await bound();
  else server.once('listening', () => void bound().catch((error: unknown) => server.emit('error', error)));

  return {
    ...hubOf(core),
    async close() {
      // Once: a second call must not hand the app's listeners back twice.
      if (!server.listeners('request').includes(onRequest)) return;
      server.off('request', onRequest);
      server.off('upgrade', onUpgrade);
      for (const listener of previous) server.on('request', listener);
      await core.close();
    },
  };
}
