/**
 * The server side of a benchmark, in its own process so its CPU time is its own: Switchyard with
 * every transport, a raw `ws` server (the no-abstraction baseline, naive or tuned) or a Socket.IO 4 server.
 * Prints one JSON line `{ port, certPem }` when listening; answers IPC `cpu` with its CPU time and
 * `memory` with its memory after a full GC. Peers implement the same two operations as Switchyard's router: echo to the sender, and
 * fan-out of a published message to every subscriber of a topic.
 *
 *   node --import tsx benchmarks/bench-server.ts switchyard|ws|ws-tuned|socketio
 *   node --import tsx benchmarks/bench-server.ts switchyard-cluster redis://127.0.0.1:<port>   (one node of a cluster)
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { Server as SocketIoServer } from 'socket.io';
import * as ws from 'ws';
import { WebSocket, WebSocketServer } from 'ws';
import { createCertificate } from '../certs/index.ts';
import { handOverByFirstByte } from '../server/http-server.ts';
import { startServer } from '../server/index.ts';
import { wrtcProcesses } from '../transports/webrtc/wrtc-remote.ts';
import { RawOp, rawTopic, type ServerKind } from './raw-protocol.ts';


/** One TCP port for plain and TLS, as Switchyard serves them: first byte 0x16 is TLS. */
async function listenSniffing(plain: http.Server, secure: https.Server): Promise<number> {
  const listener = net.createServer((socket) => handOverByFirstByte(socket, plain, secure));
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  return (listener.address() as AddressInfo).port;
}

/** ws's internals the tuned peer uses, as engine.io and socket.io-adapter do: the raw socket and the frame writer. */
interface WsInternals {
  _socket: net.Socket;
  _sender: { sendFrame(frame: Buffer[], cb?: () => void): void };
}
/** ws's `Sender.frame` (exported by ws, missing from @types/ws). */
const Sender = (ws as unknown as { Sender: { frame(data: Buffer, options: { fin: boolean; rsv1: boolean; opcode: number; mask: boolean; readOnly: boolean }): Buffer[] } }).Sender;

/**
 * The raw ws peer. Naive: `ws.send` per message and per subscriber, each a write of its own.
 * Tuned, as ws's own users do when they care: a socket written to is corked until this event-loop
 * turn has handled its I/O (one write per socket per turn, like our server's flush), and a fan-out
 * is framed once with `WebSocket.Sender.frame` and that frame handed to every subscriber's sender
 * (socket.io-adapter's `wsPreEncodedFrame`).
 */
async function rawWsServer(certificate: { certPem: string; keyPem: string }, tuned: boolean): Promise<number> {
  const plain = http.createServer();
  const secure = https.createServer({ cert: certificate.certPem, key: certificate.keyPem });
  const topics = new Map<string, Set<WebSocket>>();
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 4 * 1024 * 1024, clientTracking: false });
  for (const server of [plain, secure]) server.on('upgrade', (request, socket, head) => wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws)));
  const corked = new Set<net.Socket>();
  const uncorkAll = () => {
    for (const socket of corked) socket.uncork();
    corked.clear();
  };
  /** Corks `ws`'s socket for the rest of this turn (tuned only). */
  const corkForTurn = (ws: WebSocket) => {
    if (!tuned) return;
    const socket = (ws as unknown as WsInternals)._socket;
    if (corked.has(socket)) return;
    if (corked.size === 0) setImmediate(uncorkAll);
    socket.cork();
    corked.add(socket);
  };
  wss.on('connection', (socket: WebSocket) => {
    socket.on('message', (data: Buffer, isBinary) => {
      if (data[0] === RawOp.echo) {
        corkForTurn(socket);
        socket.send(data, { binary: isBinary });
      } else if (data[0] === RawOp.subscribe) {
        const topic = data.subarray(1).toString();
        if (!topics.has(topic)) topics.set(topic, new Set());
        topics.get(topic)!.add(socket);
        corkForTurn(socket);
        socket.send(Uint8Array.of(RawOp.subscribe));
      } else if (data[0] === RawOp.publish) {
        const subscribers = topics.get(rawTopic(data));
        if (!subscribers) return;
        if (!tuned) {
          for (const subscriber of subscribers) if (subscriber !== socket && subscriber.readyState === WebSocket.OPEN) subscriber.send(data, { binary: isBinary });
          return;
        }
        // readOnly: the payload is not ours to mask or modify (it is not masked anyway: a server frame).
        const frame = Sender.frame(data, { fin: true, rsv1: false, opcode: isBinary ? 2 : 1, mask: false, readOnly: true });
        for (const subscriber of subscribers) {
          if (subscriber === socket || subscriber.readyState !== WebSocket.OPEN) continue;
          corkForTurn(subscriber);
          (subscriber as unknown as WsInternals)._sender.sendFrame(frame);
        }
      }
    });
    socket.on('close', () => {
      for (const members of topics.values()) members.delete(socket);
    });
  });
  return listenSniffing(plain, secure);
}

