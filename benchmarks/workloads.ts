/**
 * The workloads, each written once against `BenchClient` so it runs unchanged on every target.
 * Latency goes into Node's HdrHistogram (`perf_hooks.createHistogram`, nanoseconds). Closed-loop
 * runs (echo, throughput) measure from the actual send; the open-loop fan-out measures from the
 * *intended* send time of a fixed schedule, so a stalled server cannot hide its backlog
 * (coordinated omission). The first 20 % of every run is warm-up and not recorded.
 */
import net from 'node:net';
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import type { BenchClient, Target } from './targets.ts';

export interface Endpoint {
  port: number;
  certPem: string | null;
}

/** Server process accounting, from bench-server's IPC. */
export interface ServerProbe {
  /** CPU time (user + system) so far, in µs. */
  cpuMicros(): Promise<number>;
  /** JS heap + external memory after a full GC (never inside a CPU-measured window). */
  memoryAfterGc(): Promise<number>;
}

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  /** [percentile, microseconds] points for a CDF chart. */
  cdf: [number, number][];
}

export interface CellResult {
  latency?: LatencySummary;
  msgsPerSec?: number;
  mbPerSec?: number;
  serverCpuMicrosPerMsg?: number;
  /** CPU time of the load-generator process per message (it shares the machine with the server). */
  clientCpuMicrosPerMsg?: number;
  /** Fan-out: deliveries per second of server CPU time. */
  deliveriesPerCpuSecond?: number;
  setupMs?: number;
  bytesPerIdleConnection?: number;
  lost?: number;
  /** Open-loop sends the load generator itself made more than 1 ms late (it could not keep the schedule). */
  lateSends?: number;
  /** Pub/sub: deliveries of a topic to a client that did not subscribe to it (must be 0). */
  misrouted?: number;
  /** TCP or UDP payload bytes per message, both directions and all framing (HTTP, TLS, QUIC) included. */
  wireBytesPerMessage?: number;
}

const WARMUP = 0.2;
const CDF_POINTS = [0, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100];

export function summarize(histogram: RecordableHistogram): LatencySummary {
  const micros = (ns: number) => Math.round(ns / 10) / 100;
  return {
    count: histogram.count,
    p50: micros(histogram.percentile(50)),
    p90: micros(histogram.percentile(90)),
    p99: micros(histogram.percentile(99)),
    p999: micros(histogram.percentile(99.9)),
    max: micros(histogram.max),
    cdf: CDF_POINTS.map((p) => [p, micros(histogram.percentile(Math.max(p, 0.0001)))]),
  };
}

function payloadOf(size: number): Uint8Array {
  return new Uint8Array(Math.max(size, 16));
}

/** Closed loop, one message in flight: round-trip latency at `size` bytes. */
export async function echoRtt(target: Target, endpoint: Endpoint, size: number, durationMs: number): Promise<CellResult> {
  const client = await target.connect(endpoint);
  const histogram = createHistogram();
  const payload = payloadOf(size);
  const start = performance.now();
  const recordFrom = start + durationMs * WARMUP;
  let measured = 0;
  try {
    for (let now = start; now - start < durationMs; now = performance.now()) {
      await client.echo(payload);
      const after = performance.now();
      if (now >= recordFrom) {
        histogram.record(Math.max(1, Math.round((after - now) * 1e6)));
        measured++;
      }
    }
  } finally {
    client.close();
  }
  const seconds = (durationMs * (1 - WARMUP)) / 1000;
  return { latency: summarize(histogram), msgsPerSec: Math.round(measured / seconds), mbPerSec: round((measured * size * 2) / 1e6 / seconds) };
}

/**
 * Open loop: echoes sent on a fixed schedule at `rate` per second, whatever the replies do;
 * latency runs from each message's intended send time (coordinated omission corrected), so a
 * stall shows as the queue of messages that should have gone out meanwhile.
 */
