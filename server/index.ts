/**
 * The Switchyard server entry point: one process serving every transport (PRODUCT.md §4).
 * TCP port: plain HTTP and HTTPS on the same number (lab, long-polling, polling, WebSocket
 * upgrade); UDP port of the same number: WebTransport over HTTP/3. Every connection is handed to
 * one Router, so clients on different transports talk to each other.
 */
import type http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCertificate, loadOrCreateCertificate, type CertificateBundle } from '../certs/index.ts';
import { LongPollingTransportServer } from '../transports/long-polling/server.ts';
import { PollingTransportServer } from '../transports/polling/server.ts';
import type { BackpressureOptions, HttpTransportServer, TransportName } from '../transports/transport.ts';
import { WebSocketTransportServer } from '../transports/websocket/server.ts';
import { WebTransportTransportServer, type WebTransportQuicOptions } from '../transports/webtransport/server.ts';
import { DualHttpServer } from './http-server.ts';
import { createLabApi } from './lab-api.ts';
import { Router, type RouterOptions } from './router.ts';
import { staticFiles } from './static-files.ts';

export { Router, type RouterOptions, type RoutedClient, type Action, type HelloInfo } from './router.ts';

const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const VERSION = '0.1.0';

export interface SwitchyardServerOptions {
  /** Interface to bind. Default 127.0.0.1. */
  host?: string;
  /** TCP (and UDP) port; 0 picks a free one. Default 8080. */
  port?: number;
  /** Transports to serve. Default: all of them (webtransport needs a certificate). */
  transports?: readonly TransportName[];
  /**
   * Certificate for HTTPS/WSS and WebTransport. Default 'generate': kept under certs/generated and
   * renewed there; 'ephemeral': a fresh one in memory (tests); 'none': plain HTTP only, no WebTransport.
   */
  certificate?: { certFile: string; keyFile: string } | 'generate' | 'ephemeral' | 'none';
  /** Folder of the built lab to serve at `/`; null serves none. Default lab-ui/dist. */
  labDir?: string | null;
  /**
   * Let the lab start head-of-line and backpressure experiments on this machine (as root they
   * build network namespaces). Default: only when the server listens on a loopback address.
   */
  labExperiments?: boolean;
  /** Largest inbound message in bytes (default 2 MiB). */
  maxMessageSize?: number;
  /** Outbound queue limits per connection (default 1 MiB high water, 16 MiB hard, 'disconnect'). */
  backpressure?: BackpressureOptions;
  /** Long-polling hold time (ms, default 25 000) and how long a silent session lives (ms). */
  longPolling?: { holdMs?: number; pollTimeoutMs?: number };
  router?: RouterOptions;
  /** WebTransport's QUIC admission: Retry threshold, handshake bounds, stateless reset secret. */
  webtransport?: WebTransportQuicOptions;
}

