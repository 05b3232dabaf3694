import { describe, expect, it } from 'vitest';
import { cdf, decimate, formatMs, histogram, logBinEdges, percentile, rateSeries, readStamp, stampPayload, summarizeLatencies, wireBytesPerHop } from './stats.ts';

describe('lab stats', () => {
  it('stamps payloads and reads the stamp back; short or non-binary data has none', () => {
    const payload = stampPayload(64, 1_700_000_000_123.25, 42, 3);
    expect(payload.length).toBe(64);
    expect(readStamp(payload)).toEqual({ sentAtMs: 1_700_000_000_123.25, seq: 42, flow: 3 });
    expect(stampPayload(4, 1, 1).length).toBe(16);
    expect(readStamp(new Uint8Array(8))).toBeNull();
    expect(readStamp('text')).toBeNull();
    // A view into a larger buffer (as transports deliver) reads from its own offset.
    const outer = new Uint8Array(80);
    outer.set(payload, 16);
    expect(readStamp(outer.subarray(16))?.seq).toBe(42);
  });

  it('summarizes with nearest-rank percentiles', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1).reverse();
    expect(summarizeLatencies(values)).toEqual({ count: 100, p50: 50, p90: 90, p99: 99, max: 100, mean: 50.5 });
    expect(percentile([], 50)).toBeNaN();
    expect(summarizeLatencies([]).count).toBe(0);
  });

  it('bins values into log-spaced edges', () => {
    const edges = logBinEdges(0.1, 100, 1);
    expect(edges.map((e) => Number(e.toPrecision(3)))).toEqual([0.1, 1, 10, 100]);
    expect(histogram([0.1, 0.5, 1, 5, 50, 100, 1000], edges)).toEqual([2, 2, 2]);
  });

  it('builds a CDF that ends at 100 % and a rate series per bucket', () => {
    const points = cdf([3, 1, 2, 4]);
    expect(points).toEqual([
      { x: 1, y: 25 },
      { x: 2, y: 50 },
      { x: 3, y: 75 },
      { x: 4, y: 100 },
    ]);
    expect(cdf(Array.from({ length: 1000 }, (_, i) => i), 10).at(-1)).toEqual({ x: 999, y: 100 });
    expect(rateSeries([0.01, 0.2, 0.3, 0.6, 5], 250, 1)).toEqual([
      { x: 0.25, y: 8 },
      { x: 0.5, y: 4 },
      { x: 0.75, y: 4 },
      { x: 1, y: 0 },
    ]);
    // A run of 0.6 s ends a quarter-second bucket early: its 1 delivery in 0.1 s is 10/s, not 4/s.
    expect(rateSeries([0.01, 0.2, 0.3, 0.55], 250, 0.6)).toEqual([
      { x: 0.25, y: 8 },
      { x: 0.5, y: 4 },
      { x: 0.6, y: 10 },
    ]);
  });

  it('decimates evenly and formats latencies', () => {
    expect(decimate([1, 2, 3, 4, 5, 6], 3)).toEqual([1, 3, 5]);
    expect(decimate([1, 2], 3)).toEqual([1, 2]);
    expect([formatMs(0.0423), formatMs(3.456), formatMs(104.2), formatMs(2500), formatMs(Number.NaN)]).toEqual(['42 µs', '3.46 ms', '104.2 ms', '2.50 s', '—']);
  });

  it('computes wire bytes per hop across connections, null where a transport does not count', () => {
    const before = [
      { wireBytesIn: 100, wireBytesOut: 50 },
      { wireBytesIn: 0, wireBytesOut: 0 },
    ];
    const after = [
      { wireBytesIn: 400, wireBytesOut: 250 },
      { wireBytesIn: 100, wireBytesOut: 150 },
    ];
    expect(wireBytesPerHop(before, after, 10)).toBe(75);
    expect(wireBytesPerHop(before, after, 0)).toBeNull();
    expect(wireBytesPerHop([{ wireBytesIn: null, wireBytesOut: null }], [{ wireBytesIn: null, wireBytesOut: null }], 5)).toBeNull();
  });
});
