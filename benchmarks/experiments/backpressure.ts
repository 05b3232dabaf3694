/**
 * The backpressure experiment (PRODUCT.md §8): a fast producer publishes to a topic at a fixed
 * rate, a slow consumer follows it, and the server's slow-consumer policy decides what happens to
 * the consumer's outbound queue. Per policy and consumer transport, over time: the consumer's
 * server-side queue (bytes, messages), drops, delivery latency, server memory; and the outcome.
 *
 * Processes (loopback, no impairment): the server (server-process.ts, one per policy, small queue
 * limits so the policy acts within seconds), the consumer (bp-consumer.ts, CPU-bound per message),
 * and the producer in this process. The producer always publishes over WebSocket so that only the
 * consumer's transport differs between rows.
 *
 * What the server's 'wait' policy does: the connection refuses a message past its hard limit
 * (`send` returns 'refused'); the router cannot hold a fan-out for one slow reader, so that
 * delivery is lost and counted in the router's `refused`. The run also derives `notQueued`
 * (routed publishes − queued deliveries − counted drops) as a cross-check.
 *
 * `runBackpressure()` is importable (the lab can call it): it returns a JSON-serialisable result and
 * reports every sample through `onSample`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from '../../transports/node-webtransport.ts';
import type { CloseInfo, SlowConsumerPolicy, TransportName } from '../../transports/transport.ts';
import type { LatencySummary } from '../workloads.ts';
import { percentile, summarizeMs } from './analysis.ts';
import type { ConsumerMessage, ConsumerOptions } from './bp-consumer.ts';
import { LineReader, ROOT, stopChild } from './processes.ts';
import type { ServerProcessOptions, ServerReady, ServerSample } from './server-process.ts';

export type BackpressureTransport = Extract<TransportName, 'websocket' | 'long-polling' | 'webtransport'>;
export const BACKPRESSURE_TRANSPORTS: readonly BackpressureTransport[] = ['websocket', 'long-polling', 'webtransport'];
export const POLICIES: readonly SlowConsumerPolicy[] = ['wait', 'drop-oldest', 'drop-newest', 'disconnect'];

/**
 * Defaults, from runs on this machine: the producer offers 1000 × 16 KiB/s (16 MB/s), the consumer
 * spends 5 ms per message (at most ~200/s, 3.2 MB/s). Large messages because the kernel absorbs
 * megabytes before the server sees any backpressure (loopback TCP buffers autotune to several MB,
 * and the consumer's Node socket reads up to ~2 MB per event-loop turn); with 1 KiB messages at
 * 2000/s the server's queue stayed empty for a 3 s run. Small queue limits (64 KiB high water,
 * 256 KiB hard) so the policy acts within the 3 s run; 50 ms samples give ~60 points per run.
 */
export const BACKPRESSURE_DEFAULTS = {
  producerRate: 1_000,
  messageSize: 16 * 1024,
  consumerWorkMs: 5,
  durationMs: 3_000,
  /** After the producer stops: time for the consumer to work through what was queued. */
  drainMs: 1_500,
  sampleMs: 50,
  highWaterMark: 64 * 1024,
  maxQueuedBytes: 256 * 1024,
};

export interface BackpressureOptions extends Partial<typeof BACKPRESSURE_DEFAULTS> {
  transports?: readonly BackpressureTransport[];
  policies?: readonly SlowConsumerPolicy[];
  /** Stops the run: the current producer and drain stop at once, its processes end, and runBackpressure rejects with the signal's reason. */
  signal?: AbortSignal;
  onSample?: (run: { transport: BackpressureTransport; policy: SlowConsumerPolicy }, sample: BackpressureSample) => void;
  onProgress?: (event: { type: 'run-start' | 'run-done'; transport: BackpressureTransport; policy: SlowConsumerPolicy; index: number; of: number }) => void;
}

/** One point of a run's timeline. */
export interface BackpressureSample {
  /** ms since the producer started. */
  t: number;
  /** The consumer's server-side connection: queued bytes/messages (its bounded queue and the socket/stream buffer behind it). */
  queuedBytes: number;
  queuedMessages: number;
  /** Messages dropped by the policy so far (drop-oldest / drop-newest; disconnect's discarded backlog). */
  dropped: number;
  /**
   * Routed publishes the server neither queued for the consumer nor counted as dropped: under 'wait'
   * the deliveries its connection refused; under 'disconnect' those routed after it was cut off.
   */
  notQueued: number;
  /** Deliveries the router counted as refused by the consumer's full queue ('wait'). */
  refused: number;
  published: number;
  received: number;
  /** Delivery latency of what the consumer received since the previous sample (ms), null if nothing. */
  latencyP50Ms: number | null;
  latencyMaxMs: number | null;
  /** Server process: JS heap + external, and resident set. */
  serverHeapBytes: number;
  serverRssBytes: number;
  connected: boolean;
}

