/**
 * Pure analysis of the head-of-line experiment's series: per-flow latency, losses, stall episodes
 * and whether stalls were shared between flows. No sockets, no timers: the runner hands over the
 * series the client recorded, the tests hand over synthetic ones.
 */
import { createHistogram } from 'node:perf_hooks';
import { summarize, type LatencySummary } from '../workloads.ts';

/**
 * What one flow recorded, index = sequence number: the send time and the arrival time
 * (ms, on the one clock of the client process that both sent and received), null if it never came.
 */
export interface FlowSeries {
  sentAt: number[];
  receivedAt: (number | null)[];
}

/** A run of consecutive messages of one flow that each arrived more than the threshold late. */
export interface StallEpisode {
  flow: number;
  /** When the first message of the run became overdue (its send time + threshold), ms. */
  start: number;
  /** When the last message of the run arrived, ms. */
  end: number;
  messages: number;
  /** Worst latency in the run, ms. */
  worstMs: number;
}

export interface FlowAnalysis {
  flow: number;
  /** Messages sent after the warm-up. */
  sent: number;
  delivered: number;
  /** Never arrived (the unreliable lane's losses; should be 0 elsewhere). */
  lost: number;
  lossRate: number;
  /** Delivery latency (µs, like every LatencySummary of the benchmarks). */
  latency: LatencySummary;
  stalls: number;
  /** Time spent overdue, summed over this flow's episodes (ms). */
  stalledMs: number;
  /** Longest silence between two arrivals (ms): what a user of this flow sees as a freeze. */
  maxGapMs: number;
  /**
   * Every analysed message: send time and latency (ms, null: lost), for latency-over-time charts.
   * Always filled by analyzeFlows; optional so results written without it (fixtures) still type-check.
   */
  series?: { sentAt: number[]; latencyMs: (number | null)[] };
}

export interface SharedStalls {
  /** Stall episodes over all flows. */
  episodes: number;
  /** Episodes during which at least one other flow was also stalled. */
  shared: number;
  /** shared / episodes; null without episodes. */
  sharedFraction: number | null;
  /**
   * The shared fraction that independent stalls of the same number and lengths would give by
   * coincidence (each flow's episodes moved in time): a sharedFraction well above it means one
   * flow's loss held the others back. Null without episodes.
   */
  chanceFraction: number | null;
}

/**
 * What the path's packet drops did: on one ordered lane (TCP, one QUIC stream) a lost packet holds
 * back every flow until it is repaired; on channels only the flow whose data it carried; on
 * datagrams none (the message is just lost). Drop times come from the path itself, so stalls
 * with another cause (a CPU hiccup stalls every flow on any transport) mostly fall outside it.
 */
export interface LossStalls {
  /** Packets the path dropped, both directions, while analysed messages were sent. */
  drops: number;
  /** Drops that a stall of at least one flow followed. */
  stalling: number;
  /** Mean number of flows stalled after a stalling drop (null: none stalled). */
  flowsHeld: number | null;
  /**
   * The share of evenly spaced instants of the span that a stall followed, by the same rule: what
   * drops unrelated to the stalls would give. `stalling / drops` well above it: losses cause stalls.
   */
  chanceStalling: number;
}

/**
 * Which flows each drop held back: the flows with a message later than the threshold among those
 * sent from one way + 20 ms before the drop (a server → client packet carries a message sent that
 * much earlier) to one round trip after it (what waits behind the loss until it is repaired). On
 * one ordered lane that is every flow; on channels the flow whose data was lost; on datagrams none.
 */
