/**
 * The workloads, each written once against `BenchClient` so it runs unchanged on every target.
 * Latency goes into Node's HdrHistogram (`perf_hooks.createHistogram`, nanoseconds). Closed-loop
 * runs (echo, throughput) measure from the actual send; open-loop runs (echo-rate, fanout, pubsub)
 * measure from the *intended* send time of a fixed schedule, so a stalled server cannot hide its
 * backlog (coordinated omission), and report the rate the generator actually achieved. The first
 * 20 % of every run is warm-up and not recorded.
 *
 * Every message carries a sequence number, and every workload counts what was lost (never came
 * back) and misrouted (came back out of order, twice, to the wrong client or on the wrong topic):
 * on a reliable lane either one fails the cell.
 */
import net from 'node:net';
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import { startTcpProxy } from '../test-support/tcp-proxy.ts';
import type { Delivery } from '../transports/client.ts';
import { createClient } from '../transports/node-client.ts';
import type { BenchClient, Target } from './targets.ts';

export interface Endpoint {
  port: number;
  certPem: string | null;
  /** A cluster's nodes (the first is `port`). */
  ports?: number[];
}

/** Server process accounting, from bench-server's IPC. */
export interface ServerProbe {
  /** CPU time (user + system) so far, in µs. */
  cpuMicros(): Promise<number>;
  /** JS heap + external memory, and the whole process's RSS, after a full GC (never inside a CPU-measured window). */
  memoryAfterGc(): Promise<{ heapAndExternal: number; rss: number }>;
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
  /** The same in resident memory: native allocations (wrtc's) included. */
  rssBytesPerIdleConnection?: number;
  /** Messages sent (or deliveries expected) that never arrived. */
  lost?: number;
  /** Deliveries that arrived out of order, twice, at the wrong client or on the wrong topic. */
  misrouted?: number;
  /** Open loop: the rate asked for, per second. */
  targetRate?: number;
  /** Open loop: the rate the load generator actually sent at over the measured window, per second. */
  achievedRate?: number;
  /** Open-loop sends the load generator itself made more than 1 ms late (it could not keep the schedule). */
  lateSends?: number;
  /** Open loop: the generator fell behind its schedule (achieved < 97 % of the rate, or > 1 % of sends late). */
  generatorBehind?: boolean;
  /** TCP or UDP payload bytes per message, both directions and all framing (HTTP, TLS, QUIC) included. */
  wireBytesPerMessage?: number;
  /** Recovery: from the resumed connection's TCP accept to the last missed message delivered (ms). */
  recoveryMs?: number;
  /** Recovery: messages the client missed while away (all recovered, or the cell fails as lost). */
  missed?: number;
}

const WARMUP = 0.2;
const CDF_POINTS = [0, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100];
/**
 * A reliable reply or delivery that has not come this long after the last progress is lost (a
 * 1 MiB echo over Socket.IO polling took over 5 s on the loaded 2-core VM, hence the margin).
 */
const LOST_AFTER_MS = 10_000;
/** A closed-loop echo cell runs past its duration until it has this many measured round trips. */
const MIN_SAMPLES = 5;

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

/** Thrown when reliable messages never arrive; the runner fails the cell with this message. */
export class LostMessagesError extends Error {
  constructor(readonly lost: number, what: string) {
    super(`${lost} ${what} never arrived (nothing for ${LOST_AFTER_MS / 1000} s)`);
  }
}

/** Byte 0 is the raw ws peer's op code; bytes 4–7 an echo's sequence number; 8–19 a fan-out's stamp. */
const SEQUENCE_OFFSET = 4;

/**
 * `size` bytes (at least 20) of printable ASCII, as a text payload would be: a peer that sends
 * payloads as strings (Socket.IO's text rows) then writes one character per byte, where a zero
 * byte would cost it six in JSON (\u0000). Binary encodings do not care what the bytes are.
 */
function payloadOf(size: number): Uint8Array {
  return new Uint8Array(Math.max(size, 20)).fill(0x61);
}

function view(payload: Uint8Array): DataView {
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
}

/**
 * Closed-loop echoes over one client: each `echo` sends a copy of the payload numbered in
 * sequence and resolves when it comes back. Replies must come back in order (every reliable lane
 * keeps order per client); one that does not is counted as misrouted. Replies that stop coming
 * for LOST_AFTER_MS reject every waiter with LostMessagesError.
 */
