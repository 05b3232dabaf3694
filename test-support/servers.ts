/**
 * Servers for tests: a transport-level echo server (no router) on 127.0.0.1:0 serving every
 * transport (WebTransport on a UDP port named at /info), and helpers shared by the suites.
 * Real sockets only.
 */
import { createCertificate } from '../certs/index.ts';
import { DualHttpServer } from '../server/http-server.ts';
import { SERVER_TRANSPORTS } from '../server/transports.ts';
import type { HttpTransportServer } from '../transports/http-transport-server.ts';
import type { CloseInfo, Connection, ServerTransportOptions } from '../transports/transport.ts';
import { WebTransportTransportServer } from '../transports/webtransport/server.ts';

export interface EchoServer {
  url: string;
  /** Server-side connections, in arrival order. */
  connections: Connection[];
  /** Close infos seen by server-side connections, in order. */
  closes: CloseInfo[];
  transports: HttpTransportServer[];
  webtransport: WebTransportTransportServer;
  close(): Promise<void>;
}

/**
 * Echoes every message on the lane it came on. A text message `close:<code>:<reason>` makes the
 * server close that connection with that code and reason instead.
 */
export async function startEchoServer(options: ServerTransportOptions & { pollTimeoutMs?: number } = {}): Promise<EchoServer> {
  // Every HTTP transport of the server's registry (a transport registered there is tested here too).
  const setup = { common: options, longPolling: { holdMs: 5_000, pollTimeoutMs: options.pollTimeoutMs } };
  const transports: HttpTransportServer[] = Object.values(SERVER_TRANSPORTS).flatMap((entry) => (entry.kind === 'http' ? [entry.create(setup)] : []));
  const connections: Connection[] = [];
  const closes: CloseInfo[] = [];
  const certificate = await createCertificate();
  let info = '';
  const http = new DualHttpServer({
    host: '127.0.0.1',
    port: 0,
    transports,
    // WebTransport clients learn the session URL and certificate hash here, as from the real server.
    fallback: (request, response) => (request.url === '/info' ? response.writeHead(200, { 'content-type': 'application/json' }).end(info) : response.writeHead(404).end()),
  });
  const port = await http.listen();
  // Any free UDP port: clients learn it from /info, so it need not match the TCP port here.
  const webtransport = new WebTransportTransportServer({ ...options, host: '127.0.0.1', port: 0, certPem: certificate.certPem, keyPem: certificate.keyPem });
  const { port: udpPort } = await webtransport.listen();
  info = JSON.stringify({ urls: { webtransport: `https://127.0.0.1:${udpPort}/wt` }, certificateSha256: certificate.sha256Hex });
  for (const transport of [...transports, webtransport]) {
    transport.onConnection((connection) => {
      connections.push(connection);
      connection.on('close', (info) => closes.push(info));
      connection.on('message', (message, lane) => {
        if (typeof message === 'string' && message.startsWith('close:')) {
          const [, code, reason] = message.split(':');
          connection.close(Number(code), reason);
          return;
        }
        if (connection.state === 'open') connection.send(message, lane);
      });
    });
  }
  return {
    url: `http://127.0.0.1:${port}`,
    connections,
    closes,
    transports,
    webtransport,
    async close() {
      await Promise.all([...transports, webtransport].map((t) => t.close()));
      await http.close();
    },
  };
}

/** Resolves when `predicate` holds, polling every 5 ms; rejects after `timeoutMs`. */
export async function waitFor(predicate: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Collects messages from a connection. */
export function collect(connection: Connection): (string | Uint8Array)[] {
  const messages: (string | Uint8Array)[] = [];
  connection.on('message', (message) => messages.push(message));
  return messages;
}