export async function echoAtRate(target: Target, endpoint: Endpoint, size: number, rate: number, durationMs: number): Promise<CellResult> {
  const client = await target.connect(endpoint);
  const histogram = createHistogram();
  const payload = payloadOf(size);
  const replies: Promise<void>[] = [];
  let late = 0;
  try {
    const start = performance.now() + 10;
    const recordFrom = start + durationMs * WARMUP;
    const total = Math.floor((rate * durationMs) / 1000);
    for (let i = 0; i < total; i++) {
      const intended = start + (i * 1000) / rate;
      if (intended - performance.now() < -1) late++;
      await until(intended);
      const reply = client.echo(payload);
      if (intended >= recordFrom) replies.push(reply.then(() => void histogram.record(Math.max(1, Math.round((performance.now() - intended) * 1e6)))));
    }
    await Promise.race([Promise.all(replies), sleep(5_000)]);
  } finally {
    client.close();
  }
  const lost = replies.length - histogram.count;
  return { latency: summarize(histogram), msgsPerSec: rate, lost, ...(late ? { lateSends: late } : {}) };
}

/** Closed loop with `window` messages in flight: echo throughput and server CPU per message. */
export async function throughput(target: Target, endpoint: Endpoint, probe: ServerProbe, size: number, durationMs: number, window = 32): Promise<CellResult> {
  const client = await target.connect(endpoint);
  const payload = payloadOf(size);
  let completed = 0;
  let recording = false;
  let running = true;
  const lane = async () => {
    while (running) {
      await client.echo(payload);
      if (recording) completed++;
    }
  };
  const lanes = Array.from({ length: window }, lane);
  const { seconds, serverCpuMicros, clientCpuMicros } = await measuredWindow(durationMs, probe, (on) => void (recording = on));
  running = false;
  await Promise.race([Promise.all(lanes), sleep(2_000)]);
  client.close();
  return {
    msgsPerSec: Math.round(completed / seconds),
    mbPerSec: round((completed * size * 2) / 1e6 / seconds),
    serverCpuMicrosPerMsg: completed ? round(serverCpuMicros / completed) : undefined,
    clientCpuMicrosPerMsg: completed ? round(clientCpuMicros / completed) : undefined,
  };
}

/** Connects `count` clients 50 at a time (a burst of thousands would only measure the accept queue). */
async function connectMany(target: Target, endpoint: Endpoint, count: number): Promise<BenchClient[]> {
  const clients: BenchClient[] = [];
  for (let i = 0; i < count; i += 50) clients.push(...(await Promise.all(Array.from({ length: Math.min(50, count - i) }, () => target.connect(endpoint)))));
  return clients;
}

/** A 64-byte fan-out payload: bytes 8–15 carry its send time, 16–19 its sequence number. */
function stampedPayload(sentAt: number, sequence: number): Uint8Array {
  const payload = new Uint8Array(64);
  const view = new DataView(payload.buffer);
  view.setFloat64(8, sentAt);
  view.setUint32(16, sequence);
  return payload;
}

function readStamp(payload: Uint8Array): { sentAt: number; sequence: number } {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return { sentAt: view.getFloat64(8), sequence: view.getUint32(16) };
}

/**
 * Open loop: one publisher sends to `subscribers` clients at `rate` messages/s on a fixed
 * schedule; latency runs from each message's intended send time to each delivery.
 */
