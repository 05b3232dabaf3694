/**
 * `npm run bench:engine`: the WebTransport engine beside raw `ws` (plain and over TLS with the same
 * certificate) in one run, on loopback, with the server in a child process so its CPU time and
 * syscalls are its own. Per transport:
 * - echo RTT: 64 B, one message in flight (p50/p99);
 * - pipelined echo: 64 B, 32 in flight: messages/s and server CPU per echoed message;
 * - packets per echoed message (UDP datagrams through the server's socket, both ways; engine only);
 * - syscalls per echoed message: every syscall of the server process, counted by `strace -c` over
 *   a run of single round trips (skipped when strace is missing);
 * - one-way stream throughput (MB/s); datagram rate and loss (engine only);
 * - time inside the quiche binding per round trip, client and server summed (engine only), from a
 *   second run of single round trips with the binding's methods wrapped (quiche-time.ts): what of the
 *   engine's RTT is quiche's, and what is our code's.
 * The client is the same Node process for every row: compare rows with each other, not with other machines.
 *
 *   npm run bench:engine                      ROUND_TRIPS=20000 PIPELINED=30000 BULK_MIB=32 DATAGRAMS=20000
 */
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import { createHistogram } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import { createCertificate } from '../certs/index.ts';
import { WebTransport } from '../transports/webtransport/engine/client.ts';
import { WebTransportServer } from '../transports/webtransport/engine/server.ts';
import type { WebTransportSession } from '../transports/webtransport/engine/session.ts';
import * as quicheTime from '../transports/webtransport/engine/quiche-time.ts';

const ROUND_TRIPS = Number(process.env.ROUND_TRIPS ?? 20_000);
const PIPELINED = Number(process.env.PIPELINED ?? 30_000);
const WINDOW = 32;
const STRACED_ROUND_TRIPS = 500;
const BULK_BYTES = Number(process.env.BULK_MIB ?? 32) * 1024 * 1024;
const DATAGRAMS = Number(process.env.DATAGRAMS ?? 20_000);
const MESSAGE = 64;
/** First byte of a stream (engine) or message (ws): what the server does with it. */
const MODE_ECHO = 1;
const MODE_SINK = 2;

type Kind = 'engine' | 'ws' | 'wss';

/** What the server process is asked over IPC; every command is answered with a report. */
type ServerCommand = 'report' | 'quiche-start' | 'quiche-stop';

/** What the server process reports over IPC. */
interface ServerReport {
  cpuMicros: number;
  packets: number | null;
  received: number;
  datagrams: number;
  /** After 'quiche-stop': the native calls since 'quiche-start'. */
  quiche?: quicheTime.QuicheCalls;
}

// ——— server process ———

