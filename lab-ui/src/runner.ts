/**
 * The Compare workloads, run from the browser against the server on real connections:
 * - echo: one client sends to itself through the server (send to its own id);
 * - fan-out: one publisher, N subscribers of one topic;
 * - pub/sub: T topics, each subscriber follows a third of them; misrouted deliveries are counted.
 * Open loop at a fixed rate: sends are never awaited, so a stalled transport cannot slow the
 * schedule down (no coordinated omission); each message carries the time it was handed to the
 * client, so the sender loop's own timer jitter is not charged to the transport.
 */
import type { Delivery, SwitchyardClient } from '../../transports/browser-client.ts';
import { connectClient, serverView, type Variant } from './lab.ts';
import { nowMs, readStamp, stampPayload, wireBytesPerHop, type WireCounters } from './stats.ts';
import { sleep } from './ui.ts';

export type Workload = 'echo' | 'fanout' | 'pubsub';

export interface RunConfig {
  workload: Workload;
  size: number;
  /** Messages per second the publisher sends. */
  rate: number;
  durationMs: number;
  /** Subscribers for fan-out and pub/sub. */
  subscribers: number;
  /** Topics for pub/sub. */
  topics: number;
}

export interface Sample {
  /** Seconds since the run started, at the intended send time. */
  t: number;
  latencyMs: number;
  flow: number;
}

export interface RunResult {
  variant: string;
  sent: number;
  expected: number;
  delivered: number;
  lost: number;
  /** Sends the transport refused (e.g. a datagram over its size): not in `expected`. */
  refused: number;
  misrouted: number;
  samples: Sample[];
  /** Arrival times (s since start) for throughput. */
  arrivals: number[];
  /** Server-side wire bytes (both directions) per message hop, null where not counted. */
  wireBytesPerHop: number | null;
  durationMs: number;
  /** Subscribers the run used, when fewer than asked for, and why (a limit of the browser, never message loss). */
  subscribersLimited?: { asked: number; ran: number; why: string };
  error?: string;
}

/** Which topics subscriber `s` follows in pub/sub: every third, shifted per subscriber. */
export function followedTopics(subscriber: number, topics: number): number[] {
  return Array.from({ length: topics }, (_, i) => i).filter((i) => (i + subscriber) % 3 === 0);
}

/**
 * Calls `send(seq)` on a fixed-rate schedule for `durationMs`: each tick sends whatever is due by
 * then. Sends are not awaited. Resolves with how many were sent.
 */
export async function openLoop(rate: number, durationMs: number, signal: AbortSignal, send: (seq: number) => void): Promise<number> {
  const start = nowMs();
  const interval = 1000 / rate;
  let sent = 0;
  while (!signal.aborted) {
    const elapsed = nowMs() - start;
    if (elapsed >= durationMs) break;
    const due = Math.floor(elapsed / interval) + 1;
    while (sent < due) send(sent++);
    await sleep(Math.max(1, interval - (elapsed % interval)));
  }
  return sent;
}

/**
 * Chromium opens at most 6 HTTP/1.1 connections per host, and every long-polling or polling client
 * of this page holds one (its pending GET) and needs another now and then (a POST). More than 5
 * clients on one page would queue behind each other for connections: deliveries wait for seconds
 * and look lost. A fan-out on these transports runs with at most 4 subscribers (plus the publisher)
 * and says so, rather than report the browser's queue as loss.
 */
export const HTTP1_MAX_SUBSCRIBERS = 4;