export class Echoer {
  readonly #client: BenchClient;
  readonly #waiting: { sequence: number; resolve: () => void; reject: (error: Error) => void }[] = [];
  #head = 0;
  #next = 0;
  #lastProgress = performance.now();
  readonly #watchdog: ReturnType<typeof setInterval>;
  misrouted = 0;

  constructor(client: BenchClient) {
    this.#client = client;
    client.onEcho((payload) => {
      this.#lastProgress = performance.now();
      const waiter = this.#waiting[this.#head];
      if (!waiter) return void this.misrouted++;
      if (payload.byteLength < SEQUENCE_OFFSET + 4 || view(payload).getUint32(SEQUENCE_OFFSET) !== waiter.sequence) this.misrouted++;
      this.#waiting[this.#head++] = undefined as never;
      if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
        this.#waiting.splice(0, this.#head);
        this.#head = 0;
      }
      waiter.resolve();
    });
    this.#watchdog = setInterval(() => {
      const pending = this.pending;
      if (pending === 0 || performance.now() - this.#lastProgress < LOST_AFTER_MS) return;
      const error = new LostMessagesError(pending, 'echoes');
      for (const waiter of this.#waiting.splice(0)) waiter?.reject(error);
      this.#head = 0;
    }, 250);
  }

  get pending(): number {
    return this.#waiting.length - this.#head;
  }

  echo(payload: Uint8Array): Promise<void> {
    const message = payload.slice();
    const sequence = this.#next++;
    view(message).setUint32(SEQUENCE_OFFSET, sequence);
    if (this.pending === 0) this.#lastProgress = performance.now();
    return new Promise<void>((resolve, reject) => {
      this.#waiting.push({ sequence, resolve, reject });
      this.#client.sendToSelf(message);
    });
  }

  close(): void {
    clearInterval(this.#watchdog);
    this.#client.close();
  }
}

/** Closed loop, one message in flight: round-trip latency at `size` bytes. */
export async function echoRtt(target: Target, endpoint: Endpoint, size: number, durationMs: number): Promise<CellResult> {
  const echoer = new Echoer(await target.connect(endpoint));
  const histogram = createHistogram();
  const payload = payloadOf(size);
  const start = performance.now();
  const recordFrom = start + durationMs * WARMUP;
  let measured = 0;
  try {
    for (let now = start; now - start < durationMs || measured < MIN_SAMPLES; now = performance.now()) {
      await echoer.echo(payload);
      const after = performance.now();
      if (now >= recordFrom) {
        histogram.record(Math.max(1, Math.round((after - now) * 1e6)));
        measured++;
      }
    }
  } finally {
    echoer.close();
  }
  const seconds = (performance.now() - recordFrom) / 1000;
  return { latency: summarize(histogram), msgsPerSec: Math.round(measured / seconds), mbPerSec: round((measured * size * 2) / 1e6 / seconds), lost: 0, misrouted: echoer.misrouted };
}

/**
 * Open loop: echoes sent on a fixed schedule at `rate` per second, whatever the replies do;
 * latency runs from each message's intended send time (coordinated omission corrected), so a
 * stall shows as the queue of messages that should have gone out meanwhile. Replies are paired by
 * sequence number, so it runs on lanes that lose and reorder (datagrams): it counts the loss and
 * reports server CPU per message sent over the measured window.
 */
export async function echoAtRate(target: Target, endpoint: Endpoint, probe: ServerProbe, size: number, rate: number, durationMs: number): Promise<CellResult> {
  const client = await target.connect(endpoint);
  const histogram = createHistogram();
  const payload = payloadOf(size);
  /** Every message still awaited, by sequence number: its intended send time, and whether it is measured (not warm-up). */
  const awaited = new Map<number, { intended: number; measured: boolean }>();
  let misrouted = 0;
  let lastProgress = performance.now();
  client.onEcho((reply) => {
    lastProgress = performance.now();
    const sequence = reply.byteLength >= SEQUENCE_OFFSET + 4 ? view(reply).getUint32(SEQUENCE_OFFSET) : -1;
    const sent = awaited.get(sequence);
    // Not awaited: a second copy, or not a message this client sent.
    if (!sent) return void misrouted++;
    awaited.delete(sequence);
    if (sent.measured) histogram.record(Math.max(1, Math.round((lastProgress - sent.intended) * 1e6)));
  });
  try {
    const schedule = new OpenLoop(rate, durationMs);
    const { cpuBefore, sends, firstAt, lastAt, report } = await schedule.run((i, intended, measured) => {
      const message = payload.slice();
      view(message).setUint32(SEQUENCE_OFFSET, i);
      awaited.set(i, { intended, measured });
      client.sendToSelf(message);
    }, probe);
    // The tail: wait while replies keep coming (an unreliable lane's losses end it after 500 ms).
    const quiet = target.lane === 'unreliable' ? 500 : LOST_AFTER_MS;
    lastProgress = performance.now();
    while (awaited.size > 0 && performance.now() - lastProgress < quiet) await sleep(10);
    const lost = [...awaited.values()].filter((m) => m.measured).length;
    const cpuMicros = (await probe.cpuMicros()) - (cpuBefore ?? 0);
    return {
      latency: summarize(histogram),
      msgsPerSec: Math.round(histogram.count / ((lastAt - firstAt) / 1000 || 1)),
      serverCpuMicrosPerMsg: sends ? round(cpuMicros / sends) : undefined,
      lost,
      misrouted,
      ...report,
    };
  } finally {
    client.close();
  }
}

