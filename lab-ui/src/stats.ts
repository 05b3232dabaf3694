/**
 * Pure computations of the lab (no DOM, no sockets, no timers): message stamps, percentile
 * summaries of latency samples, log-spaced histograms, CDFs, rate series, wire bytes per message.
 * The browser has no HdrHistogram (benchmarks/workloads.ts uses Node's), so samples are kept
 * whole: lab runs are seconds long.
 */

/** Bytes every lab payload starts with: absolute send time (ms), sequence number, flow. */
export const STAMP_BYTES = 16;

/** A payload of `size` bytes (at least the stamp) carrying when it was meant to be sent. */
export function stampPayload(size: number, sentAtMs: number, seq: number, flow = 0): Uint8Array {
  const bytes = new Uint8Array(Math.max(size, STAMP_BYTES));
  const view = new DataView(bytes.buffer);
  view.setFloat64(0, sentAtMs);
  view.setUint32(8, seq);
  view.setUint32(12, flow);
  return bytes;
}

export function readStamp(data: unknown): { sentAtMs: number; seq: number; flow: number } | null {
  if (!(data instanceof Uint8Array) || data.length < STAMP_BYTES) return null;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return { sentAtMs: view.getFloat64(0), seq: view.getUint32(8), flow: view.getUint32(12) };
}

/** Wall-clock ms with sub-ms precision, comparable across the page and its workers. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export interface LatencyStats {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile of ascending `sorted` values (`p` in 0–100). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarizeLatencies(values: readonly number[]): LatencyStats {
  const sorted = [...values].sort((a, b) => a - b);
  const mean = sorted.reduce((sum, v) => sum + v, 0) / (sorted.length || 1);
  return {
    count: sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
    mean: sorted.length ? mean : Number.NaN,
  };
}

/** Log-spaced bin edges covering [min, max] with `perDecade` bins per factor of ten. */
export function logBinEdges(min: number, max: number, perDecade = 5): number[] {
  const low = Math.floor(Math.log10(Math.max(min, 1e-3)) * perDecade);
  const high = Math.ceil(Math.log10(Math.max(max, min, 1e-3)) * perDecade) + (max === min ? 1 : 0);
  const edges: number[] = [];
  for (let i = low; i <= Math.max(high, low + 1); i++) edges.push(10 ** (i / perDecade));
  return edges;
}

/** Counts of `values` in each [edges[i], edges[i+1]) bin (the last bin includes its upper edge). */
export function histogram(values: readonly number[], edges: readonly number[]): number[] {
  const counts = new Array<number>(Math.max(0, edges.length - 1)).fill(0);
  for (const value of values) {
    let lo = 0;
    let hi = edges.length - 1;
    if (value < edges[0]! || value > edges[hi]!) continue;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (value >= edges[mid]!) lo = mid;
      else hi = mid;
    }
    counts[lo]!++;
  }
  return counts;
}

/** Short label of a latency in ms (µs below 1 ms). */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '—';
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** CDF points {x: latency, y: percentile}, at most `maxPoints` of them, always with the max. */
export function cdf(values: readonly number[], maxPoints = 200): { x: number; y: number }[] {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return [];
  const step = Math.max(1, Math.floor(sorted.length / maxPoints));
  const points: { x: number; y: number }[] = [];
  for (let i = 0; i < sorted.length; i += step) points.push({ x: sorted[i]!, y: ((i + 1) / sorted.length) * 100 });
  const last = sorted.length - 1;
  if (points[points.length - 1]!.y !== 100) points.push({ x: sorted[last]!, y: 100 });
  return points;
}

/** Events per second in consecutive buckets of `bucketMs`, from times in seconds since the start. */
export function rateSeries(timesS: readonly number[], bucketMs: number, untilS: number): { x: number; y: number }[] {
  const untilMs = untilS * 1000;
  const buckets = Math.max(1, Math.ceil(untilMs / bucketMs));
  const counts = new Array<number>(buckets).fill(0);
  for (const t of timesS) {
    const index = Math.floor((t * 1000) / bucketMs);
    if (index >= 0 && index < buckets) counts[index]!++;
  }
  // The last bucket may be cut short by the end of the run: its rate is over the time it covers,
  // not over a whole bucket (which would draw a collapse that never happened).
  return counts.map((count, i) => {
    const end = Math.min((i + 1) * bucketMs, untilMs);
    const span = end - i * bucketMs;
    return { x: end / 1000, y: span > 0 ? (count * 1000) / span : 0 };
  });
}

/** Keeps at most `max` items, evenly spaced (charts stay responsive on long runs). */
export function decimate<T>(items: readonly T[], max: number): T[] {
  if (items.length <= max) return [...items];
  const step = items.length / max;
  return Array.from({ length: max }, (_, i) => items[Math.floor(i * step)]!);
}

/** Counters from a connection's server-side stats() that wire-byte figures need. */
export interface WireCounters {
  wireBytesIn: number | null;
  wireBytesOut: number | null;
}

/**
 * Wire bytes per message from before/after snapshots of one or more connections' counters:
 * everything that crossed (frames, HTTP heads, empty polls, QUIC/TLS, heartbeats) divided by the
 * message hops made. Null when a transport does not count wire bytes or nothing was sent.
 */
export function wireBytesPerHop(before: readonly WireCounters[], after: readonly WireCounters[], hops: number): number | null {
  if (hops <= 0 || before.length !== after.length) return null;
  let total = 0;
  for (let i = 0; i < before.length; i++) {
    const b = before[i]!;
    const a = after[i]!;
    if (a.wireBytesIn === null || a.wireBytesOut === null || b.wireBytesIn === null || b.wireBytesOut === null) return null;
    total += a.wireBytesIn - b.wireBytesIn + (a.wireBytesOut - b.wireBytesOut);
  }
  return Math.round((total / hops) * 10) / 10;
}
