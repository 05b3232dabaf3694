import { createHistogram } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { headline, renderHtml, summarizeRuns, textTables, type BenchReport } from './report.ts';
import { summarize } from './workloads.ts';

describe('benchmark results', () => {
  it('summarizes a histogram in microseconds with a monotone CDF', () => {
    const histogram = createHistogram();
    for (let i = 1; i <= 1000; i++) histogram.record(i * 1000); // 1 µs … 1000 µs
    const summary = summarize(histogram);
    expect(summary.count).toBe(1000);
    expect(summary.p50).toBeCloseTo(500, -1);
    expect(summary.p99).toBeCloseTo(990, -1);
    expect(summary.max).toBeCloseTo(1000, -1);
    const values = summary.cdf.map(([, us]) => us);
    expect([...values].sort((a, b) => a - b)).toEqual(values);
  });

  it('judges each workload by its headline figure', () => {
    expect(headline({ workload: 'echo' }, { latency: { p50: 7 } as never })).toBe(7);
    expect(headline({ workload: 'throughput' }, { msgsPerSec: 9 })).toBe(9);
    expect(headline({ workload: 'wire-bytes' }, { wireBytesPerMessage: 70 })).toBe(70);
    expect(headline({ workload: 'echo' }, undefined)).toBeUndefined();
  });

  it('takes each figure\'s median from its own runs, and the spread of the figure reported', () => {
    // Deliveries/s and CPU per delivery peak in different runs: each is quoted at its own median.
    const runs = [
      { msgsPerSec: 100, deliveriesPerCpuSecond: 900_000, serverCpuMicrosPerMsg: 1.11 },
      { msgsPerSec: 300, deliveriesPerCpuSecond: 500_000, serverCpuMicrosPerMsg: 2 },
      { msgsPerSec: 200, deliveriesPerCpuSecond: 1_000_000, serverCpuMicrosPerMsg: 1 },
    ];
    const summary = summarizeRuns({ workload: 'fanout-max' }, runs);
    expect(summary.medians).toMatchObject({ msgsPerSec: 200, deliveriesPerCpuSecond: 900_000, serverCpuMicrosPerMsg: 1.11 });
    expect(summary.result).toBe(runs[0]); // the run with the median deliveries per CPU-second, the fan-out's headline
    expect(summary.spread).toBeCloseTo(0.556, 3); // (1 M − 0.5 M) / 0.9 M
    expect(summary.spreads!.msgsPerSec).toBe(1);
  });

  it('prints plain numbers under named columns, and a failed cell as failed with its reason', () => {
    const report: BenchReport = {
      schemaVersion: 1,
      meta: { date: 'd', commit: 'c', node: 'v20', os: 'linux', cpu: 'cpu', cores: 2, memoryGiB: 8, options: {}, rows: [{ name: 'ws', description: 'raw', variant: 'naive' }] },
      cells: [
        { target: 'websocket', tls: false, workload: 'throughput', params: { size: 64, window: 32 }, status: 'ok', runs: [{}], medians: { msgsPerSec: 41234, serverCpuMicrosPerMsg: 5.5, clientCpuMicrosPerMsg: 7.25 } },
        { target: 'ws', tls: false, workload: 'throughput', params: { size: 64, window: 32 }, status: 'failed', reason: 'run 1: 3 reliable deliveries lost', runs: [] },
        { target: 'websocket', tls: false, workload: 'setup', params: { connections: 10 }, status: 'ok', runs: [{}], medians: { setupMs: 0.8 } },
        { target: 'ws', tls: false, workload: 'setup', params: { connections: 10 }, status: 'skipped', reason: 'a long reason that must not widen the column of figures', runs: [] },
      ],
      targets: [],
    };
    const lines = textTables(report).split('\n');
    expect(lines[1]).toMatch(/^target\s+msg\/s\s+server µs\/msg\s+client µs\/msg\s+spread %$/);
    expect(lines[2]).toMatch(/^websocket\s+41234\s+5\.50\s+7\.25$/);
    expect(lines[3]).toMatch(/^ws \(naive\)\s+FAILED size=64 window=32: run 1: 3 reliable deliveries lost$/);
    expect(lines.slice(5)).toEqual(['setup: sequential connects to a usable client', 'target      connect ms', 'websocket         0.80', 'ws (naive)  SKIPPED connections=10: a long reason that must not widen the column of figures']);
  });

  it('renders a self-contained HTML report with Chart.js and the data inlined', async () => {
    const report: BenchReport = {
      schemaVersion: 1,
      meta: { date: 'd', commit: 'c', node: 'v20', os: 'linux', cpu: 'cpu', cores: 2, memoryGiB: 24, options: {} },
      cells: [{ target: 'ws', tls: false, workload: 'throughput', params: { size: 64 }, status: 'ok', runs: [{ msgsPerSec: 1 }], result: { msgsPerSec: 1 }, medians: { msgsPerSec: 1 } }],
      targets: [],
    };
    const html = await renderHtml(report);
    expect(html).toContain('new Chart(');
    expect(html).toContain('"target":"ws"');
    expect(html).not.toMatch(/<script src=/);
    // The cells are a table, not JSON; a chart with nothing to draw says why; charts follow the window's width.
    expect(html).toMatch(/<table><thead><tr><th>target<\/th><th class="n">msg\/s<\/th>/);
    expect(html).toContain('No fanout-max cells in this run');
    expect(html).toContain('maintainAspectRatio: false');
  });
});