export function stallsAfterLoss(all: readonly FlowSeries[], dropsMs: readonly number[], thresholdMs: number, oneWayMs: number, span: { start: number; end: number }): LossStalls {
  const late = all.map((series) => series.sentAt.flatMap((sentAt, i) => {
    const receivedAt = series.receivedAt[i];
    return receivedAt !== null && receivedAt !== undefined && receivedAt - sentAt > thresholdMs ? [sentAt] : [];
  }));
  const held = (at: number) => late.filter((sends) => sends.some((sentAt) => sentAt >= at - oneWayMs - 20 && sentAt <= at + 2 * oneWayMs + 10)).length;
  const inSpan = dropsMs.filter((drop) => drop >= span.start && drop <= span.end);
  let stalling = 0;
  let flowsHeld = 0;
  for (const drop of inSpan) {
    const flows = held(drop);
    if (flows === 0) continue;
    stalling++;
    flowsHeld += flows;
  }
  const INSTANTS = 200;
  let chance = 0;
  for (let i = 0; i < INSTANTS; i++) if (held(span.start + ((i + 0.5) / INSTANTS) * (span.end - span.start)) > 0) chance++;
  return { drops: inSpan.length, stalling, flowsHeld: stalling ? round(flowsHeld / stalling) : null, chanceStalling: round(chance / INSTANTS) };
}

/** Drops the warm-up: messages sent before `warmupMs` are not analysed. */
export function afterWarmup(series: FlowSeries, warmupMs: number): FlowSeries {
  const first = series.sentAt.findIndex((sentAt) => sentAt >= warmupMs);
  const from = first === -1 ? series.sentAt.length : first;
  return { sentAt: series.sentAt.slice(from), receivedAt: series.receivedAt.slice(from) };
}

/** Latencies (ms) of the delivered messages. */
export function latencies(series: FlowSeries): number[] {
  const out: number[] = [];
  series.receivedAt.forEach((receivedAt, i) => {
    if (receivedAt !== null && receivedAt !== undefined) out.push(receivedAt - series.sentAt[i]!);
  });
  return out;
}

/** The `p`-th percentile (nearest rank) of values; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/**
 * The stall threshold: a fixed value when given, else the median latency of every flow together
 * plus `extraMs`. Relative to the median because the base latency differs by transport (a
 * long-poll round trip is not a stall); one threshold for all flows so flows are compared alike.
 */
export function stallThreshold(all: readonly FlowSeries[], options: { fixedMs?: number | undefined; extraMs: number }): number {
  if (options.fixedMs !== undefined) return options.fixedMs;
  const median = percentile(all.flatMap(latencies), 50);
  return (Number.isNaN(median) ? 0 : median) + options.extraMs;
}

/** Stall episodes of one flow. Lost messages neither start nor end an episode: they never waited. */
export function findStalls(series: FlowSeries, flow: number, thresholdMs: number): StallEpisode[] {
  const episodes: StallEpisode[] = [];
  let current: StallEpisode | undefined;
  for (let i = 0; i < series.sentAt.length; i++) {
    const receivedAt = series.receivedAt[i];
    if (receivedAt === null || receivedAt === undefined) continue;
    const sentAt = series.sentAt[i]!;
    const latency = receivedAt - sentAt;
    if (latency <= thresholdMs) {
      current = undefined;
      continue;
    }
    if (!current) {
      current = { flow, start: sentAt + thresholdMs, end: receivedAt, messages: 0, worstMs: 0 };
      episodes.push(current);
    }
    current.start = Math.min(current.start, sentAt + thresholdMs);
    current.end = Math.max(current.end, receivedAt);
    current.messages++;
    current.worstMs = Math.max(current.worstMs, latency);
  }
  return episodes;
}

/**
 * How often a stall was shared: an episode counts as shared when another flow had an episode whose
 * overdue interval overlaps it. On one TCP connection a lost segment holds back every flow behind
 * it, so nearly all episodes are shared; on separate QUIC streams only the flow whose packet was
 * lost waits. (A CPU hiccup stalls every flow at once on any transport: the loss-0 run shows that
 * baseline.)
 */
export function sharedStalls(episodes: readonly StallEpisode[], span: { start: number; end: number }): SharedStalls {
  const shared = countShared(episodes);
  return {
    episodes: episodes.length,
    shared,
    sharedFraction: episodes.length ? shared / episodes.length : null,
    chanceFraction: episodes.length ? chanceShared(episodes, span) : null,
  };
}

const GOLDEN = (Math.sqrt(5) - 1) / 2;

