/**
 * Benchmark results: the JSON document (schema below, read back by the lab), the tables (one per
 * workload, plain numbers under named columns) as terminal text, Markdown and HTML, and a
 * self-contained HTML report with Chart.js inlined.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { CellResult } from './workloads.ts';

export type Workload = 'echo' | 'echo-rate' | 'throughput' | 'fanout' | 'fanout-max' | 'setup' | 'memory' | 'pubsub' | 'acked' | 'wire-bytes' | 'recovery';

export interface Cell {
  target: string;
  tls: boolean;
  workload: Workload;
  params: Record<string, number>;
  /** `failed`: it threw, or lost or misrouted a reliable delivery (see `reason`). */
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  /** Every run's result; `result` is the run with the median headline figure (for its CDF). */
  runs: CellResult[];
  result?: CellResult;
  /** Each figure's own median across runs (`figuresOf` names: `msgsPerSec`, `p50`, …): what tables and targets quote. */
  medians?: Record<string, number>;
  /** (max − min) / median of each figure across runs. */
  spreads?: Record<string, number>;
  /** (max − min) / median of the headline figure across runs. */
  spread?: number;
  /** Wall time this cell took, setup included. */
  elapsedMs?: number;
}

/** A target line: a ratio or figure measured in this run against its goal. */
export interface Goal {
  name: string;
  value: number | null;
  goal: string;
  met: boolean | null;
  /** Which issue set it. */
  issue?: number;
  /** The figures the value was computed from, or what was missing. */
  detail?: string;
}

export interface BenchReport {
  schemaVersion: 1;
  meta: {
    date: string;
    commit: string;
    node: string;
    os: string;
    cpu: string;
    cores: number;
    memoryGiB: number;
    options: Record<string, unknown>;
    /** The command line that produced this report. */
    command?: string;
    /** How every load-generator client writes (the same for every row). */
    clientWritePolicy?: string;
    /** CPU cores the server and the load generator were pinned to (taskset), or null when not pinned. */
    pinning?: { server: string; loadGenerator: string } | null;
    /** Every row: what it is, naive or tuned. */
    rows?: { name: string; description: string; variant?: 'naive' | 'tuned' }[];
  };
  cells: Cell[];
  targets: Goal[];
}

/** The figure a cell is judged by, and its median run picked by. */
export function headline(cell: Pick<Cell, 'workload'>, result: CellResult | undefined): number | undefined {
  if (!result) return undefined;
  switch (cell.workload) {
    case 'echo':
    case 'echo-rate':
    case 'acked':
      return result.latency?.p50;
    case 'throughput':
    case 'pubsub':
      return result.msgsPerSec;
    case 'fanout':
      return result.latency?.p99;
    case 'fanout-max':
      return result.deliveriesPerCpuSecond;
    case 'setup':
      return result.setupMs;
    case 'memory':
      return result.bytesPerIdleConnection;
    case 'wire-bytes':
      return result.wireBytesPerMessage;
    case 'recovery':
      return result.recoveryMs;
  }
}

