/**
 * Results: open a JSON report of `npm run bench` (file picker or drag and drop) and chart it with
 * the lab's chart components: echo latency CDF, echo percentiles, throughput, fan-out scaling,
 * wire bytes, connection setup and memory, the goals table, and every cell.
 */
import type { BenchReport, Cell } from '../../../benchmarks/report.ts';
import type { CellResult } from '../../../benchmarks/workloads.ts';
import { barChart, PALETTE, series, setData, xyChart, type Point } from '../charts.ts';
import { labState } from '../lab.ts';
import { formatMs } from '../stats.ts';
import { append, card, chartCard, formatNumber, h, note, table, takeawaysCard } from '../ui.ts';

/** Parses and checks a report; throws with a reader-facing reason. */
export function parseReport(text: string): BenchReport {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`not JSON: ${(error as Error).message}`);
  }
  const report = value as Partial<BenchReport>;
  if (report?.schemaVersion !== 1 || !Array.isArray(report.cells) || !report.meta) throw new Error('not a Switchyard benchmark report (schemaVersion 1 with meta and cells expected)');
  return report as BenchReport;
}

const label = (cell: Cell) => (cell.tls && !/tls/i.test(cell.target) ? `${cell.target} (TLS)` : cell.target);

/** Every number a result holds, flattened (latency percentiles in µs), for the all-cells table. */
function figures(result: CellResult | undefined): string {
  if (!result) return '';
  return Object.entries(result)
    .flatMap(([key, value]) => {
      if (typeof value === 'number') return [`${key} ${formatNumber(value, value % 1 ? 1 : 0)}`];
      if (key === 'latency' && value && typeof value === 'object') {
        const l = value as NonNullable<CellResult['latency']>;
        return [`p50 ${formatNumber(l.p50, 0)} µs · p99 ${formatNumber(l.p99, 0)} µs · max ${formatNumber(l.max, 0)} µs`];
      }
      return [];
    })
    .join(' · ');
}

/** What a report shows, from its cells: who led each workload and by how much (within 20 %: inconclusive). */
export function reportTakeaways(report: BenchReport): HTMLElement {
  const ok = (workload: string) => report.cells.filter((c) => c.workload === workload && c.status === 'ok' && c.result);
  const lines: string[] = [];
  /** The best cell by `value` (lower or higher is better) and whether it leads the runner-up by more than 20 %. */
  const lead = (cells: Cell[], value: (c: Cell) => number | undefined, lowerIsBetter: boolean) => {
    const scored = cells.map((c) => ({ c, v: value(c) })).filter((x): x is { c: Cell; v: number } => typeof x.v === 'number' && Number.isFinite(x.v));
    if (scored.length === 0) return null;
    scored.sort((a, b) => (lowerIsBetter ? a.v - b.v : b.v - a.v));
    const [best, next] = scored;
    const clear = !next || (lowerIsBetter ? next.v > best!.v * 1.2 : next.v * 1.2 < best!.v);
    return { best: best!, next, clear };
  };
  const say = (what: string, found: ReturnType<typeof lead>, format: (v: number) => string, choose: string) => {
    if (!found) return;
    const { best, next, clear } = found;
    lines.push(`${what}: ${label(best.c)} (${format(best.v)})${next ? `, then ${label(next.c)} (${format(next.v)})` : ''}${clear ? `. ${choose}` : ': within 20 % of each other, inconclusive on this run.'}`);
  };
  const echoes = ok('echo');
  const size = echoes.length ? Math.min(...echoes.map((c) => c.params.size ?? Infinity)) : 64;
  const small = echoes.filter((c) => c.params.size === size);
  say(`Lowest echo p99 at ${size} B`, lead(small, (c) => (c.result!.latency?.p99 ?? NaN) / 1000, true), (v) => formatMs(v), 'For interactive round trips, its tail is the one to beat.');
  say('Highest throughput', lead(ok('throughput'), (c) => c.result!.msgsPerSec, false), (v) => `${formatNumber(v)} msg/s`, 'For bulk streams of small messages, it moves the most per second.');
  const fan = ok('fanout');
  const most = fan.length ? Math.max(...fan.map((c) => c.params.subscribers ?? 0)) : 0;
  if (fan.length) say(`Fan-out to ${most} subscribers`, lead(fan.filter((c) => c.params.subscribers === most), (c) => c.result!.msgsPerSec, false), (v) => `${formatNumber(v)} deliveries/s`, 'For broadcasting to many readers, it scales furthest here.');
  else lines.push('No fan-out cell has a result in this report: nothing to conclude about fan-out (inconclusive).');
  say('Fewest bytes on the wire per message', lead(ok('wire-bytes'), (c) => c.result!.wireBytesPerMessage, true), (v) => `${formatNumber(v, 1)} B`, 'On metered or slow links, its framing costs least.');
  say('Fastest connection setup', lead(ok('setup'), (c) => c.result!.setupMs, true), (v) => formatMs(v), 'For short-lived clients, it is ready soonest.');
  const failed = report.cells.filter((c) => c.status === 'failed');
  if (failed.length) lines.push(`${failed.length} cell${failed.length === 1 ? '' : 's'} failed (${[...new Set(failed.map(label))].join(', ')}): ${failed.length === 1 ? 'its target is' : 'those targets are'} missing from the comparisons above.`);
  lines.push(`Measured on ${report.meta.cores} core${report.meta.cores === 1 ? '' : 's'} of ${report.meta.cpu}; compare ratios within this report, not absolute figures across machines.`);
  return takeawaysCard('results-takeaways', 'What this report shows', lines);
}