export async function fanOut(target: Target, endpoint: Endpoint, probe: ServerProbe, subscribers: number, rate: number, durationMs: number): Promise<CellResult> {
  const topic = `fan-${subscribers}`;
  const histogram = createHistogram();
  const clients: BenchClient[] = [];
  let deliveries = 0;
  let expected = 0;
  let recordFrom = Infinity;
  try {
    clients.push(...(await connectMany(target, endpoint, subscribers)));
    await Promise.all(
      clients.map(async (client) => {
        client.onPublished((payload) => {
          const { sentAt: intended } = readStamp(payload);
          if (intended < recordFrom) return;
          deliveries++;
          histogram.record(Math.max(1, Math.round((performance.now() - intended) * 1e6)));
        });
        await client.subscribe(topic);
      }),
    );
    const publisher = await target.connect(endpoint);
    clients.push(publisher);
    const start = performance.now() + 10;
    recordFrom = start + durationMs * WARMUP;
    const total = Math.floor((rate * durationMs) / 1000);
    let before: number | undefined;
    for (let i = 0; i < total; i++) {
      const intended = start + (i * 1000) / rate;
      await until(intended);
      if (!before && intended >= recordFrom) before = await probe.cpuMicros();
      publisher.publish(topic, stampedPayload(intended, i));
      if (intended >= recordFrom) expected += subscribers;
    }
    // Give the tail time to arrive; what never arrives is reported as lost.
    for (let waited = 0; deliveries < expected && waited < 5_000; waited += 20) await sleep(20);
    const after = await probe.cpuMicros();
    const seconds = (durationMs * (1 - WARMUP)) / 1000;
    const cpuSeconds = (after - (before ?? after)) / 1e6;
    return {
      latency: summarize(histogram),
      msgsPerSec: Math.round(deliveries / seconds),
      deliveriesPerCpuSecond: cpuSeconds > 0 ? Math.round(deliveries / cpuSeconds) : undefined,
      lost: expected - deliveries,
    };
  } finally {
    for (const client of clients) client.close();
  }
}

/**
 * Closed loop at maximum rate: the publisher sends a burst of `burst` messages, and the next burst
 * as soon as every subscriber has the whole previous one (a tick of game state, a block of market
 * data). Reports deliveries/s, server CPU per delivery (the fan-out cost, free of the load
 * generator that shares the machine) and latency from each send to each delivery, over whole
 * bursts.
 */
export async function fanOutMaxRate(target: Target, endpoint: Endpoint, probe: ServerProbe, subscribers: number, durationMs: number, burst: number): Promise<CellResult> {
  const topic = `fan-max-${subscribers}`;
  const histogram = createHistogram();
  const clients: BenchClient[] = [];
  let publisher: BenchClient | undefined;
  let sequence = 0;
  let pending = 0;
  let deliveries = 0;
  let recording = false;
  /** Set while the workload waits for the current burst to complete instead of publishing the next. */
  let hold: (() => void) | undefined;
  const publishBurst = () => {
    pending = burst * subscribers;
    for (let i = 0; i < burst; i++) publisher!.publish(topic, stampedPayload(performance.now(), sequence++));
  };
  /** Resolves once every subscriber has the current burst; nothing more is published meanwhile. */
  const burstDone = () =>
    Promise.race([
      new Promise<void>((resolve) => void (hold = resolve)),
      sleep(10_000).then(() => {
        throw new Error(`a burst did not complete within 10 s: ${pending} deliveries missing`);
      }),
    ]);
  try {
    clients.push(...(await connectMany(target, endpoint, subscribers)));
    await Promise.all(
      clients.map(async (client) => {
        client.onPublished((payload) => {
          if (recording) {
            deliveries++;
            histogram.record(Math.max(1, Math.round((performance.now() - readStamp(payload).sentAt) * 1e6)));
          }
          if (--pending > 0) return;
          if (hold) {
            const resume = hold;
            hold = undefined;
            resume();
          } else publishBurst();
        });
        await client.subscribe(topic);
      }),
    );
    publisher = await target.connect(endpoint);
    publishBurst();
    await sleep(durationMs * WARMUP);
    // The window spans whole bursts, so the server CPU it counts is exactly the work for the
    // deliveries it counts: it opens and closes between bursts, when the server is idle.
    await burstDone();
    const before = await probe.cpuMicros();
    const started = performance.now();
    recording = true;
    publishBurst();
    await sleep(durationMs * (1 - WARMUP));
    await burstDone();
    recording = false;
    const seconds = (performance.now() - started) / 1000;
    const serverCpuMicros = (await probe.cpuMicros()) - before;
    return {
      latency: summarize(histogram),
      msgsPerSec: Math.round(deliveries / seconds),
      deliveriesPerCpuSecond: serverCpuMicros > 0 ? Math.round(deliveries / (serverCpuMicros / 1e6)) : undefined,
      serverCpuMicrosPerMsg: deliveries ? round(serverCpuMicros / deliveries) : undefined,
    };
  } finally {
    publisher?.close();
    for (const client of clients) client.close();
  }
}