export interface SwitchyardServer {
  readonly port: number;
  readonly urls: { http: string; https: string | null; webtransport: string | null };
  readonly router: Router;
  readonly certificate: CertificateBundle | null;
  readonly transports: readonly HttpTransportServer[];
  /** The WebTransport server on the UDP port, when served. */
  readonly webtransport: WebTransportTransportServer | null;
  close(): Promise<void>;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** Starts a server; resolves once it listens. */
export async function startServer(options: SwitchyardServerOptions = {}): Promise<SwitchyardServer> {
  const host = options.host ?? '127.0.0.1';
  const wanted = new Set<TransportName>(options.transports ?? ['websocket', 'long-polling', 'polling', 'webtransport']);
  const certificate =
    options.certificate === 'none'
      ? null
      : options.certificate === 'ephemeral'
        ? await createCertificate()
        : await loadOrCreateCertificate(typeof options.certificate === 'object' ? options.certificate : {});
  const router = new Router({ ...options.router, maxMessageSize: options.maxMessageSize ?? options.router?.maxMessageSize });
  // A delivery keeps the lane it was sent on where the recipient's transport has it, and goes
  // reliably (counted in laneDowngrades) where it does not: clients on any transport talk.
  const common = { maxMessageSize: options.maxMessageSize, backpressure: options.backpressure, laneFallback: 'reliable' as const };

  const transports: HttpTransportServer[] = [];
  if (wanted.has('websocket')) transports.push(new WebSocketTransportServer(common));
  if (wanted.has('long-polling')) transports.push(new LongPollingTransportServer({ ...common, ...options.longPolling }));
  if (wanted.has('polling')) transports.push(new PollingTransportServer({ ...common, pollTimeoutMs: options.longPolling?.pollTimeoutMs }));
  for (const transport of transports) transport.onConnection((connection) => router.attach(connection));

  const serveLab = options.labDir === null ? undefined : staticFiles(options.labDir ?? path.join(PROJECT_ROOT, 'lab-ui', 'dist'));
  let urls: SwitchyardServer['urls'] = { http: '', https: null, webtransport: null };
  let webtransport: WebTransportTransportServer | null = null;
  const lab = createLabApi({ router, host, port: () => port, experiments: options.labExperiments ?? isLoopback(host) });
  const fallback = (request: http.IncomingMessage, response: http.ServerResponse) => {
    const pathname = (request.url ?? '/').split('?')[0];
    if (pathname?.startsWith('/lab/')) return lab.handle(request, response);
    if (pathname === '/info') {
      const body = JSON.stringify({
        version: VERSION,
        transports: [...transports.map((t) => t.name), ...(webtransport ? [webtransport.name] : [])],
        paths: Object.fromEntries([...transports, ...(webtransport ? [webtransport] : [])].map((t) => [t.name, t.path])),
        urls,
        certificateSha256: certificate?.sha256Hex ?? null,
        certificateNotAfter: certificate?.notAfter.toISOString() ?? null,
        router: router.stats(),
      });
      response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body);
      return;
    }
    void (serveLab?.(request, response) ?? Promise.resolve(false)).then((served) => {
      if (!served) response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'ERR_NOT_FOUND', message: `no route for ${request.method} ${pathname}` } }));
    });
  };

  const httpServer = () =>
    new DualHttpServer({
      host,
      port: options.port ?? 8080,
      tls: certificate ? { certPem: certificate.certPem, keyPem: certificate.keyPem } : undefined,
      transports,
      fallback,
    });
  let http = httpServer();
  let port = await http.listen();
  const shownHost = host.includes(':') ? `[${host}]` : host;
  // WebTransport takes the UDP port of the same number (WebTransport is always TLS: it needs the certificate).
  if (wanted.has('webtransport') && certificate) {
    for (let attempt = 1; ; attempt++) {
      webtransport = new WebTransportTransportServer({ ...common, host, port, certPem: certificate.certPem, keyPem: certificate.keyPem, quic: options.webtransport });
      try {
        await webtransport.listen();
        break;
      } catch (error) {
        await webtransport.close().catch(() => undefined);
        await http.close();
        // An ephemeral TCP port's number can be taken on UDP: try another pair; a chosen port is final.
        if (options.port !== 0 || attempt >= 5) throw new Error(`WebTransport could not bind UDP ${host}:${port}: ${(error as Error).message}`, { cause: error });
        http = httpServer();
        port = await http.listen();
      }
    }
    webtransport.onConnection((connection) => router.attach(connection));
    lab.watchWebTransport(webtransport);
  }
  urls = {
    http: `http://${shownHost}:${port}`,
    https: certificate ? `https://${shownHost}:${port}` : null,
    webtransport: webtransport ? `https://${shownHost}:${port}${webtransport.path}` : null,
  };

  return {
    port,
    urls,
    router,
    certificate,
    transports,
    webtransport,
    async close() {
      await lab.close();
      router.close();
      await Promise.all([...transports, ...(webtransport ? [webtransport] : [])].map((transport) => transport.close()));
      await http.close();
    },
  };
}