async function main(kind: ServerKind): Promise<void> {
  const certificate = await createCertificate();
  let port: number;
  if (kind === 'switchyard' || kind === 'switchyard-cluster') {
    // Heartbeats off the measurement path: one ping per minute. Capacity is measured: no
    // per-connection rate limit (the peers have none either), webrtc answers as many offers at once as the
    // workloads make (50 connects at a time; its default bounds strangers to 32), and history is deep
    // enough for the recovery workload.
    const server = await startServer({
      port: 0,
      certificate: 'ephemeral',
      longPolling: { holdMs: 20_000 },
      webrtc: { maxPending: 256 },
      router: { heartbeatMs: 60_000, maxConnections: 1_000_000, rateLimit: { perSecond: Infinity, burst: Infinity }, history: { maxLength: 20_000 } },
      ...(kind === 'switchyard-cluster' ? { cluster: { redis: process.argv[3]! } } : {}),
    });
    port = server.port;
    process.stdout.write(`${JSON.stringify({ port, certPem: server.certificate!.certPem })}\n`);
  } else if (kind === 'ws' || kind === 'ws-tuned') {
    port = await rawWsServer(certificate, kind === 'ws-tuned');
    process.stdout.write(`${JSON.stringify({ port, certPem: certificate.certPem })}\n`);
  } else {
    // Socket.IO on both servers of one sniffed port, like the others: one io, so rooms are shared.
    const plain = http.createServer();
    const secure = https.createServer({ cert: certificate.certPem, key: certificate.keyPem });
    const io = new SocketIoServer({ maxHttpBufferSize: 4 * 1024 * 1024, serveClient: false });
    io.attach(plain);
    io.attach(secure);
    io.on('connection', (socket) => {
      socket.on('echo', (data: unknown) => socket.emit('echo', data));
      socket.on('acked', (_data: unknown, ack: () => void) => ack());
      socket.on('subscribe', (topic: string) => {
        void socket.join(topic);
        socket.emit('subscribed');
      });
      socket.on('publish', (topic: string, data: unknown) => socket.to(topic).emit('message', topic, data));
    });
    port = await listenSniffing(plain, secure);
    process.stdout.write(`${JSON.stringify({ port, certPem: certificate.certPem })}\n`);
  }
  process.on('message', (message) => {
    // CPU time is read without collecting garbage (a forced GC inside a measured window would be
    // counted as the workload's cost); memory is read after a full GC, so garbage is not counted.
    // process.cpuUsage() is getrusage(RUSAGE_SELF): every thread of the process, so also the
    // native threads of wrtc (libwebrtc's network, signalling and worker threads, where SCTP and
    // DTLS run), quiche's and libuv's pool, not only the JS thread (benchmarks/run.test.ts checks it).
    // Memory: heap + external is what JS holds; RSS also counts native allocations (wrtc's peer
    // connections live outside the JS heap), and pages the heap keeps after a GC.
    // The server's wrtc runs in a child process (transports/webrtc/wrtc-remote.ts): its CPU and RSS
    // are the server's too, and are added.
    if (message === 'cpu') {
      const { user, system } = process.cpuUsage();
      process.send?.({ cpuMicros: user + system + wrtcProcessUsage().cpuMicros });
    } else if (message === 'memory') {
      (globalThis as { gc?: () => void }).gc?.();
      const { heapUsed, external, rss } = process.memoryUsage();
      process.send?.({ memoryBytes: heapUsed + external, rssBytes: rss + wrtcProcessUsage().rssBytes });
    }
  });
  process.on('disconnect', () => process.exit(0));
}

const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** CPU time (all its threads, from /proc: user + system) and RSS of the server's wrtc process, if it runs. */
function wrtcProcessUsage(): { cpuMicros: number; rssBytes: number } {
  const pid = wrtcProcesses.pid;
  if (pid === undefined) return { cpuMicros: 0, rssBytes: 0 };
  try {
    // The fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    return { cpuMicros: (ticks / CLOCK_TICKS_PER_SECOND) * 1e6, rssBytes: rssKiB * 1024 };
  } catch {
    return { cpuMicros: 0, rssBytes: 0 }; // it ended (a crash): its sessions ended with it
  }
}

const kind = process.argv[2];
if (kind !== 'switchyard' && kind !== 'switchyard-cluster' && kind !== 'ws' && kind !== 'ws-tuned' && kind !== 'socketio') throw new Error(`usage: bench-server.ts switchyard|switchyard-cluster <redis-url>|ws|ws-tuned|socketio (got ${kind})`);
await main(kind);