/** Sequential connects (including the protocol handshake): median time to a usable client. */
export async function connectionSetup(target: Target, endpoint: Endpoint, times: number): Promise<CellResult> {
  const samples: number[] = [];
  for (let i = 0; i < times; i++) {
    const started = performance.now();
    const client = await target.connect(endpoint);
    samples.push(performance.now() - started);
    client.close();
  }
  samples.sort((a, b) => a - b);
  return { setupMs: round(samples[Math.floor(samples.length / 2)]!) };
}

/** Server memory (JS heap + external, after GC) per idle connection, from `count` idle clients. */
export async function idleMemory(target: Target, endpoint: Endpoint, probe: ServerProbe, count: number): Promise<CellResult> {
  // Connections of earlier cells may still be closing on the server: let them go first.
  await sleep(300);
  const before = await probe.memoryAfterGc();
  const clients: BenchClient[] = [];
  try {
    clients.push(...(await connectMany(target, endpoint, count)));
    await sleep(300);
    const after = await probe.memoryAfterGc();
    return { bytesPerIdleConnection: Math.round((after - before) / count) };
  } finally {
    for (const client of clients) client.close();
  }
}

/**
 * Pub/sub with many topics and partial subscriptions: 50 clients follow 10 of 100 topics each; a
 * publisher cycles through all 100 at `rate` (open loop). Checks nobody gets a topic it did not
 * subscribe to.
 */
export async function pubSub(target: Target, endpoint: Endpoint, rate: number, durationMs: number): Promise<CellResult> {
  const TOPICS = 100;
  const histogram = createHistogram();
  const clients: BenchClient[] = [];
  const followers = new Map<number, number>();
  let deliveries = 0;
  let misrouted = 0;
  let expected = 0;
  let recordFrom = Infinity;
  try {
    // Connect and subscribe concurrently: on polling transports every acknowledgement waits for a poll.
    await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const client = await target.connect(endpoint);
        clients.push(client);
        const mine = new Set(Array.from({ length: 10 }, (_, k) => (i * 7 + k * 10) % TOPICS));
        client.onPublished((payload, topic) => {
          if (!mine.has(Number(topic.slice(1)))) misrouted++;
          const { sentAt: intended } = readStamp(payload);
          if (intended < recordFrom) return;
          deliveries++;
          histogram.record(Math.max(1, Math.round((performance.now() - intended) * 1e6)));
        });
        await Promise.all([...mine].map((topic) => client.subscribe(`t${topic}`)));
        for (const topic of mine) followers.set(topic, (followers.get(topic) ?? 0) + 1);
      }),
    );
    const publisher = await target.connect(endpoint);
    clients.push(publisher);
    const start = performance.now() + 10;
    recordFrom = start + durationMs * WARMUP;
    const total = Math.floor((rate * durationMs) / 1000);
    for (let i = 0; i < total; i++) {
      const intended = start + (i * 1000) / rate;
      await until(intended);
      publisher.publish(`t${i % TOPICS}`, stampedPayload(intended, i));
      if (intended >= recordFrom) expected += followers.get(i % TOPICS) ?? 0;
    }
    for (let waited = 0; deliveries < expected && waited < 5_000; waited += 20) await sleep(20);
    return { latency: summarize(histogram), msgsPerSec: Math.round(deliveries / ((durationMs * (1 - WARMUP)) / 1000)), lost: expected - deliveries, misrouted };
  } finally {
    for (const client of clients) client.close();
  }
}