/** Every number of a result, flat: top-level figures (flags as 0 or 1), latency percentiles as p50, p90, p99, p999, max. */
export function figuresOf(result: CellResult): Record<string, number> {
  const figures: Record<string, number> = {};
  for (const [key, value] of Object.entries(result)) if (typeof value === 'number' || typeof value === 'boolean') figures[key] = Number(value);
  if (result.latency) for (const key of ['p50', 'p90', 'p99', 'p999', 'max'] as const) figures[key] = result.latency[key];
  return figures;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Each figure's median and spread across runs, and the run to show (median headline figure). */
export function summarizeRuns(cell: Pick<Cell, 'workload'>, runs: CellResult[]): Pick<Cell, 'result' | 'medians' | 'spreads' | 'spread'> {
  const medians: Record<string, number> = {};
  const spreads: Record<string, number> = {};
  const all = runs.map(figuresOf);
  for (const key of new Set(all.flatMap(Object.keys))) {
    const values = all.map((f) => f[key]).filter((v): v is number => v !== undefined);
    const middle = median(values);
    medians[key] = Math.round(middle * 1000) / 1000;
    spreads[key] = middle ? Math.round(((Math.max(...values) - Math.min(...values)) / middle) * 1000) / 1000 : 0;
  }
  const heads = runs.map((r) => headline(cell, r) ?? 0);
  const sorted = [...heads].sort((a, b) => a - b);
  const chosen = runs[heads.indexOf(sorted[Math.floor((sorted.length - 1) / 2)]!)];
  const middle = median(heads);
  return { result: chosen, medians, spreads, spread: middle ? Math.round(((Math.max(...heads) - Math.min(...heads)) / middle) * 1000) / 1000 : 0 };
}

export function describeParams(params: Record<string, number>): string {
  return Object.entries(params)
    .map(([key, value]) => `${key}=${value >= 1024 && key === 'size' ? `${value / 1024}K` : value}`)
    .join(' ');
}

/** One table: a workload's cells, one row each, plain numbers under named columns. */
export interface Table {
  title: string;
  columns: string[];
  rows: string[][];
  /** Per row: the cell did not run or failed, and its row is [label, status and reason]. */
  notRun: boolean[];
}

type Column = [heading: string, value: (m: Record<string, number>, cell: Cell) => string];

const num = (value: number | undefined, digits = 0): string => (value === undefined || Number.isNaN(value) ? '' : digits ? value.toFixed(digits) : String(Math.round(value)));
/** Whole MiB or KiB where the size is one, else bytes (300000 B, not 292.96875 KiB). */
const size = (bytes: number | undefined) => (bytes === undefined ? '' : bytes % (1024 * 1024) === 0 ? `${bytes / 1024 / 1024} MiB` : bytes % 1024 === 0 ? `${bytes / 1024} KiB` : `${bytes} B`);
const spread: Column = ['spread %', (_m, c) => (c.spread === undefined || c.runs.length < 2 ? '' : num(c.spread * 100))];
const openLoopNote = (m: Record<string, number>): string => (m.generatorBehind ? 'generator behind' : '');

/** Columns per workload; each figure is its own median across runs. */
const COLUMNS: Record<Workload, { title: string; columns: Column[] }> = {
  echo: { title: 'echo: closed loop, one in flight', columns: [['size', (_m, c) => size(c.params.size)], ['p50 µs', (m) => num(m.p50)], ['p99 µs', (m) => num(m.p99)], ['msg/s', (m) => num(m.msgsPerSec)], spread] },
  throughput: { title: 'throughput: closed loop, 32 in flight, 64 B', columns: [['msg/s', (m) => num(m.msgsPerSec)], ['server µs/msg', (m) => num(m.serverCpuMicrosPerMsg, 2)], ['client µs/msg', (m) => num(m.clientCpuMicrosPerMsg, 2)], spread] },
  'echo-rate': {
    title: 'echo-rate: open loop at a fixed rate, 64 B (latency from the intended send time)',
    columns: [['rate/s', (m) => num(m.targetRate)], ['achieved/s', (m) => num(m.achievedRate)], ['p50 µs', (m) => num(m.p50)], ['p99 µs', (m) => num(m.p99)], ['p99.9 µs', (m) => num(m.p999)], ['lost', (m) => num(m.lost)], ['server µs/msg', (m) => num(m.serverCpuMicrosPerMsg, 2)], ['note', openLoopNote]],
  },
  fanout: {
    title: 'fanout: open loop, one publisher at a fixed rate (latency from the intended send time)',
    columns: [['subscribers', (_m, c) => num(c.params.subscribers)], ['rate/s', (m) => num(m.targetRate)], ['achieved/s', (m) => num(m.achievedRate)], ['deliveries/s', (m) => num(m.msgsPerSec)], ['p50 µs', (m) => num(m.p50)], ['p99 µs', (m) => num(m.p99)], ['lost', (m) => num(m.lost)], ['deliveries per server CPU-s', (m) => num(m.deliveriesPerCpuSecond)], ['note', openLoopNote]],
  },
  'fanout-max': {
    title: 'fanout-max: publishes one at a time, 32 in flight',
    // Reports from before fanout-max had a size parameter ran it at 64 B.
    columns: [['size', (_m, c) => size(c.params.size ?? 64)], ['subscribers', (_m, c) => num(c.params.subscribers)], ['deliveries/s', (m) => num(m.msgsPerSec)], ['server µs/delivery', (m) => num(m.serverCpuMicrosPerMsg, 3)], ['deliveries per server CPU-s', (m) => num(m.deliveriesPerCpuSecond)], ['p99 µs', (m) => num(m.p99)], spread],
  },
  pubsub: { title: 'pubsub: 100 topics, 50 clients following 10 each, open loop', columns: [['rate/s', (m) => num(m.targetRate)], ['achieved/s', (m) => num(m.achievedRate)], ['deliveries/s', (m) => num(m.msgsPerSec)], ['p99 µs', (m) => num(m.p99)], ['lost', (m) => num(m.lost)], ['misrouted', (m) => num(m.misrouted)], ['note', openLoopNote]] },
  acked: { title: 'acked: publish with receipt, one at a time', columns: [['p50 µs', (m) => num(m.p50)], ['p99 µs', (m) => num(m.p99)], ['msg/s', (m) => num(m.msgsPerSec)]] },
  setup: { title: 'setup: sequential connects to a usable client', columns: [['connect ms', (m) => num(m.setupMs, 2)]] },
  memory: {
    title: 'memory: server memory per idle connection, after GC (heap + external: what JS holds; RSS: native allocations too)',
    columns: [['connections', (_m, c) => num(c.params.connections)], ['KiB/connection', (m) => num((m.bytesPerIdleConnection ?? NaN) / 1024, 1)], ['RSS KiB/connection', (m) => num((m.rssBytesPerIdleConnection ?? NaN) / 1024, 1)]],
  },
  'wire-bytes': { title: 'wire-bytes: TCP or UDP payload bytes per 64 B message, all framing', columns: [['bytes/msg', (m) => num(m.wireBytesPerMessage)]] },
  recovery: { title: 'recovery: a resuming client gets the room messages it missed (from its TCP accept to the last one)', columns: [['missed', (m) => num(m.missed)], ['recovery ms', (m) => num(m.recoveryMs, 1)], ['lost', (m) => num(m.lost)], spread] },
};

/** The report's tables, one per workload present, rows in run order; failed cells say so. */
export function tables(report: BenchReport): Table[] {
  const out: Table[] = [];
  for (const [workload, { title, columns }] of Object.entries(COLUMNS) as [Workload, (typeof COLUMNS)[Workload]][]) {
    const cells = report.cells.filter((c) => c.workload === workload && !(c.status === 'skipped' && c.reason?.startsWith('not implemented')));
    if (cells.length === 0) continue;
    // A cell that did not run is its label and its status with the reason, in place of figures.
    const rows = cells.map((cell) => [rowLabel(report, cell.target), ...(cell.status === 'ok' && cell.medians ? columns.map(([, value]) => value(cell.medians!, cell)) : [`${cell.status.toUpperCase()} ${describeParams(cell.params)}: ${cell.reason ?? ''}`])]);
    out.push({ title, columns: ['target', ...columns.map(([heading]) => heading)], rows, notRun: cells.map((cell) => !(cell.status === 'ok' && cell.medians)) });
  }
  return out;
}

/** The row name with its kind, where it has one: `ws (naive)`, `ws-tuned (tuned)`. */
function rowLabel(report: BenchReport, target: string): string {
  const variant = report.meta.rows?.find((r) => r.name === target)?.variant;
  return variant ? `${target} (${variant})` : target;
}

/** Tables as aligned plain text for the terminal. */
export function textTables(report: BenchReport): string {
  return tables(report)
    .map(({ title, columns, rows, notRun }) => {
      const full = rows.filter((_, i) => !notRun[i]);
      const widths = columns.map((c, i) => Math.max(c.length, ...full.map((r) => r[i]!.length), ...(i === 0 ? rows.map((r) => r[0]!.length) : [])));
      const line = (cells: string[], short = false) => (short ? `${cells[0]!.padEnd(widths[0]!)}  ${cells[1]}` : cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd());
      return [title, line(columns), ...rows.map((r, i) => line(r, notRun[i]))].join('\n');
    })
    .join('\n\n');
}

/** Tables and target lines as Markdown (the README quotes these verbatim). */
export function markdownTables(report: BenchReport): string {
  const escape = (text: string) => text.replaceAll('|', '\\|');
  const parts = tables(report).map(({ title, columns, rows }) => [`**${escape(title)}**`, '', `| ${columns.join(' | ')} |`, `|${columns.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${[...r, ...Array(columns.length - r.length).fill('')].map(escape).join(' | ')} |`)].join('\n'));
  if (report.targets.length) parts.push(['**targets** (ratios within this run)', '', '| target | goal | measured | met | from |', '|---|---|---:|---|---|', ...report.targets.map((g) => `| ${escape(g.name)} | ${g.goal} | ${g.value ?? 'n/a'} | ${g.met === null ? '—' : g.met ? 'yes' : '**no**'} | ${escape(g.detail ?? '')} |`)].join('\n'));
  return parts.join('\n\n');
}