/**
 * The sending side of every open-loop cell: `rate` sends per second for `durationMs`, from 10 ms
 * from now, each made at its intended time whatever the replies do. Sends from `recordFrom` (the
 * end of the warm-up) on are measured.
 */
class OpenLoop {
  readonly #start = performance.now() + 10;
  readonly recordFrom: number;
  readonly #total: number;

  constructor(
    readonly rate: number,
    durationMs: number,
  ) {
    this.recordFrom = this.#start + durationMs * WARMUP;
    this.#total = Math.floor((rate * durationMs) / 1000);
  }

  /**
   * Calls `send(i, intended, measured)` for each send at its intended time; with a `probe`, reads
   * the server's CPU just before the first measured send. Returns that reading, the measured
   * sends' count and span, and what every open-loop cell reports: the rate achieved, the sends
   * more than 1 ms late, and whether the generator fell behind.
   */
  async run(send: (i: number, intended: number, measured: boolean) => void, probe?: ServerProbe) {
    let cpuBefore: number | undefined;
    let sends = 0;
    let late = 0;
    let firstAt = 0;
    let lastAt = 0;
    for (let i = 0; i < this.#total; i++) {
      const intended = this.#start + (i * 1000) / this.rate;
      await until(intended);
      const measured = intended >= this.recordFrom;
      if (measured && sends === 0 && probe) cpuBefore = await probe.cpuMicros();
      const now = performance.now();
      send(i, intended, measured);
      if (!measured) continue;
      if (sends++ === 0) firstAt = now;
      lastAt = now;
      if (now - intended > 1) late++;
    }
    const achievedRate = sends > 1 ? Math.round((sends - 1) / ((lastAt - firstAt) / 1000)) : 0;
    const generatorBehind = achievedRate < this.rate * 0.97 || late > sends * 0.01;
    return { cpuBefore, sends, firstAt, lastAt, report: { targetRate: this.rate, achievedRate, lateSends: late, generatorBehind } satisfies Pick<CellResult, 'targetRate' | 'achievedRate' | 'lateSends' | 'generatorBehind'> };
  }
}

/** Closed loop with `window` messages in flight: echo throughput and server CPU per message. */
export async function throughput(target: Target, endpoint: Endpoint, probe: ServerProbe, size: number, durationMs: number, window = 32): Promise<CellResult> {
  const echoer = new Echoer(await target.connect(endpoint));
  const payload = payloadOf(size);
  let completed = 0;
  let recording = false;
  let running = true;
  const lane = async () => {
    while (running) {
      await echoer.echo(payload);
      if (recording) completed++;
    }
  };
  try {
    const lanes = Promise.all(Array.from({ length: window }, lane));
    const measuring = measuredWindow(durationMs, probe, (on) => void (recording = on));
    // A lost echo rejects its lane, and so this race: the cell fails rather than reporting a stalled window.
    const { seconds, serverCpuMicros, clientCpuMicros } = await Promise.race([measuring, lanes.then(() => measuring)]);
    running = false;
    await lanes;
    return {
      msgsPerSec: Math.round(completed / seconds),
      mbPerSec: round((completed * size * 2) / 1e6 / seconds),
      serverCpuMicrosPerMsg: completed ? round(serverCpuMicros / completed) : undefined,
      clientCpuMicrosPerMsg: completed ? round(clientCpuMicros / completed) : undefined,
      lost: 0,
      misrouted: echoer.misrouted,
    };
  } finally {
    running = false;
    echoer.close();
  }
}

