/**
 * Benchmark results: the JSON document (schema below, read back by the lab), a terminal table and
 * a self-contained HTML report with Chart.js inlined (latency CDF, throughput, fan-out scaling).
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { CellResult } from './workloads.ts';

export interface Cell {
  target: string;
  tls: boolean;
  workload: 'echo' | 'echo-rate' | 'throughput' | 'fanout' | 'fanout-max' | 'setup' | 'memory' | 'pubsub' | 'acked' | 'wire-bytes';
  params: Record<string, number>;
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  /** Every run's result; `result` is the run with the median headline figure. */
  runs: CellResult[];
  result?: CellResult;
  /** (max − min) / median of the headline figure across runs. */
  spread?: number;
  /** Wall time this cell took, setup included. */
  elapsedMs?: number;
}

export interface BenchReport {
  schemaVersion: 1;
  meta: { date: string; commit: string; node: string; os: string; cpu: string; cores: number; memoryGiB: number; options: Record<string, unknown> };
  cells: Cell[];
  targets: { name: string; value: number | null; goal: string; met: boolean | null }[];
}

/** The figure a cell is judged by (and the median run picked by). */
export function headline(cell: Pick<Cell, 'workload'>, result: CellResult | undefined): number | undefined {
  if (!result) return undefined;
  switch (cell.workload) {
    case 'echo':
    case 'echo-rate':
      return result.latency?.p50;
    case 'throughput':
      return result.msgsPerSec;
    case 'fanout':
    case 'fanout-max':
      return result.msgsPerSec;
    case 'setup':
      return result.setupMs;
    case 'memory':
      return result.bytesPerIdleConnection;
    case 'pubsub':
      return result.msgsPerSec;
    case 'acked':
      return result.latency?.p50;
    case 'wire-bytes':
      return result.wireBytesPerMessage;
  }
}

export function describeParams(params: Record<string, number>): string {
  return Object.entries(params)
    .map(([key, value]) => `${key}=${value >= 1024 && key === 'size' ? `${value / 1024}K` : value}`)
    .join(' ');
}

export function formatCell(cell: Cell): string {
  if (cell.status !== 'ok') return `— (${cell.reason})`;
  const r = cell.result!;
  switch (cell.workload) {
    case 'echo':
      return `p50 ${r.latency!.p50} µs · p99 ${r.latency!.p99} · max ${r.latency!.max} · ${r.msgsPerSec} msg/s`;
    case 'echo-rate':
      return `open loop at ${r.msgsPerSec} msg/s: p50 ${r.latency!.p50} µs · p99 ${r.latency!.p99} · p99.9 ${r.latency!.p999} · max ${r.latency!.max} · lost ${r.lost}`;
    case 'throughput':
      return `${r.msgsPerSec} msg/s · ${r.serverCpuMicrosPerMsg ?? '?'} µs server CPU/msg`;
    case 'fanout':
      return `${r.msgsPerSec} deliveries/s · p50 ${r.latency!.p50} µs · p99 ${r.latency!.p99} · ${r.deliveriesPerCpuSecond ?? '?'} per CPU-s · lost ${r.lost}`;
    case 'fanout-max':
      return `${r.msgsPerSec} deliveries/s · ${r.deliveriesPerCpuSecond ?? '?'} per server CPU-s · p99 ${r.latency!.p99} µs`;
    case 'setup':
      return `${r.setupMs} ms`;
    case 'memory':
      return `${r.bytesPerIdleConnection} B heap/connection`;
    case 'pubsub':
      return `${r.msgsPerSec} deliveries/s · p99 ${r.latency!.p99} µs · lost ${r.lost} · misrouted ${r.misrouted}`;
    case 'acked':
      return `receipt p50 ${r.latency!.p50} µs · p99 ${r.latency!.p99} · ${r.msgsPerSec} msg/s`;
    case 'wire-bytes':
      return `${r.wireBytesPerMessage} B on the wire per 64 B message`;
  }
}