export interface BackpressureRun {
  transport: BackpressureTransport;
  policy: SlowConsumerPolicy;
  error?: string;
  published: number;
  received: number;
  /** Sequence numbers the consumer skipped (dropped or not queued for it), as far as it got. */
  missing: number;
  dropped: number;
  notQueued: number;
  maxQueuedBytes: number;
  maxQueuedMessages: number;
  /** ms from the start until the server's queue first exceeded the high-water mark, null if never. */
  overHighWaterAtMs: number | null;
  peakServerHeapBytes: number;
  /** How the server closed the consumer's connection, and what the consumer saw. */
  serverClose: CloseInfo | null;
  consumerClose: CloseInfo | null;
  latency: LatencySummary;
  timeline: BackpressureSample[];
}

export interface BackpressureResult {
  experiment: 'backpressure';
  startedAt: string;
  settings: typeof BACKPRESSURE_DEFAULTS & { transports: readonly BackpressureTransport[]; policies: readonly SlowConsumerPolicy[]; producerTransport: 'websocket' };
  runs: BackpressureRun[];
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const STARTUP_MS = 30_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A forked child with IPC: `request` sends and resolves with the next message of `type`. */
function forkTs(script: string, arg: unknown): ChildProcess {
  return fork(path.join(HERE, script), [JSON.stringify(arg)], { cwd: ROOT, execArgv: ['--import', 'tsx'], stdio: ['pipe', 'pipe', 'inherit', 'ipc'] });
}

function nextMessage<T extends { type: string }>(child: ChildProcess, type: T['type'], timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`no '${type}' from the child within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (message: T) => {
      if (message.type === type) done(undefined, message);
    };
    const onExit = () => done(new Error(`the child exited before '${type}'`));
    const done = (error: Error | undefined, message?: T) => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(message!);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

async function oneRun(
  server: { child: ChildProcess; ready: ServerReady },
  transport: BackpressureTransport,
  policy: SlowConsumerPolicy,
  settings: typeof BACKPRESSURE_DEFAULTS,
  onSample: ((sample: BackpressureSample) => void) | undefined,
  signal: AbortSignal | undefined,
): Promise<BackpressureRun> {
  const topic = `bp-${transport}-${policy}`;
  const consumerOptions: ConsumerOptions = { url: server.ready.url, transport, topic, workMs: settings.consumerWorkMs, sampleMs: settings.sampleMs };
  const consumer = forkTs('bp-consumer.ts', consumerOptions);
  const producer = createClient({ url: server.ready.url, transports: 'websocket', reconnect: false });
  const timeline: BackpressureSample[] = [];
  let consumerClose: CloseInfo | null = null;
  let received = 0;
  let missing = 0;
  let window: number[] = [];
  const latencies: number[] = [];
  consumer.on('message', (message: ConsumerMessage) => {
    if (message.type === 'progress') {
      received = message.received;
      missing = message.missing;
      window.push(...message.latencies);
      latencies.push(...message.latencies);
    } else if (message.type === 'closed') consumerClose = { code: message.code, reason: message.reason, wasClean: message.wasClean };
  });
  try {
    const { id } = await nextMessage<Extract<ConsumerMessage, { type: 'ready' }>>(consumer, 'ready', STARTUP_MS);
    await producer.connect();
    const sampleServer = async (): Promise<ServerSample> => {
      const reply = nextMessage<{ type: 'sample'; sample: ServerSample }>(server.child, 'sample', 5_000);
      server.child.send({ type: 'sample', clientId: id });
      return (await reply).sample;
    };
    const baseline = await sampleServer();
    let published = 0;
    const started = performance.now();
    const take = (sample: ServerSample): BackpressureSample => {
      // Routed publishes that became neither a queued delivery nor a counted drop.
      const routed = sample.routed - baseline.routed;
      const queued = sample.deliveries - baseline.deliveries;
      const point: BackpressureSample = {
        t: Math.round(performance.now() - started),
        queuedBytes: sample.queuedBytes,
        queuedMessages: sample.queuedMessages,
        dropped: sample.dropped,
        notQueued: Math.max(0, routed - queued - (policy === 'drop-newest' ? sample.dropped : 0)),
        refused: sample.refused - baseline.refused,
        published,
        received,
        latencyP50Ms: window.length ? round(percentile(window, 50)) : null,
        latencyMaxMs: window.length ? round(Math.max(...window)) : null,
        serverHeapBytes: sample.heapBytes,
        serverRssBytes: sample.rssBytes,
        connected: sample.connected,
      };
      window = [];
      timeline.push(point);
      onSample?.(point);
      return point;
    };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        take(await sampleServer());
        await sleep(settings.sampleMs);
      }
    })();

    // Open loop: the producer keeps its schedule whatever the consumer does (10 ms ticks).
    const payload = new Uint8Array(Math.max(12, settings.messageSize));
    const view = new DataView(payload.buffer);
    const total = Math.floor((settings.producerRate * settings.durationMs) / 1000);
    while (published < total && !signal?.aborted) {
      const due = Math.min(total, Math.floor(((performance.now() - started) * settings.producerRate) / 1000));
      for (; published < due; published++) {
        view.setFloat64(0, performance.timeOrigin + started + (published * 1000) / settings.producerRate);
        view.setUint32(8, published);
        // publish copies nothing: the envelope is encoded now, so the buffer can be reused.
        void producer.publish(topic, payload).catch(() => undefined);
      }
      await sleep(10);
    }
    // Let the consumer work through what was queued for it (or be cut off), then stop sampling.
    const drainUntil = performance.now() + settings.drainMs;
    const outstanding = () => published - received - missing - (timeline.at(-1)?.notQueued ?? 0);
    while (performance.now() < drainUntil && outstanding() > 0 && consumerClose === null && !signal?.aborted) await sleep(settings.sampleMs);
    sampling = false;
    await sampler;
    const lastServer = await sampleServer();
    const last = take(lastServer);
    return {
      transport,
      policy,
      published,
      received,
      missing,
      dropped: last.dropped,
      notQueued: last.notQueued,
      maxQueuedBytes: Math.max(...timeline.map((p) => p.queuedBytes)),
      maxQueuedMessages: Math.max(...timeline.map((p) => p.queuedMessages)),
      overHighWaterAtMs: timeline.find((p) => p.queuedBytes >= settings.highWaterMark)?.t ?? null,
      peakServerHeapBytes: Math.max(...timeline.map((p) => p.serverHeapBytes)),
      serverClose: lastServer.close,
      consumerClose,
      latency: summarizeMs(latencies),
      timeline,
    };
  } catch (error) {
    return {
      transport,
      policy,
      error: (error as Error).message,
      published: 0,
      received,
      missing: 0,
      dropped: 0,
      notQueued: 0,
      maxQueuedBytes: 0,
      maxQueuedMessages: 0,
      overHighWaterAtMs: null,
      peakServerHeapBytes: 0,
      serverClose: null,
      consumerClose,
      latency: summarizeMs([]),
      timeline,
    };
  } finally {
    producer.close();
    // A consumer still busy with its backlog would not notice the IPC close for a while.
    await stopChild(consumer, 200);
  }
}

/** Runs every policy × transport pair in turn: one server per policy, a fresh consumer per run. */
export async function runBackpressure(options: BackpressureOptions = {}): Promise<BackpressureResult> {
  const given = Object.fromEntries(Object.entries(options).filter(([key, value]) => value !== undefined && key in BACKPRESSURE_DEFAULTS));
  const settings = { ...BACKPRESSURE_DEFAULTS, ...given } as typeof BACKPRESSURE_DEFAULTS;
  const transports = options.transports ?? BACKPRESSURE_TRANSPORTS;
  const policies = options.policies ?? POLICIES;
  const startedAt = new Date().toISOString();
  const runs: BackpressureRun[] = [];
  const of = transports.length * policies.length;
  for (const policy of policies) {
    options.signal?.throwIfAborted();
    const serverOptions: ServerProcessOptions = {
      host: '127.0.0.1',
      transports: [...new Set<TransportName>(['websocket', ...transports])],
      backpressure: { policy, highWaterMark: settings.highWaterMark, maxQueuedBytes: settings.maxQueuedBytes },
    };
    const child = forkTs('server-process.ts', serverOptions);
    try {
      const ready = await new LineReader(child).json<ServerReady>(STARTUP_MS, 'the server to listen');
      for (const transport of transports) {
        options.signal?.throwIfAborted();
        const index = runs.length;
        options.onProgress?.({ type: 'run-start', transport, policy, index, of });
        runs.push(await oneRun({ child, ready }, transport, policy, settings, options.onSample ? (sample) => options.onSample!({ transport, policy }, sample) : undefined, options.signal));
        options.onProgress?.({ type: 'run-done', transport, policy, index, of });
      }
    } finally {
      await stopChild(child);
    }
  }
  options.signal?.throwIfAborted();
  return { experiment: 'backpressure', startedAt, settings: { ...settings, transports, policies, producerTransport: 'websocket' }, runs };
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
