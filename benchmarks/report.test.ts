import { createHistogram } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { headline, renderHtml, type BenchReport } from './report.ts';
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

  it('renders a self-contained HTML report with Chart.js and the data inlined', async () => {
    const report: BenchReport = {
      schemaVersion: 1,
      meta: { date: 'd', commit: 'c', node: 'v20', os: 'linux', cpu: 'cpu', cores: 2, memoryGiB: 24, options: {} },
      cells: [{ target: 'ws', tls: false, workload: 'throughput', params: { size: 64 }, status: 'ok', runs: [{ msgsPerSec: 1 }], result: { msgsPerSec: 1 } }],
      targets: [],
    };
    const html = await renderHtml(report);
    expect(html).toContain('new Chart(');
    expect(html).toContain('"target":"ws"');
    expect(html).not.toMatch(/<script src=/);
  });
});