/** Connects `count` clients 50 at a time (a burst of thousands would only measure the accept queue). */
async function connectMany(target: Target, endpoint: Endpoint, count: number): Promise<BenchClient[]> {
  const clients: BenchClient[] = [];
  for (let i = 0; i < count; i += 50) clients.push(...(await Promise.all(Array.from({ length: Math.min(50, count - i) }, () => target.connect(endpoint)))));
  return clients;
}

/** A fan-out payload of `size` bytes (at least 20): bytes 8–15 carry its send time, 16–19 its sequence number. */
function stampedPayload(sentAt: number, sequence: number, size = 64): Uint8Array {
  const payload = payloadOf(size);
  view(payload).setFloat64(8, sentAt);
  view(payload).setUint32(16, sequence);
  return payload;
}

function readStamp(payload: Uint8Array): { sentAt: number; sequence: number } {
  return { sentAt: view(payload).getFloat64(8), sequence: view(payload).getUint32(16) };
}

/**
 * A subscriber's order check: each topic's deliveries come in publish order, each once. Returns
 * false for one that does not (out of order, duplicate or on a topic it did not follow).
 */
function inOrder(): (topic: string, sequence: number) => boolean {
  const next = new Map<string, number>();
  return (topic, sequence) => {
    const expected = next.get(topic);
    next.set(topic, sequence + 1);
    return expected === undefined || sequence >= expected;
  };
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
  let misrouted = 0;
  let expected = 0;
  let recordFrom = Infinity;
  let lastProgress = performance.now();
  try {
    clients.push(...(await connectMany(target, endpoint, subscribers)));
    await Promise.all(
      clients.map(async (client) => {
        const ordered = inOrder();
        client.onPublished((payload, on) => {
          const { sentAt: intended, sequence } = readStamp(payload);
          if (on !== topic || !ordered(on, sequence)) misrouted++;
          if (intended < recordFrom) return;
          deliveries++;
          lastProgress = performance.now();
          histogram.record(Math.max(1, Math.round((lastProgress - intended) * 1e6)));
        });
        await client.subscribe(topic);
      }),
    );
    const publisher = await target.connect(endpoint);
    clients.push(publisher);
    const schedule = new OpenLoop(rate, durationMs);
    recordFrom = schedule.recordFrom;
    const { cpuBefore, report } = await schedule.run((i, intended, measured) => {
      publisher.publish(topic, stampedPayload(intended, i));
      if (measured) expected += subscribers;
    }, probe);
    // Give the tail time to arrive; what never arrives is reported as lost.
    const quiet = target.lane === 'unreliable' ? 500 : LOST_AFTER_MS;
    lastProgress = performance.now();
    while (deliveries < expected && performance.now() - lastProgress < quiet) await sleep(20);
    const after = await probe.cpuMicros();
    const seconds = (durationMs * (1 - WARMUP)) / 1000;
    const cpuSeconds = (after - (cpuBefore ?? after)) / 1e6;
    return {
      latency: summarize(histogram),
      msgsPerSec: Math.round(deliveries / seconds),
      deliveriesPerCpuSecond: cpuSeconds > 0 ? Math.round(deliveries / cpuSeconds) : undefined,
      lost: Math.max(0, expected - deliveries),
      misrouted,
      ...report,
    };
  } finally {
    for (const client of clients) client.close();
  }
}

/**
 * Closed loop at maximum rate, publishes of `size` bytes sent one at a time: the publisher keeps `window`
 * publishes in flight and sends the next, on its own, each time one has reached every subscriber
 * (the same 32 in flight as the throughput workload; no bursts, so a server only batches what
 * arrives while it is busy). Reports deliveries/s, server CPU per delivery (the fan-out cost, free
 * of the load generator that shares the machine) and latency from each send to each delivery.
 * The CPU window opens and closes with nothing in flight, so the CPU it counts is exactly the
 * work for the deliveries it counts.
 */
