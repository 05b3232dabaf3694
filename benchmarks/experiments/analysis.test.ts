/** The head-of-line analysis on synthetic series whose answers are known by construction. */
import { describe, expect, it } from 'vitest';
import { afterWarmup, analyzeFlows, chanceShared, findStalls, maxArrivalGap, percentile, sharedStalls, stallsAfterLoss, stallThreshold, type FlowSeries, type StallEpisode } from './analysis.ts';

/** A flow sending every 20 ms from `offset`, each message arriving after `latency(i)` ms (null: lost). */
function flow(count: number, offset: number, latency: (i: number) => number | null): FlowSeries {
  const sentAt = Array.from({ length: count }, (_, i) => offset + i * 20);
  return { sentAt, receivedAt: sentAt.map((t, i) => (latency(i) === null ? null : t + latency(i)!)) };
}

/** One ordered lane: a loss at `lossAt` holds every message sent before `repairAt` until then. */
function headOfLine(flows: number, lossAt: number, repairAt: number): FlowSeries[] {
  return Array.from({ length: flows }, (_, f) => {
    const series = flow(100, f * 5, () => 1);
    series.receivedAt = series.sentAt.map((t) => (t >= lossAt && t < repairAt ? repairAt : t + 1));
    return series;
  });
}

describe('head-of-line analysis', () => {
  it('drops the warm-up by send time', () => {
    const series = flow(10, 0, () => 1);
    expect(afterWarmup(series, 50).sentAt).toEqual([60, 80, 100, 120, 140, 160, 180]);
    expect(afterWarmup(series, 1_000).sentAt).toEqual([]);
  });

  it('takes nearest-rank percentiles and a threshold of median + extra unless fixed', () => {
    expect(percentile([5, 1, 3, 2, 4], 50)).toBe(3);
    expect(percentile([5, 1, 3, 2, 4], 100)).toBe(5);
    expect(percentile([], 50)).toBeNaN();
    const flows = [flow(10, 0, () => 2), flow(10, 5, () => 4)];
    expect(stallThreshold(flows, { extraMs: 10 })).toBe(12);
    expect(stallThreshold(flows, { fixedMs: 7, extraMs: 10 })).toBe(7);
  });

  it('finds one episode per run of late messages, ignoring lost ones, with its overdue interval', () => {
    const late = new Map([
      [3, 40],
      [4, 30],
      [5, null],
      [6, 25],
      [20, 50],
    ]);
    const series = flow(30, 0, (i) => (late.has(i) ? late.get(i)! : 1));
    const episodes = findStalls(series, 2, 10);
    expect(episodes).toEqual([
      { flow: 2, start: 70, end: 145, messages: 3, worstMs: 40 },
      { flow: 2, start: 410, end: 450, messages: 1, worstMs: 50 },
    ]);
  });

  it('measures the longest silence between arrivals', () => {
    expect(maxArrivalGap(flow(5, 0, (i) => (i === 2 ? 50 : 1)))).toBe(40);
    expect(maxArrivalGap({ sentAt: [0], receivedAt: [null] })).toBe(0);
  });

  it('calls stalls shared when they overlap another flow, and compares with chance', () => {
    const episodes: StallEpisode[] = [
      { flow: 0, start: 100, end: 130, messages: 2, worstMs: 30 },
      { flow: 1, start: 120, end: 140, messages: 1, worstMs: 20 },
      { flow: 2, start: 500, end: 510, messages: 1, worstMs: 15 },
    ];
    const result = sharedStalls(episodes, { start: 0, end: 1_000 });
    expect(result).toMatchObject({ episodes: 3, shared: 2, sharedFraction: 2 / 3 });
    expect(result.chanceFraction).toBeLessThan(2 / 3);
    expect(sharedStalls([], { start: 0, end: 1_000 })).toEqual({ episodes: 0, shared: 0, sharedFraction: null, chanceFraction: null });
  });

  it('chance overlap is zero for short sparse stalls and one when every flow is always stalled', () => {
    const sparse: StallEpisode[] = [0, 1, 2, 3].map((f) => ({ flow: f, start: 100, end: 101, messages: 1, worstMs: 11 }));
    expect(chanceShared(sparse, { start: 0, end: 10_000 })).toBe(0);
    const always: StallEpisode[] = [0, 1].map((f) => ({ flow: f, start: 0, end: 10_000, messages: 500, worstMs: 99 }));
    expect(chanceShared(always, { start: 0, end: 10_000 })).toBe(1);
  });

  it('one ordered lane: a single loss stalls all four flows together (all shared, well above chance)', () => {
    const losses = [1_000, 1_400];
    const flows = headOfLine(4, losses[0]!, losses[0]! + 30);
    // A second loss at 1400: every flow is held again.
    for (const series of flows) series.receivedAt = series.receivedAt.map((r, i) => (series.sentAt[i]! >= 1_400 && series.sentAt[i]! < 1_430 ? 1_430 : r));
    const result = analyzeFlows(flows, { warmupMs: 100, stallExtraMs: 10 });
    expect(result.thresholdMs).toBe(11);
    expect(result.flows.map((f) => f.stalls)).toEqual([2, 2, 2, 2]);
    expect(result.stalls).toMatchObject({ episodes: 8, shared: 8, sharedFraction: 1 });
    expect(result.stalls.chanceFraction!).toBeLessThan(0.5);
    expect(result.lossRate).toBe(0);
    expect(result.flows[0]!.latency.count).toBe(95);
    expect(result.flows[0]!.latency.max).toBeGreaterThan(15_000);
  });

  it('independent channels: each loss stalls only its own flow (nothing shared)', () => {
    const flows = [0, 1, 2, 3].map((f) => flow(100, f * 5, (i) => (i === 10 + f * 20 ? 35 : 1)));
    const result = analyzeFlows(flows, { warmupMs: 0, stallExtraMs: 10 });
    expect(result.flows.map((f) => f.stalls)).toEqual([1, 1, 1, 1]);
    expect(result.stalls).toMatchObject({ episodes: 4, shared: 0, sharedFraction: 0 });
  });

  it('datagrams: losses are counted, never stalls', () => {
    const flows = [0, 1].map((f) => flow(100, f * 10, (i) => (i % 25 === 3 ? null : 1)));
    const result = analyzeFlows(flows, { warmupMs: 0, stallExtraMs: 10 });
    expect(result.flows.map((f) => [f.sent, f.delivered, f.lost, f.stalls])).toEqual([
      [100, 96, 4, 0],
      [100, 96, 4, 0],
    ]);
    expect(result.lossRate).toBe(0.04);
    expect(result.flows[1]!.series!.latencyMs.slice(0, 5)).toEqual([1, 1, 1, null, 1]);
    expect(result.flows[1]!.series!.sentAt.slice(0, 2)).toEqual([10, 30]);
  });

  it('counts the flows each drop held back: all on one ordered lane, one on channels, none on datagrams', () => {
    const span = { start: 0, end: 2_000 };
    // One ordered lane: the drop at 500 ms holds every flow's messages sent 500–560 ms until 600 ms.
    const lane = headOfLine(4, 500, 600);
    expect(stallsAfterLoss(lane, [500], 20, 20, span)).toMatchObject({ drops: 1, stalling: 1, flowsHeld: 4 });
    // Channels: the same drop holds only flow 2 (its own stream).
    const channels = Array.from({ length: 4 }, (_, f) => (f === 2 ? headOfLine(1, 500, 600)[0]! : flow(100, f * 5, () => 1)));
    const held = stallsAfterLoss(channels, [500], 20, 20, span);
    expect(held).toMatchObject({ drops: 1, stalling: 1, flowsHeld: 1 });
    // By chance (evenly spread instants) the one stall is rarely hit.
    expect(held.chanceStalling).toBeLessThan(0.1);
    // Datagrams: the message is lost, nothing is late; drops outside the span are not counted.
    const datagrams = Array.from({ length: 4 }, (_, f) => flow(100, f * 5, (i) => (f === 2 && i === 25 ? null : 1)));
    expect(stallsAfterLoss(datagrams, [500, 5_000], 20, 20, span)).toEqual({ drops: 1, stalling: 0, flowsHeld: null, chanceStalling: 0 });
  });
});
