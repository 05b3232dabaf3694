/**
 * `npm run bench:engine`: the WebTransport engine beside raw `ws` in one run, on loopback.
 * Stream echo RTT (64 B, one message in flight), one-way stream throughput, datagram throughput
 * and loss; `ws` plain and over TLS with the same certificate. Client and server share this
 * process, so compare the rows with each other, not with other machines.
 */
import https from 'node:https';
import http from 'node:http';
import { createHistogram } from 'node:perf_hooks';
import { WebSocket, WebSocketServer } from 'ws';
import { createCertificate } from '../certs/index.ts';
import { WebTransport } from '../transports/webtransport/engine/client.ts';
import { WebTransportServer } from '../transports/webtransport/engine/server.ts';
import type { WebTransportSession } from '../transports/webtransport/engine/session.ts';

const ROUND_TRIPS = Number(process.env.ROUND_TRIPS ?? 3_000);
const BULK_BYTES = Number(process.env.BULK_MIB ?? 32) * 1024 * 1024;
const DATAGRAMS = Number(process.env.DATAGRAMS ?? 20_000);
const certificate = await createCertificate();

interface Row {
  transport: string;
  'rtt p50 µs': string;
  'rtt p99 µs': string;
  'stream MB/s': string;
  'datagrams/s': string;
  'datagram loss': string;
}

function percentiles(samples: number[]): { p50: string; p99: string } {
  const histogram = createHistogram();
  for (const sample of samples) histogram.record(Math.max(1, Math.round(sample * 1000)));
  return { p50: String(histogram.percentile(50)), p99: String(histogram.percentile(99)) };
}

async function benchWebTransport(): Promise<Row> {
  let received = 0;
  let datagramsIn = 0;
  const server = new WebTransportServer({ port: 0, certPem: certificate.certPem, keyPem: certificate.keyPem }).route('/bench');
  server.onSession((session) => void serveSession(session).catch(() => undefined));
  async function serveSession(session: WebTransportSession): Promise<void> {
    void (async () => {
      const reader = session.datagrams.readable.getReader();
      while (!(await reader.read()).done) datagramsIn++;
    })().catch(() => undefined); // ends with the session
    const streams = session.incomingBidirectionalStreams.getReader();
    for (let next = await streams.read(); !next.done; next = await streams.read()) {
      const { readable, writable } = next.value;
      const first = await readable.getReader();
      const writer = writable.getWriter();
      void (async () => {
        // First byte says what this stream is for: 1 echo, 2 sink.
        let mode = 0;
        for (let chunk = await first.read(); !chunk.done; chunk = await first.read()) {
          let bytes = chunk.value;
          if (mode === 0) {
            mode = bytes[0]!;
            bytes = bytes.subarray(1);
          }
          if (mode === 1) await writer.write(bytes);
          else received += bytes.length;
        }
      })().catch(() => undefined); // ends with the session
    }
  }
  const { port } = await server.listen();
  const client = new WebTransport(`https://127.0.0.1:${port}/bench`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: certificate.sha256 }] });
  await client.ready;

  const echo = await client.createBidirectionalStream();
  const echoWriter = echo.writable.getWriter();
  const echoReader = echo.readable.getReader();
  await echoWriter.write(Uint8Array.of(1));
  const message = new Uint8Array(64);
  const rtts: number[] = [];
  for (let i = 0; i < ROUND_TRIPS; i++) {
    const started = performance.now();
    await echoWriter.write(message);
    let got = 0;
    while (got < 64) got += (await echoReader.read()).value!.length;
    if (i >= ROUND_TRIPS / 10) rtts.push(performance.now() - started); // first 10 % is warm-up
  }

  const sink = await client.createBidirectionalStream();
  const sinkWriter = sink.writable.getWriter();
  await sinkWriter.write(Uint8Array.of(2));
  const chunk = new Uint8Array(64 * 1024);
  const bulkStart = performance.now();
  for (let sent = 0; sent < BULK_BYTES; sent += chunk.length) await sinkWriter.write(chunk);
  while (received < BULK_BYTES) await new Promise((resolve) => setTimeout(resolve, 1));
  const bulkSeconds = (performance.now() - bulkStart) / 1000;

  const datagramWriter = client.datagrams.writable.getWriter();
  const payload = new Uint8Array(1000);
  const datagramStart = performance.now();
  for (let i = 0; i < DATAGRAMS; i++) {
    await datagramWriter.write(payload);
    if (i % 200 === 199) await new Promise((resolve) => setImmediate(resolve)); // let the socket drain
  }
  await new Promise((resolve) => setTimeout(resolve, 200));
  const datagramSeconds = (performance.now() - datagramStart - 200) / 1000;
  client.close();
  await server.close(100);
  const { p50, p99 } = percentiles(rtts);
  return {
    transport: 'webtransport (engine)',
    'rtt p50 µs': p50,
    'rtt p99 µs': p99,
    'stream MB/s': (BULK_BYTES / 1e6 / bulkSeconds).toFixed(1),
    'datagrams/s': Math.round(datagramsIn / datagramSeconds).toLocaleString('en-US'),
    'datagram loss': `${(((DATAGRAMS - datagramsIn) / DATAGRAMS) * 100).toFixed(1)} %`,
  };
}

async function benchWs(tls: boolean): Promise<Row> {
  const server = tls ? https.createServer({ cert: certificate.certPem, key: certificate.keyPem }) : http.createServer();
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  let received = 0;
  wss.on('connection', (socket) => {
    socket.on('message', (data, isBinary) => {
      const bytes = data as Buffer;
      if (bytes[0] === 1) socket.send(bytes, { binary: isBinary });
      else received += bytes.length;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const socket = new WebSocket(`${tls ? 'wss' : 'ws'}://127.0.0.1:${port}`, { ca: certificate.certPem, perMessageDeflate: false });
  await new Promise((resolve) => socket.once('open', resolve));
  const message = new Uint8Array(64).fill(1);
  const rtts: number[] = [];
  for (let i = 0; i < ROUND_TRIPS; i++) {
    const started = performance.now();
    await new Promise<void>((resolve) => {
      socket.once('message', () => resolve());
      socket.send(message);
    });
    if (i >= ROUND_TRIPS / 10) rtts.push(performance.now() - started);
  }
  const chunk = new Uint8Array(64 * 1024).fill(2);
  const bulkStart = performance.now();
  for (let sent = 0; sent < BULK_BYTES; sent += chunk.length) {
    socket.send(chunk);
    if (socket.bufferedAmount > 4 * 1024 * 1024) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  while (received < BULK_BYTES) await new Promise((resolve) => setTimeout(resolve, 1));
  const bulkSeconds = (performance.now() - bulkStart) / 1000;
  socket.close();
  wss.close();
  server.closeAllConnections?.();
  await new Promise((resolve) => server.close(resolve));
  const { p50, p99 } = percentiles(rtts);
  return { transport: tls ? 'ws (wss, TLS)' : 'ws (plain)', 'rtt p50 µs': p50, 'rtt p99 µs': p99, 'stream MB/s': (BULK_BYTES / 1e6 / bulkSeconds).toFixed(1), 'datagrams/s': '—', 'datagram loss': '—' };
}

const rows = [await benchWebTransport(), await benchWs(false), await benchWs(true)];
console.log(`WebTransport engine vs ws — ${ROUND_TRIPS} round trips of 64 B, ${BULK_BYTES / 1024 / 1024} MiB one-way, ${DATAGRAMS} datagrams of 1000 B (Node ${process.version})`);
console.table(rows);