/** The target lines as the terminal prints them. */
export function goalLines(goals: Goal[]): string {
  return goals.map((g) => `  ${g.goal === 'comparison' ? '·' : g.met === null ? '?' : g.met ? '✓' : '✗'} ${g.name}: ${g.value ?? 'n/a'} (${g.goal === 'comparison' ? 'no goal, a comparison' : `goal ${g.goal}`})${g.detail ? ` — ${g.detail}` : ''}`).join('\n');
}

const html = (text: string) => text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

export async function renderHtml(report: BenchReport): Promise<string> {
  // chart.js does not export its UMD build: find it next to the package's main entry.
  const require = createRequire(import.meta.url);
  const chartJs = await readFile(path.join(path.dirname(require.resolve('chart.js')), 'chart.umd.min.js'), 'utf8');
  const data = JSON.stringify(report).replaceAll('<', '\\u003c');
  const m = report.meta;
  const tableHtml = tables(report)
    .map(({ title, columns, rows, notRun }) => `<h3>${html(title)}</h3><div class="wrap"><table><thead><tr>${columns.map((c, i) => `<th${i ? ' class="n"' : ''}>${html(c)}</th>`).join('')}</tr></thead><tbody>${rows.map((r, i) => (notRun[i] ? `<tr class="${r[1]!.startsWith('FAILED') ? 'failed' : 'skipped'}"><td>${html(r[0]!)}</td><td colspan="${columns.length - 1}">${html(r[1]!)}</td></tr>` : `<tr>${r.map((v, i) => `<td${i ? ' class="n"' : ''}>${html(v)}</td>`).join('')}</tr>`)).join('')}</tbody></table></div>`)
    .join('\n');
  const goals = report.targets.length
    ? `<h2>Targets</h2><div class="wrap"><table><thead><tr><th>target</th><th>goal</th><th class="n">measured</th><th>met</th><th>from</th></tr></thead><tbody>${report.targets.map((g) => `<tr><td>${html(g.name)}</td><td>${html(g.goal)}</td><td class="n">${g.value ?? 'n/a'}</td><td class="${g.met ? 'good' : g.met === false ? 'bad' : ''}">${g.met === null ? '—' : g.met ? 'met' : 'missed'}</td><td>${html(g.detail ?? '')}</td></tr>`).join('')}</tbody></table></div>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Switchyard benchmark ${m.date}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2433;max-width:1200px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,480px),1fr));gap:1.5rem}
.chart{position:relative;height:320px;min-width:0}
.why{color:#667;font-style:italic}
.wrap{overflow-x:auto}
table{border-collapse:collapse;margin-bottom:1rem}
td,th{padding:.25rem .6rem;border-bottom:1px solid #dde;text-align:left;font-size:.85rem;white-space:nowrap}
.n{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{background:#fdecec}
tr.skipped td{color:#667}
.good{color:#17803d}.bad{color:#b42318;font-weight:600}
</style>
<script>${chartJs}</script></head><body>
<h1>Switchyard benchmark</h1>
<p>${html(m.date)} · commit ${html(m.commit)} · Node ${html(m.node)} · ${html(m.cpu)} × ${m.cores} · ${m.memoryGiB} GiB${m.pinning ? ` · pinned: server on CPU ${html(m.pinning.server)}, load generator on CPU ${html(m.pinning.loadGenerator)}` : ' · not pinned'}</p>
${m.command ? `<p><code>${html(m.command)}</code></p>` : ''}
${m.clientWritePolicy ? `<p>Client write policy: ${html(m.clientWritePolicy)}. Every figure is the median of its own runs.</p>` : ''}
${goals}
<h2>Charts</h2>
<div class="charts">
<div><h3>Echo latency CDF (smallest size)</h3><div class="chart" id="cdf"></div></div>
<div><h3>Echo throughput (64 B, 32 in flight)</h3><div class="chart" id="throughput"></div></div>
<div><h3>Fan-out: deliveries per second by subscribers</h3><div class="chart" id="fanout"></div></div>
<div><h3>Fan-out, publishes one at a time: server CPU µs per delivery (lower is better)</h3><div class="chart" id="fanoutCost"></div></div>
</div>
<h2>All cells</h2>
${tableHtml}
<script>
const report = ${data};
const ok = (w) => report.cells.filter((c) => c.workload === w && c.status === 'ok' && c.result);
const med = (c, k) => (c.medians && c.medians[k] !== undefined ? c.medians[k] : null);
/** Draws a chart into its box, or says why there is nothing to draw. */
function draw(id, hasData, why, config) {
  const box = document.getElementById(id);
  if (!hasData) { box.style.height = 'auto'; box.innerHTML = '<p class="why">' + why + '</p>'; return; }
  const canvas = document.createElement('canvas');
  box.appendChild(canvas);
  config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
  new Chart(canvas, config);
}
const echoes = ok('echo'); const smallest = Math.min(...echoes.map((c) => c.params.size));
const small = echoes.filter((c) => c.params.size === smallest);
draw('cdf', small.length > 0, 'No echo cells in this run (--workloads echo).', { type: 'line', data: { datasets: small.map((c) => ({ label: c.target, data: c.result.latency.cdf.map(([p, us]) => ({ x: us, y: p })), showLine: true, pointRadius: 0 })) }, options: { parsing: false, scales: { x: { type: 'logarithmic', title: { display: true, text: 'µs (' + smallest + ' B)' } }, y: { min: 0, max: 100, title: { display: true, text: 'percentile' } } } } });
const tp = ok('throughput');
draw('throughput', tp.length > 0, 'No throughput cells in this run (--workloads throughput).', { type: 'bar', data: { labels: tp.map((c) => c.target), datasets: [{ label: 'msg/s (median)', data: tp.map((c) => med(c, 'msgsPerSec')) }] } });
const fan = ok('fanout'); const names = [...new Set(fan.map((c) => c.target))];
draw('fanout', fan.length > 0, 'No open-loop fan-out cells in this run (--workloads fanout).', { type: 'line', data: { datasets: names.map((n) => ({ label: n, data: fan.filter((c) => c.target === n).map((c) => ({ x: c.params.subscribers, y: med(c, 'msgsPerSec') })), showLine: true })) }, options: { parsing: false, scales: { x: { type: 'logarithmic', title: { display: true, text: 'subscribers' } }, y: { title: { display: true, text: 'deliveries/s' } } } } });
const cost = ok('fanout-max'); const costNames = [...new Set(cost.map((c) => c.target))]; const counts = [...new Set(cost.map((c) => c.params.subscribers))];
draw('fanoutCost', cost.length > 0, 'No fanout-max cells in this run (--workloads fanout-max).', { type: 'bar', data: { labels: costNames, datasets: counts.map((n) => ({ label: n + ' subscribers', data: costNames.map((t) => { const c = cost.find((x) => x.target === t && x.params.subscribers === n); return c ? med(c, 'serverCpuMicrosPerMsg') : null; }) })) }, options: { scales: { y: { title: { display: true, text: 'µs per delivery' } } } } });
</script></body></html>`;
}