/** Closed loop: one message at a time, each waiting for the server's receipt. */
export async function ackedDelivery(target: Target, endpoint: Endpoint, durationMs: number): Promise<CellResult> {
  const client = await target.connect(endpoint);
  if (!client.acked) {
    client.close();
    throw new Error(`${target.name} has no receipts`);
  }
  const histogram = createHistogram();
  const payload = payloadOf(64);
  const start = performance.now();
  let measured = 0;
  try {
    for (let now = start; now - start < durationMs; now = performance.now()) {
      await client.acked(payload);
      if (now >= start + durationMs * WARMUP) {
        histogram.record(Math.max(1, Math.round((performance.now() - now) * 1e6)));
        measured++;
      }
    }
  } finally {
    client.close();
  }
  return { latency: summarize(histogram), msgsPerSec: Math.round(measured / ((durationMs * (1 - WARMUP)) / 1000)) };
}

/**
 * Bytes on the wire per 64 B message: `count` sequential echoes after the connection is up, so the
 * handshake is not counted. TCP targets go through a counting proxy (TCP payload bytes: HTTP,
 * WebSocket, TLS framing included); QUIC targets report quiche's UDP payload bytes.
 */
export async function wireBytes(target: Target, endpoint: Endpoint, count: number): Promise<CellResult> {
  let counted = 0;
  // No Nagle on either leg: the proxy must not hold small writes back (it would only add delay).
  const proxy = net.createServer({ noDelay: true }, (inbound) => {
    const outbound = net.connect({ port: endpoint.port, host: '127.0.0.1', noDelay: true });
    inbound.on('data', (data: Buffer) => void (counted += data.length));
    outbound.on('data', (data: Buffer) => void (counted += data.length));
    inbound.pipe(outbound).on('error', () => inbound.destroy());
    outbound.pipe(inbound).on('error', () => outbound.destroy());
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const via = { ...endpoint, port: (proxy.address() as net.AddressInfo).port };
  const client = await target.connect(target.server === 'switchyard' && target.name.startsWith('webtransport') ? endpoint : via);
  try {
    const payload = payloadOf(64);
    for (let i = 0; i < Math.min(20, count); i++) await client.echo(payload); // settle (first polls, window updates)
    const quicBefore = client.wireBytes?.();
    const before = counted;
    for (let i = 0; i < count; i++) await client.echo(payload);
    const quicAfter = client.wireBytes?.();
    const bytes = quicBefore && quicAfter ? quicAfter.sent - quicBefore.sent + (quicAfter.received - quicBefore.received) : counted - before;
    return { wireBytesPerMessage: Math.round(bytes / (2 * count)) };
  } finally {
    client.close();
    proxy.close();
  }
}

/**
 * Warm-up, then the measured window, with `recording` switched on for its length: wall seconds,
 * and CPU µs of the server process and of this one over exactly that window.
 */
async function measuredWindow(durationMs: number, probe: ServerProbe, recording: (on: boolean) => void): Promise<{ seconds: number; serverCpuMicros: number; clientCpuMicros: number }> {
  await sleep(durationMs * WARMUP);
  const before = await probe.cpuMicros();
  const clientBefore = process.cpuUsage();
  recording(true);
  const started = performance.now();
  await sleep(durationMs * (1 - WARMUP));
  recording(false);
  const seconds = (performance.now() - started) / 1000;
  const after = await probe.cpuMicros();
  const client = process.cpuUsage(clientBefore);
  return { seconds, serverCpuMicros: after - before, clientCpuMicros: client.user + client.system };
}

/**
 * Resolves at `time` (performance.now() scale) to within tens of µs: a timer for all but the last
 * millisecond (timers are only ms-precise), then setImmediate turns, which keep handling I/O.
 */
async function until(time: number): Promise<void> {
  const wait = time - performance.now();
  if (wait > 1.5) await sleep(wait - 1);
  while (performance.now() < time) await new Promise((resolve) => setImmediate(resolve));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