export async function fanOutMaxRate(target: Target, endpoint: Endpoint, probe: ServerProbe, subscribers: number, size: number, durationMs: number, window: number): Promise<CellResult> {
  const topic = `fan-max-${subscribers}`;
  const histogram = createHistogram();
  const clients: BenchClient[] = [];
  let publisher: BenchClient | undefined;
  /** Deliveries still missing per publish in flight, by sequence number. */
  const missing = new Map<number, number>();
  let sequence = 0;
  let deliveries = 0;
  let misrouted = 0;
  let recording = false;
  let publishing = false;
  let lastProgress = performance.now();
  let drained: (() => void) | undefined;
  const publishOne = () => {
    missing.set(sequence, subscribers);
    publisher!.publish(topic, stampedPayload(performance.now(), sequence++, size));
  };
  /** Stops publishing and resolves once nothing is in flight; LostMessagesError if deliveries stop. */
  const drain = async () => {
    publishing = false;
    lastProgress = performance.now();
    while (missing.size > 0) {
      if (performance.now() - lastProgress > LOST_AFTER_MS) throw new LostMessagesError([...missing.values()].reduce((a, b) => a + b, 0), 'fan-out deliveries');
      await new Promise<void>((resolve) => {
        drained = resolve;
        setTimeout(resolve, 100);
      });
    }
  };
  const start = () => {
    publishing = true;
    for (let i = 0; i < window; i++) publishOne();
  };
  try {
    clients.push(...(await connectMany(target, endpoint, subscribers)));
    await Promise.all(
      clients.map(async (client) => {
        const ordered = inOrder();
        client.onPublished((payload, on) => {
          const { sentAt, sequence: which } = readStamp(payload);
          if (on !== topic || !ordered(on, which)) misrouted++;
          lastProgress = performance.now();
          if (recording) {
            deliveries++;
            histogram.record(Math.max(1, Math.round((lastProgress - sentAt) * 1e6)));
          }
          const left = (missing.get(which) ?? 0) - 1;
          if (left > 0) return void missing.set(which, left);
          missing.delete(which);
          if (publishing) publishOne();
          else if (missing.size === 0) drained?.();
        });
        await client.subscribe(topic);
      }),
    );
    publisher = await target.connect(endpoint);
    start();
    await sleep(durationMs * WARMUP);
    await drain();
    const before = await probe.cpuMicros();
    const started = performance.now();
    recording = true;
    start();
    await sleep(durationMs * (1 - WARMUP));
    await drain();
    recording = false;
    const seconds = (performance.now() - started) / 1000;
    const serverCpuMicros = (await probe.cpuMicros()) - before;
    return {
      latency: summarize(histogram),
      msgsPerSec: Math.round(deliveries / seconds),
      deliveriesPerCpuSecond: serverCpuMicros > 0 ? Math.round(deliveries / (serverCpuMicros / 1e6)) : undefined,
      serverCpuMicrosPerMsg: deliveries ? round(serverCpuMicros / deliveries, 3) : undefined,
      lost: 0,
      misrouted,
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

/** Server memory (JS heap + external, and RSS, after GC) per idle connection, from `count` idle clients. */
export async function idleMemory(target: Target, endpoint: Endpoint, probe: ServerProbe, count: number): Promise<CellResult> {
  // Connections of earlier cells may still be closing on the server: let them go first.
  await sleep(300);
  const before = await probe.memoryAfterGc();
  const clients: BenchClient[] = [];
  try {
    clients.push(...(await connectMany(target, endpoint, count)));
    await sleep(300);
    const after = await probe.memoryAfterGc();
    return { bytesPerIdleConnection: Math.round((after.heapAndExternal - before.heapAndExternal) / count), rssBytesPerIdleConnection: Math.round((after.rss - before.rss) / count) };
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
  let lastProgress = performance.now();
  try {
    // Connect and subscribe concurrently: on polling transports every acknowledgement waits for a poll.
    await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const client = await target.connect(endpoint);
        clients.push(client);
        const mine = new Set(Array.from({ length: 10 }, (_, k) => (i * 7 + k * 10) % TOPICS));
        const ordered = inOrder();
        client.onPublished((payload, topic) => {
          const { sentAt: intended, sequence } = readStamp(payload);
          if (!mine.has(Number(topic.slice(1))) || !ordered(topic, sequence)) misrouted++;
          if (intended < recordFrom) return;
          deliveries++;
          lastProgress = performance.now();
          histogram.record(Math.max(1, Math.round((lastProgress - intended) * 1e6)));
        });
        await Promise.all([...mine].map((topic) => client.subscribe(`t${topic}`)));
        for (const topic of mine) followers.set(topic, (followers.get(topic) ?? 0) + 1);
      }),
    );
    const publisher = await target.connect(endpoint);
    clients.push(publisher);
    const schedule = new OpenLoop(rate, durationMs);
    recordFrom = schedule.recordFrom;
    const { report } = await schedule.run((i, intended, measured) => {
      publisher.publish(`t${i % TOPICS}`, stampedPayload(intended, i));
      if (measured) expected += followers.get(i % TOPICS) ?? 0;
    });
    const quiet = target.lane === 'unreliable' ? 500 : LOST_AFTER_MS;
    lastProgress = performance.now();
    while (deliveries < expected && performance.now() - lastProgress < quiet) await sleep(20);
    return {
      latency: summarize(histogram),
      msgsPerSec: Math.round(deliveries / ((durationMs * (1 - WARMUP)) / 1000)),
      lost: Math.max(0, expected - deliveries),
      misrouted,
      ...report,
    };
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
 * WebSocket, TLS framing included); QUIC targets report quiche's UDP payload bytes, WebRTC targets
 * their ICE transport's (getStats: DTLS, SCTP and its SACKs included).
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
  const echoer = new Echoer(client);
  try {
    const payload = payloadOf(64);
    for (let i = 0; i < Math.min(20, count); i++) await echoer.echo(payload); // settle (first polls, window updates)
    const quicBefore = await client.wireBytes?.();
    const before = counted;
    for (let i = 0; i < count; i++) await echoer.echo(payload);
    const quicAfter = await client.wireBytes?.();
    const bytes = quicBefore && quicAfter ? quicAfter.sent - quicBefore.sent + (quicAfter.received - quicBefore.received) : counted - before;
    return { wireBytesPerMessage: Math.round(bytes / (2 * count)), misrouted: echoer.misrouted };
  } finally {
    echoer.close();
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
/**
 * Recovery after a reconnect (Switchyard's websocket client): a room member drops off (its
 * connection cut through a TCP forwarder standing in for a load balancer; on a cluster it comes
 * back through the other node), `missed` acknowledged messages go to the room meanwhile, and it
 * resumes with its last offset. Timed from the TCP accept of its new connection to the last missed
 * message; every one must arrive once, in order (else lost / misrouted, and the cell fails).
 */
export async function recoveryTime(endpoint: Endpoint, missed: number): Promise<CellResult> {
  const [home, away] = endpoint.ports ?? [endpoint.port, endpoint.port];
  const proxy = await startTcpProxy(home!);
  const room = `recovery-${Math.random().toString(36).slice(2)}`;
  const mover = createClient({ url: `http://127.0.0.1:${proxy.port}`, transports: 'websocket' });
  const publisher = createClient({ url: `http://127.0.0.1:${away}`, transports: 'websocket' });
  try {
    const inbox: Delivery[] = [];
    let lastAt = 0;
    mover.on('message', (delivery) => {
      inbox.push(delivery);
      lastAt = performance.now();
    });
    let recovered: boolean | undefined;
    mover.on('recovery', (complete) => (recovered = complete));
    await Promise.all([mover.connect(), publisher.connect()]);
    await mover.join(room);
    await publisher.multicast({ room }, 'before', { ack: true });
    while (inbox.length === 0) await sleep(5);
    inbox.length = 0;
    // Away: the forwarder cuts the connection and refuses new ones (port 1) while the room moves on.
    const gone = new Promise<void>((resolve) => mover.on('state', (state) => state === 'reconnecting' && resolve()));
    proxy.pointAt(1);
    proxy.cutAll();
    await gone;
    for (let i = 0; i < missed; i += 1000) await Promise.all(Array.from({ length: Math.min(1000, missed - i) }, (_, j) => publisher.multicast({ room }, i + j, { ack: true })));
    let acceptedAt = 0;
    proxy.onAccept(() => (acceptedAt ||= performance.now()));
    proxy.pointAt(away!);
    let progress = performance.now();
    let seen = 0;
    while (inbox.length < missed && performance.now() - progress < LOST_AFTER_MS) {
      if (inbox.length > seen) [seen, progress] = [inbox.length, performance.now()];
      await sleep(5);
    }
    const values = inbox.slice(0, missed).map((d) => d.data as number);
    const misrouted = values.filter((value, i) => value !== i).length + Math.max(0, inbox.length - missed);
    return { recoveryMs: Math.round((lastAt - acceptedAt) * 10) / 10, missed, lost: Math.max(0, missed - inbox.length) + (recovered === false ? 1 : 0), misrouted };
  } finally {
    mover.close();
    publisher.close();
    await proxy.close();
  }
}

async function until(time: number): Promise<void> {
  const wait = time - performance.now();
  if (wait > 1.5) await sleep(wait - 1);
  while (performance.now() < time) await new Promise((resolve) => setImmediate(resolve));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function round(value: number, digits = 2): number {
  return Math.round(value * 10 ** digits) / 10 ** digits;
}
