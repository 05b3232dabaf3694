/**
 * A WebTransport test server on the engine: `/echo` echoes datagrams and every bidirectional
 * stream, and sends each incoming unidirectional stream back on a server-opened one; `/push` opens
 * a unidirectional and a bidirectional stream towards the client, then closes the session with
 * 4321 "server says bye"; `/cut` reads the client's bidirectional streams and, once 256 KiB have
 * arrived, closes the session with 1008 "policy" while the client is still sending. It records
 * how each session ended.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createCertificate, type CertificateBundle } from '../certs/index.ts';
import { WebTransportServer, type WebTransportServerOptions } from '../transports/webtransport/engine/server.ts';
import type { WebTransportCloseInfo, WebTransportSession } from '../transports/webtransport/engine/session.ts';

export interface EchoWebTransportServer {
  port: number;
  certificate: CertificateBundle;
  server: WebTransportServer;
  /** How each session ended, as the server saw it. */
  closes: (WebTransportCloseInfo | { error: string })[];
  close(): Promise<void>;
}

/** Sends every datagram of the session back. */
export async function echoDatagrams(session: WebTransportSession): Promise<void> {
  const reader = session.datagrams.readable.getReader();
  const writer = session.datagrams.writable.getWriter();
  for (let next = await reader.read(); !next.done; next = await reader.read()) await writer.write(next.value);
}

/** Sends every bidirectional stream of the session back on itself. */
export async function echoStreams(session: WebTransportSession): Promise<void> {
  const bidi = session.incomingBidirectionalStreams.getReader();
  for (let next = await bidi.read(); !next.done; next = await bidi.read()) void next.value.readable.pipeTo(next.value.writable).catch(() => undefined);
}

async function echoUnidirectional(session: WebTransportSession): Promise<void> {
  const uni = session.incomingUnidirectionalStreams.getReader();
  for (let next = await uni.read(); !next.done; next = await uni.read()) {
    const back = await session.createUnidirectionalStream();
    void next.value.pipeTo(back).catch(() => undefined);
  }
}

async function push(session: WebTransportSession): Promise<void> {
  const text = new TextEncoder();
  const uni = (await session.createUnidirectionalStream()).getWriter();
  await uni.write(text.encode('uni from server'));
  await uni.close();
  const bidi = await session.createBidirectionalStream();
  const writer = bidi.writable.getWriter();
  await writer.write(text.encode('bidi from server'));
  await writer.close();
  // Wait for the client's answer on the bidi stream, then close with our own code and reason.
  const reader = bidi.readable.getReader();
  while (!(await reader.read()).done);
  session.close({ closeCode: 4321, reason: 'server says bye' });
}

/** Closes the session in the middle of the client's uploads. */
async function cut(session: WebTransportSession): Promise<void> {
  let received = 0;
  const streams = session.incomingBidirectionalStreams.getReader();
  for (let next = await streams.read(); !next.done; next = await streams.read()) {
    const reader = next.value.readable.getReader();
    void (async () => {
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        received += chunk.value.length;
        if (received >= 256 * 1024) session.close({ closeCode: 1008, reason: 'policy' });
      }
    })().catch(() => undefined); // the close ends the reads
  }
}

/** `options` tune the engine (e.g. `retryAfterHandshakes: 0` for a Retry on every connection). */
export async function startEchoWebTransportServer(options: Partial<WebTransportServerOptions> = {}): Promise<EchoWebTransportServer> {
  const certificate = await createCertificate();
  const server = new WebTransportServer({ port: 0, certPem: certificate.certPem, keyPem: certificate.keyPem, ...options }).route('/echo').route('/push').route('/cut');
  const closes: EchoWebTransportServer['closes'] = [];
  server.onSession((session) => {
    session.closed.then(
      (info) => closes.push(info),
      (error: Error) => closes.push({ error: error.message }),
    );
    if (session.path === '/push') void push(session).catch(() => undefined);
    else if (session.path === '/cut') void cut(session).catch(() => undefined);
    else {
      void echoDatagrams(session).catch(() => undefined);
      void echoStreams(session).catch(() => undefined);
      void echoUnidirectional(session).catch(() => undefined);
    }
  });
  const { port } = await server.listen();
  return { port, certificate, server, closes, close: () => server.close(200) };
}

/** The echo server of webtransport-child-server.ts in its own process (kill it when done); resolves with its UDP port. */
export function startWebTransportChild(certificate: CertificateBundle, port = 0): Promise<{ child: ChildProcess; port: number }> {
  const root = path.resolve(import.meta.dirname, '..');
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'test-support/webtransport-child-server.ts'), JSON.stringify({ port, certPem: certificate.certPem, keyPem: certificate.keyPem })], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', (line: Buffer) => resolve({ child, port: (JSON.parse(line.toString()) as { port: number }).port }));
    child.once('exit', (code) => reject(new Error(`server process exited with ${code}`)));
  });
}