export async function runVariant(v: Variant, config: RunConfig, onSample: (sample: Sample, arrivalS: number) => void, signal: AbortSignal): Promise<RunResult> {
  const result: RunResult = { variant: v.key, sent: 0, expected: 0, delivered: 0, lost: 0, refused: 0, misrouted: 0, samples: [], arrivals: [], wireBytesPerHop: null, durationMs: config.durationMs };
  const clients: SwitchyardClient[] = [];
  try {
    const publisher = await connectClient(v.transport);
    clients.push(publisher);
    const receivers: SwitchyardClient[] = config.workload === 'echo' ? [publisher] : [];
    const runTopic = `lab-${Math.random().toString(36).slice(2, 8)}`;
    /** How many receivers each flow (topic) reaches. */
    const reach = new Map<number, number>();
    if (config.workload === 'echo') reach.set(0, 1);
    else {
      const http1 = v.transport === 'long-polling' || v.transport === 'polling';
      const count = http1 ? Math.min(config.subscribers, HTTP1_MAX_SUBSCRIBERS) : config.subscribers;
      if (count < config.subscribers) result.subscribersLimited = { asked: config.subscribers, ran: count, why: `Chromium opens at most 6 HTTP/1.1 connections per host and each ${v.transport} client holds one: ${count} subscribers + the publisher leave one free for sends` };
      const subscribers = await Promise.all(Array.from({ length: Math.max(1, count) }, () => connectClient(v.transport)));
      clients.push(...subscribers);
      receivers.push(...subscribers);
      await Promise.all(
        subscribers.map((client, s) => {
          const topics = config.workload === 'fanout' ? [0] : followedTopics(s, config.topics);
          for (const topic of topics) reach.set(topic, (reach.get(topic) ?? 0) + 1);
          return Promise.all(topics.map((topic) => client.subscribe(`${runTopic}.${topic}`)));
        }),
      );
    }
    const start = nowMs();
    receivers.forEach((client, s) => {
      const followed = config.workload === 'pubsub' ? new Set(followedTopics(s, config.topics).map((t) => `${runTopic}.${t}`)) : undefined;
      client.on('message', (delivery: Delivery) => {
        const stamp = readStamp(delivery.data);
        if (!stamp) return;
        const arrived = nowMs();
        if (followed && !followed.has(delivery.to ?? '')) result.misrouted++;
        result.delivered++;
        const sample = { t: (stamp.sentAtMs - start) / 1000, latencyMs: arrived - stamp.sentAtMs, flow: stamp.flow };
        result.samples.push(sample);
        const arrival = (arrived - start) / 1000;
        result.arrivals.push(arrival);
        onSample(sample, arrival);
      });
    });
    const before = await Promise.all(clients.map((c) => serverView(c.id!)));

    const flows = config.workload === 'pubsub' ? config.topics : config.workload === 'echo' ? 4 : 1;
    result.sent = await openLoop(config.rate, config.durationMs, signal, (seq) => {
      const flow = seq % flows;
      const payload = stampPayload(config.size, nowMs(), seq, flow);
      const lane = v.lane(seq, flow);
      const topicFlow = config.workload === 'fanout' ? 0 : flow;
      const count = config.workload === 'echo' ? 1 : (reach.get(topicFlow) ?? 0);
      result.expected += count;
      const sending = config.workload === 'echo' ? publisher.send(publisher.id!, payload, { lane }) : publisher.publish(`${runTopic}.${topicFlow}`, payload, { lane });
      // A refused send (e.g. a datagram over its size) is not expected to arrive.
      sending.catch(() => {
        result.refused++;
        result.expected -= count;
      });
    });
    // Stragglers: until everything arrived, or long enough for a poll cycle and a retry.
    const deadline = nowMs() + 1_500;
    while (result.delivered < result.expected && nowMs() < deadline && !signal.aborted) await sleep(20);
    const after = await Promise.all(clients.map((c) => serverView(c.id!)));
    const counters = (views: typeof before) => (views.every((view) => view) ? views.map((view) => view!.stats as WireCounters) : null);
    const [b, a] = [counters(before), counters(after)];
    // Hops: each message goes publisher → server once, then server → each receiver.
    if (b && a) result.wireBytesPerHop = wireBytesPerHop(b, a, result.sent + result.delivered);
    result.lost = Math.max(0, result.expected - result.delivered);
  } catch (error) {
    result.error = (error as Error).message;
  } finally {
    for (const client of clients) client.close();
  }
  return result;
}