async function serve(kind: Kind): Promise<void> {
  const certificate = await createCertificate();
  let received = 0;
  let datagrams = 0;
  let packets: () => number | null = () => null;
  let port: number;
  if (kind === 'engine') {
    const server = new WebTransportServer({ port: 0, certPem: certificate.certPem, keyPem: certificate.keyPem }).route('/bench');
    server.onSession((session) => void serveSession(session).catch(() => undefined));
    async function serveSession(session: WebTransportSession): Promise<void> {
      void (async () => {
        const reader = session.datagrams.readable.getReader();
        while (!(await reader.read()).done) datagrams++;
      })().catch(() => undefined); // ends with the session
      const streams = session.incomingBidirectionalStreams.getReader();
      for (let next = await streams.read(); !next.done; next = await streams.read()) {
        const reader = next.value.readable.getReader();
        const writer = next.value.writable.getWriter();
        void (async () => {
          let mode = 0;
          for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
            let bytes = chunk.value;
            if (mode === 0) {
              mode = bytes[0]!;
              bytes = bytes.subarray(1);
            }
            if (mode === MODE_ECHO) await writer.write(bytes);
            else received += bytes.length;
          }
        })().catch(() => undefined); // ends with the session
      }
    }
    port = (await server.listen()).port;
    packets = () => server.socketCounters.packetsSent + server.socketCounters.packetsReceived;
  } else {
    const server = kind === 'wss' ? https.createServer({ cert: certificate.certPem, key: certificate.keyPem }) : http.createServer();
    const wss = new WebSocketServer({ server, perMessageDeflate: false });
    wss.on('connection', (socket) => {
      socket.on('message', (data, isBinary) => {
        const bytes = data as Buffer;
        if (bytes[0] === MODE_ECHO) socket.send(bytes, { binary: isBinary });
        else received += bytes.length;
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  }
  process.on('message', (command: ServerCommand) => {
    if (command === 'quiche-start') quicheTime.start();
    const quiche = command === 'quiche-stop' ? quicheTime.stop() : undefined;
    const { user, system } = process.cpuUsage();
    process.send!({ cpuMicros: user + system, packets: packets(), received, datagrams, quiche } satisfies ServerReport);
  });
  process.on('disconnect', () => process.exit(0));
  process.send!({ port, certPem: certificate.certPem, sha256: Buffer.from(certificate.sha256).toString('base64') });
}

// ——— load generator ———

interface Server {
  child: ChildProcess;
  port: number;
  certPem: string;
  sha256: Uint8Array<ArrayBuffer>;
  report(command?: ServerCommand): Promise<ServerReport>;
}

async function startServer(kind: Kind): Promise<Server> {
  const child = fork(fileURLToPath(import.meta.url), ['serve', kind], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const hello = await new Promise<{ port: number; certPem: string; sha256: string }>((resolve) => child.once('message', (m) => resolve(m as never)));
  return {
    child,
    port: hello.port,
    certPem: hello.certPem,
    sha256: new Uint8Array(Buffer.from(hello.sha256, 'base64')),
    report: (command = 'report') =>
      new Promise((resolve) => {
        child.once('message', (m) => resolve(m as ServerReport));
        child.send(command);
      }),
  };
}

/** A client side that is the same shape for every transport: echo one message, or a window of them, and sink bulk bytes. */
interface Client {
  /** Sends one 64 B echo message; resolves when its echo is back. */
  roundTrip(): Promise<void>;
  /** Echoes `count` messages with `window` in flight. */
  pipelined(count: number, window: number): Promise<void>;
  /** Sends `bytes` one way; resolves once the server has them all. */
  bulk(bytes: number, server: Server): Promise<void>;
  close(): Promise<void>;
}

async function engineClient(server: Server): Promise<Client & { session: WebTransport }> {
  const session = new WebTransport(`https://127.0.0.1:${server.port}/bench`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: server.sha256 }] });
  await session.ready;
  const echo = await session.createBidirectionalStream();
  const writer = echo.writable.getWriter();
  const reader = echo.readable.getReader();
  await writer.write(Uint8Array.of(MODE_ECHO));
  const message = new Uint8Array(MESSAGE);
  /** Echoed bytes not yet counted as whole messages (stream chunks need not match messages). */
  let spare = 0;
  const awaitMessages = async (count: number): Promise<void> => {
    let wanted = count * MESSAGE - spare;
    while (wanted > 0) wanted -= (await reader.read()).value!.length;
    spare = -wanted;
  };
  return {
    session,
    roundTrip: async () => {
      void writer.write(message);
      await awaitMessages(1);
    },
    pipelined: async (count, window) => {
      let sent = 0;
      let done = 0;
      for (; sent < Math.min(window, count); sent++) void writer.write(message);
      while (done < count) {
        const before = spare;
        const { value } = await reader.read();
        const total = before + value!.length;
        const whole = Math.floor(total / MESSAGE);
        spare = total - whole * MESSAGE;
        done += whole;
        for (let i = 0; i < whole && sent < count; i++, sent++) void writer.write(message);
      }
    },
    bulk: async (bytes, srv) => {
      const sink = await session.createBidirectionalStream();
      const sinkWriter = sink.writable.getWriter();
      await sinkWriter.write(Uint8Array.of(MODE_SINK));
      const chunk = new Uint8Array(64 * 1024);
      for (let sent = 0; sent < bytes; sent += chunk.length) await sinkWriter.write(chunk);
      while ((await srv.report()).received < bytes) await new Promise((resolve) => setTimeout(resolve, 5));
    },
    close: async () => {
      session.close();
      await session.closed.catch(() => undefined);
    },
  };
}

async function wsClient(server: Server, tls: boolean): Promise<Client> {
  const socket = new WebSocket(`${tls ? 'wss' : 'ws'}://127.0.0.1:${server.port}`, { ca: server.certPem, perMessageDeflate: false });
  await new Promise((resolve) => socket.once('open', resolve));
  const message = new Uint8Array(MESSAGE).fill(MODE_ECHO);
  let onEcho: () => void = () => undefined;
  socket.on('message', () => onEcho());
  return {
    roundTrip: () =>
      new Promise<void>((resolve) => {
        onEcho = resolve;
        socket.send(message);
      }),
    pipelined: (count, window) =>
      new Promise<void>((resolve) => {
        let sent = 0;
        let done = 0;
        onEcho = () => {
          if (++done === count) resolve();
          else if (sent < count) (sent++, socket.send(message));
        };
        for (; sent < Math.min(window, count); sent++) socket.send(message);
      }),
    bulk: async (bytes, srv) => {
      const chunk = new Uint8Array(64 * 1024).fill(MODE_SINK);
      for (let sent = 0; sent < bytes; sent += chunk.length) {
        socket.send(chunk);
        if (socket.bufferedAmount > 4 * 1024 * 1024) await new Promise((resolve) => setTimeout(resolve, 1));
      }
      while ((await srv.report()).received < bytes) await new Promise((resolve) => setTimeout(resolve, 5));
    },
    close: async () => {
      socket.close();
      await new Promise((resolve) => socket.once('close', resolve));
    },
  };
}

const straceAvailable = (() => {
  try {
    execFileSync('strace', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** Every syscall of `pid` while `work` runs, counted by strace -c. */
async function countSyscalls(pid: number, work: () => Promise<void>): Promise<number | null> {
  if (!straceAvailable) return null;
  const strace = spawn('strace', ['-c', '-f', '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let summary = '';
  strace.stderr.on('data', (chunk: Buffer) => (summary += chunk.toString()));
  // strace prints "Process N attached" once it is tracing.
  await new Promise<void>((resolve) => {
    const check = (): void => void (summary.includes('attached') ? resolve() : setTimeout(check, 10));
    check();
  });
  await work();
  const exited = new Promise((resolve) => strace.once('exit', resolve));
  strace.kill('SIGINT');
  await exited;
  const total = /^\s*100\.00\s+\S+\s+\S+\s+(\d+)/m.exec(summary) ?? /(\d+)\s+(?:\d+\s+)?total\s*$/m.exec(summary);
  return total ? Number(total[1]) : null;
}

function percentiles(samples: number[]): { p50: number; p99: number } {
  const histogram = createHistogram();
  for (const sample of samples) histogram.record(Math.max(1, Math.round(sample * 1000)));
  return { p50: histogram.percentile(50), p99: histogram.percentile(99) };
}

interface Row {
  transport: string;
  'rtt p50 µs': number;
  'rtt p99 µs': number;
  'pipelined msg/s': number;
  'server CPU µs/msg': string;
  'packets/msg': string;
  'syscalls/msg': string;
  'stream MB/s': string;
  'datagrams/s': string;
  'datagram loss': string;
  'quiche µs/rtt': string;
}

/** The quiche binding's calls per round trip, client and server summed, over single round trips with them wrapped. */
async function quicheRoundTrips(client: Client, server: Server): Promise<quicheTime.QuicheCalls> {
  const count = Math.ceil(ROUND_TRIPS / 3);
  await server.report('quiche-start');
  quicheTime.start();
  for (let i = 0; i < count; i++) await client.roundTrip();
  const local = quicheTime.stop();
  const { quiche: remote } = await server.report('quiche-stop');
  const perRoundTrip: quicheTime.QuicheCalls = {};
  for (const side of [local, remote!]) {
    for (const [name, { micros, calls }] of Object.entries(side)) {
      const entry = (perRoundTrip[name] ??= { micros: 0, calls: 0 });
      entry.micros += micros / count;
      entry.calls += calls / count;
    }
  }
  return perRoundTrip;
}

async function bench(kind: Kind): Promise<Row & { quiche?: quicheTime.QuicheCalls }> {
  const server = await startServer(kind);
  const client = kind === 'engine' ? await engineClient(server) : await wsClient(server, kind === 'wss');
  const rtts: number[] = [];
  for (let i = 0; i < ROUND_TRIPS; i++) {
    const started = performance.now();
    await client.roundTrip();
    if (i >= ROUND_TRIPS / 10) rtts.push(performance.now() - started); // first 10 % is warm-up
  }
  const quiche = 'session' in client ? await quicheRoundTrips(client, server) : undefined;
  const before = await server.report();
  const pipelinedStart = performance.now();
  await client.pipelined(PIPELINED, WINDOW);
  const pipelinedSeconds = (performance.now() - pipelinedStart) / 1000;
  const after = await server.report();
  // The report round trips themselves cost the server a little: not subtracted, the same for every row.
  const cpuPerMessage = (after.cpuMicros - before.cpuMicros) / PIPELINED;
  const packetsPerMessage = after.packets === null || before.packets === null ? null : (after.packets - before.packets) / PIPELINED;
  const syscalls = await countSyscalls(server.child.pid!, async () => {
    for (let i = 0; i < STRACED_ROUND_TRIPS; i++) await client.roundTrip();
  });

  const bulkStart = performance.now();
  await client.bulk(BULK_BYTES, server);
  const bulkSeconds = (performance.now() - bulkStart) / 1000;

  let datagramRate = '—';
  let datagramLoss = '—';
  if ('session' in client) {
    const session = client.session as WebTransport;
    const datagramWriter = session.datagrams.writable.getWriter();
    const payload = new Uint8Array(1000);
    const start = performance.now();
    for (let i = 0; i < DATAGRAMS; i++) {
      await datagramWriter.write(payload);
      if (i % 200 === 199) await new Promise((resolve) => setImmediate(resolve)); // let the socket drain
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    const seconds = (performance.now() - start - 200) / 1000;
    const { datagrams } = await server.report();
    datagramRate = Math.round(datagrams / seconds).toLocaleString('en-US');
    datagramLoss = `${(((DATAGRAMS - datagrams) / DATAGRAMS) * 100).toFixed(1)} %`;
  }
  await client.close();
  server.child.disconnect();
  const { p50, p99 } = percentiles(rtts);
  return {
    transport: kind === 'engine' ? 'webtransport (engine)' : kind === 'wss' ? 'ws (wss, TLS)' : 'ws (plain)',
    'rtt p50 µs': p50,
    'rtt p99 µs': p99,
    'pipelined msg/s': Math.round(PIPELINED / pipelinedSeconds),
    'server CPU µs/msg': cpuPerMessage.toFixed(1),
    'packets/msg': packetsPerMessage === null ? '—' : packetsPerMessage.toFixed(2),
    'syscalls/msg': syscalls === null ? '— (no strace)' : (syscalls / STRACED_ROUND_TRIPS).toFixed(1),
    'stream MB/s': (BULK_BYTES / 1e6 / bulkSeconds).toFixed(1),
    'datagrams/s': datagramRate,
    'datagram loss': datagramLoss,
    'quiche µs/rtt': quiche ? quicheTime.totalMicros(quiche).toFixed(1) : '—',
    quiche,
  };
}

if (process.argv[2] === 'serve') await serve(process.argv[3] as Kind);
else {
  const rows = [await bench('engine'), await bench('ws'), await bench('wss')];
  console.log(
    `WebTransport engine vs ws — ${ROUND_TRIPS} round trips of ${MESSAGE} B; ${PIPELINED} echoes with ${WINDOW} in flight (server CPU, packets); ` +
      `${STRACED_ROUND_TRIPS} round trips under strace -c (syscalls); ${BULK_BYTES / 1024 / 1024} MiB one-way; ${DATAGRAMS} datagrams of 1000 B (Node ${process.version})`,
  );
  console.table(rows.map(({ quiche: _, ...row }) => row));
  const [engine, , wss] = rows as [Row & { quiche: quicheTime.QuicheCalls }, Row, Row];
  const ratio = (a: number, b: number) => (a / b).toFixed(2);
  console.log(`engine / ws+tls: server CPU per echoed message ${ratio(Number(engine['server CPU µs/msg']), Number(wss['server CPU µs/msg']))}x (target ≤ 2), ` +
    `rtt p50 ${ratio(engine['rtt p50 µs'], wss['rtt p50 µs'])}x (target ≤ 1.5), stream MB/s ${ratio(Number(engine['stream MB/s']), Number(wss['stream MB/s']))}x (target ≥ 0.5)`);
  const quicheMicros = quicheTime.totalMicros(engine.quiche);
  const calls = Object.entries(engine.quiche)
    .sort(([, a], [, b]) => b.micros - a.micros)
    .map(([name, { micros, calls }]) => `${name} ${micros.toFixed(1)} µs (${calls.toFixed(1)} calls)`);
  console.log(`quiche binding per round trip, client + server: ${quicheMicros.toFixed(1)} µs: ${calls.join(', ')}`);
  console.log(`engine rtt p50 less that: ${(engine['rtt p50 µs'] - quicheMicros).toFixed(0)} µs, ${ratio(engine['rtt p50 µs'] - quicheMicros, wss['rtt p50 µs'])}x ws+tls (the engine's own code against the 1.5x target)`);
}