function renderReport(container: HTMLElement, report: BenchReport, name: string): void {
  const ok = (workload: string) => report.cells.filter((c) => c.workload === workload && c.status === 'ok' && c.result);
  const targets = [...new Set(report.cells.map(label))];
  const color = (cell: Cell) => targets.indexOf(label(cell));
  const echoes = ok('echo');
  const echoSize = echoes.length ? Math.min(...echoes.map((c) => c.params.size ?? Infinity)) : 64;
  const smallEchoes = echoes.filter((c) => c.params.size === echoSize);

  const charts = {
    cdf: chartCard(`Echo latency CDF (${echoSize} B)`, 'round trip, per target'),
    echo: chartCard(`Echo p50 / p99 (${echoSize} B)`, 'milliseconds, lower is better'),
    throughput: chartCard('Throughput', 'messages per second, higher is better'),
    fanout: chartCard('Fan-out', 'deliveries per second by number of subscribers'),
    wire: chartCard('Bytes on the wire per message', 'all framing included'),
    setup: chartCard('Connection setup', 'milliseconds per connection'),
  };
  const m = report.meta;
  const met = report.targets ?? [];
  append(
    container,
    card(
      name,
      undefined,
      h('div', { class: 'meta' }, h('span', {}, 'date ', h('b', {}, m.date)), h('span', {}, 'commit ', h('b', {}, m.commit)), h('span', {}, 'Node ', h('b', {}, m.node)), h('span', {}, h('b', {}, `${m.cpu} × ${m.cores}`)), h('span', {}, h('b', {}, `${m.memoryGiB} GiB`)), h('span', {}, h('b', {}, `${report.cells.length}`), ' cells')),
    ),
    met.length
      ? card(
          'Goals',
          undefined,
          table(
            ['goal', 'value', 'target', 'met'],
            met.map((t) => [t.name, t.value === null ? '—' : formatNumber(t.value, 2), t.goal, t.met === null ? '—' : h('span', { class: t.met ? 'good' : 'bad' }, t.met ? 'met' : 'missed')]),
          ),
        )
      : null,
    h('div', { class: 'grid-2' }, ...Object.values(charts).map((c) => c.element)),
    card(
      'All cells',
      undefined,
      h(
        'div',
        { class: 'table-wrap' },
        table(
          ['target', 'workload', 'params', 'status', 'figures'],
          report.cells.map((c) => [label(c), c.workload, Object.entries(c.params).map(([k, v]) => `${k}=${v}`).join(' '), h('span', { class: c.status === 'ok' ? 'good' : c.status === 'failed' ? 'bad' : 'muted' }, c.status), c.status === 'ok' ? figures(c.result) : (c.reason ?? '')]),
          { 'data-testid': 'cells-table', class: 'data wrap' },
        ),
      ),
    ),
  );

  setData(
    xyChart('results-cdf', charts.cdf.canvas, { x: { title: 'latency (ms)', log: true }, y: { title: 'percentile', min: 0, max: 100 }, line: true }),
    smallEchoes.map((c) => series(label(c), (c.result!.latency?.cdf ?? []).map(([p, us]): Point => ({ x: Math.max(us / 1000, 0.001), y: p })), color(c))),
  );
  const bars = (id: string, canvas: HTMLCanvasElement, cells: Cell[], y: string, value: (r: CellResult) => number | undefined, log = false) =>
    setData(barChart(id, canvas, { x: 'target', y: { title: y, log } }), [series(y, cells.map((c) => value(c.result!) ?? 0), 0, { backgroundColor: cells.map((c) => PALETTE[color(c) % PALETTE.length]!) as never })], cells.map(label));
  setData(
    barChart('results-echo', charts.echo.canvas, { x: 'target', y: { title: 'ms', log: true } }),
    [series('p50', smallEchoes.map((c) => (c.result!.latency?.p50 ?? 0) / 1000), 0), series('p99', smallEchoes.map((c) => (c.result!.latency?.p99 ?? 0) / 1000), 1)],
    smallEchoes.map(label),
  );
  bars('results-throughput', charts.throughput.canvas, ok('throughput'), 'msg/s', (r) => r.msgsPerSec);
  const fan = ok('fanout');
  const fanTargets = [...new Set(fan.map(label))];
  setData(
    xyChart('results-fanout', charts.fanout.canvas, { x: { title: 'subscribers', log: true }, y: { title: 'deliveries/s' }, line: true }),
    fanTargets.map((t) => series(t, fan.filter((c) => label(c) === t).map((c): Point => ({ x: c.params.subscribers ?? 1, y: c.result!.msgsPerSec ?? 0 })).sort((a, b) => a.x - b.x), targets.indexOf(t), { pointRadius: 3 })),
  );
  // An empty chart says why: no fan-out cells in the report (a preset without them), or why each failed.
  if (fan.length === 0) {
    const cells = report.cells.filter((c) => c.workload === 'fanout');
    const reasons = [...new Set(cells.map((c) => `${c.status}: ${c.reason ?? 'no result'}`))];
    charts.fanout.element.append(note('info', cells.length === 0 ? 'This report has no fan-out cells: its run left the fan-out workload out (--workloads without fanout).' : `No fan-out cell has a result (${cells.length} cells: ${reasons.join('; ')}).`));
  }
  bars('results-wire', charts.wire.canvas, ok('wire-bytes'), 'bytes', (r) => r.wireBytesPerMessage);
  bars('results-setup', charts.setup.canvas, ok('setup'), 'ms', (r) => r.setupMs);
  container.append(reportTakeaways(report));
  labState.results = { loaded: name, cells: report.cells.length, echoP50: smallEchoes.map((c) => [label(c), formatMs((c.result!.latency?.p50 ?? 0) / 1000)]) };
}

export function renderResults(root: HTMLElement): void {
  const input = h('input', { type: 'file', accept: '.json,application/json', id: 'report-file', hidden: true });
  const zone = h('div', { class: 'dropzone', id: 'dropzone' }, h('p', {}, h('strong', {}, 'Drop a bench-*.json here'), ' or ', h('button', { class: 'small', onclick: () => input.click() }, 'choose a file')), h('p', { class: 'muted' }, 'Made by ', h('code', {}, 'npm run bench'), ' in bench-results/. Nothing is uploaded: the file is read in this page.'));
  const output = h('div', { id: 'report' });
  async function open(file: File): Promise<void> {
    output.replaceChildren();
    try {
      renderReport(output, parseReport(await file.text()), file.name);
    } catch (error) {
      output.replaceChildren(note('error', `${file.name}: ${(error as Error).message}`));
    }
  }
  input.addEventListener('change', () => input.files?.[0] && void open(input.files[0]));
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    const file = event.dataTransfer?.files[0];
    if (file) void open(file);
  });
  append(root, h('div', { class: 'page-head' }, h('h2', {}, 'Benchmark results'), h('p', { class: 'lead' }, 'Open a report from the benchmark suite and read it with the same charts as the live pages.')), zone, input, output);
}