function countShared(episodes: readonly StallEpisode[]): number {
  let shared = 0;
  for (const episode of episodes) {
    if (episodes.some((other) => other.flow !== episode.flow && other.start <= episode.end && episode.start <= other.end)) shared++;
  }
  return shared;
}

/**
 * Shared fraction by coincidence: flow f's episodes are moved by frac(f × k × φ) of the span
 * (φ the golden ratio, k = 1, 2, 3, wrapping around: distinct flows never land on the same shift),
 * which keeps each flow's stall count and lengths but breaks any causal link in time; the mean over
 * the three shifts.
 */
export function chanceShared(episodes: readonly StallEpisode[], span: { start: number; end: number }): number {
  const length = span.end - span.start;
  if (episodes.length === 0 || length <= 0) return 0;
  let sum = 0;
  for (let k = 1; k <= 3; k++) {
    const moved = episodes.map((episode) => {
      const shift = ((episode.flow * k * GOLDEN) % 1) * length;
      const start = span.start + ((((episode.start - span.start + shift) % length) + length) % length);
      return { ...episode, start, end: start + (episode.end - episode.start) };
    });
    sum += countShared(moved) / episodes.length;
  }
  return sum / 3;
}

/** Longest gap between consecutive arrivals (ms), in arrival order. */
export function maxArrivalGap(series: FlowSeries): number {
  const arrivals = series.receivedAt.filter((t): t is number => t !== null && t !== undefined).sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < arrivals.length; i++) gap = Math.max(gap, arrivals[i]! - arrivals[i - 1]!);
  return gap;
}

/** Latency summary of ms values, through the benchmarks' HdrHistogram summary (µs). */
export function summarizeMs(values: readonly number[]): LatencySummary {
  const histogram = createHistogram();
  for (const ms of values) histogram.record(Math.max(1, Math.round(ms * 1e6)));
  return summarize(histogram);
}

/** Everything per flow, plus the shared-stall figure, for one transport variant. */
export function analyzeFlows(
  raw: readonly FlowSeries[],
  options: { warmupMs: number; stallThresholdMs?: number | undefined; stallExtraMs: number; dropsMs?: readonly number[] | undefined; oneWayMs?: number },
): { thresholdMs: number; flows: FlowAnalysis[]; stalls: SharedStalls; lossRate: number; afterLoss: LossStalls | null } {
  const all = raw.map((series) => afterWarmup(series, options.warmupMs));
  const thresholdMs = stallThreshold(all, { fixedMs: options.stallThresholdMs, extraMs: options.stallExtraMs });
  const episodes: StallEpisode[] = [];
  const flows = all.map((series, flow): FlowAnalysis => {
    const values = latencies(series);
    const own = findStalls(series, flow, thresholdMs);
    episodes.push(...own);
    const sent = series.sentAt.length;
    return {
      flow,
      sent,
      delivered: values.length,
      lost: sent - values.length,
      lossRate: sent ? (sent - values.length) / sent : 0,
      latency: summarizeMs(values),
      stalls: own.length,
      stalledMs: round(own.reduce((sum, episode) => sum + (episode.end - episode.start), 0)),
      maxGapMs: round(maxArrivalGap(series)),
      series: {
        sentAt: series.sentAt.map(round),
        latencyMs: series.receivedAt.map((receivedAt, i) => (receivedAt === null || receivedAt === undefined ? null : round(receivedAt - series.sentAt[i]!))),
      },
    };
  });
  const sent = flows.reduce((sum, flow) => sum + flow.sent, 0);
  const lost = flows.reduce((sum, flow) => sum + flow.lost, 0);
  const span = { start: Infinity, end: -Infinity };
  for (const series of all) for (const sentAt of series.sentAt) {
    span.start = Math.min(span.start, sentAt);
    span.end = Math.max(span.end, sentAt);
  }
  return {
    thresholdMs: round(thresholdMs),
    flows,
    stalls: sharedStalls(episodes, span),
    lossRate: sent ? lost / sent : 0,
    afterLoss: options.dropsMs ? stallsAfterLoss(all, options.dropsMs, thresholdMs, options.oneWayMs ?? 0, span) : null,
  };
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