export async function renderHtml(report: BenchReport): Promise<string> {
  // chart.js does not export its UMD build: find it next to the package's main entry.
  const require = createRequire(import.meta.url);
  const chartJs = await readFile(path.join(path.dirname(require.resolve('chart.js')), 'chart.umd.min.js'), 'utf8');
  const data = JSON.stringify(report).replaceAll('<', '\\u003c');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Switchyard benchmark ${report.meta.date}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2433}canvas{max-width:900px;margin-bottom:2rem}table{border-collapse:collapse}td,th{padding:.25rem .6rem;border-bottom:1px solid #dde;text-align:left;font-size:.9rem}</style>
<script>${chartJs}</script></head><body>
<h1>Switchyard benchmark</h1>
<p>${report.meta.date} · commit ${report.meta.commit} · Node ${report.meta.node} · ${report.meta.cpu} × ${report.meta.cores} · ${report.meta.memoryGiB} GiB</p>
<h2>Echo latency CDF (64 B)</h2><canvas id="cdf"></canvas>
<h2>Echo throughput (64 B, 32 in flight)</h2><canvas id="throughput"></canvas>
<h2>Fan-out: deliveries per second by subscribers</h2><canvas id="fanout"></canvas>
<h2>Fan-out cost at max rate: server CPU µs per delivery (lower is better)</h2><canvas id="fanoutCost"></canvas>
<h2>All cells</h2><div id="cells"></div>
<script>
const report = ${data};
const ok = (w) => report.cells.filter((c) => c.workload === w && c.status === 'ok');
new Chart(document.getElementById('cdf'), { type: 'line', data: { datasets: ok('echo').filter((c) => c.params.size === 64).map((c) => ({ label: c.target, data: c.result.latency.cdf.map(([p, us]) => ({ x: us, y: p })), showLine: true })) }, options: { scales: { x: { type: 'logarithmic', title: { display: true, text: 'µs' } }, y: { title: { display: true, text: 'percentile' } } } } });
const tp = ok('throughput');
new Chart(document.getElementById('throughput'), { type: 'bar', data: { labels: tp.map((c) => c.target), datasets: [{ label: 'msg/s', data: tp.map((c) => c.result.msgsPerSec) }] } });
const fan = ok('fanout'); const names = [...new Set(fan.map((c) => c.target))];
new Chart(document.getElementById('fanout'), { type: 'line', data: { datasets: names.map((n) => ({ label: n, data: fan.filter((c) => c.target === n).map((c) => ({ x: c.params.subscribers, y: c.result.msgsPerSec })), showLine: true })) }, options: { scales: { x: { type: 'logarithmic', title: { display: true, text: 'subscribers' } } } } });
const cost = ok('fanout-max'); const costNames = [...new Set(cost.map((c) => c.target))]; const counts = [...new Set(cost.map((c) => c.params.subscribers))];
new Chart(document.getElementById('fanoutCost'), { type: 'bar', data: { labels: costNames, datasets: counts.map((n) => ({ label: n + ' subscribers', data: costNames.map((t) => cost.find((c) => c.target === t && c.params.subscribers === n)?.result.serverCpuMicrosPerMsg ?? null) })) }, options: { scales: { y: { type: 'logarithmic', title: { display: true, text: 'µs per delivery' } } } } });
document.getElementById('cells').innerHTML = '<table><tr><th>target</th><th>workload</th><th>params</th><th>status</th><th>headline</th></tr>' + report.cells.map((c) => '<tr><td>' + c.target + '</td><td>' + c.workload + '</td><td>' + JSON.stringify(c.params) + '</td><td>' + c.status + '</td><td>' + (c.reason ?? (c.result ? JSON.stringify(c.result.latency ? { p50: c.result.latency.p50, p99: c.result.latency.p99 } : c.result) : '')) + '</td></tr>').join('') + '</table>';
</script></body></html>`;
}
