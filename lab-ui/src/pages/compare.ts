/**
 * Compare: the same open-loop workload over each chosen transport, one after another, with live
 * charts (latency over time, histogram, CDF, throughput) and a summary row per transport.
 */
import { barChart, series, setData, xyChart, type Point } from '../charts.ts';
import { labState, unavailable, variant, VARIANTS, type ServerInfo } from '../lab.ts';
import { currentNetwork, networkChooser, networkNote } from '../network.ts';
import { runVariant, type RunConfig, type RunResult, type Sample, type Workload } from '../runner.ts';
import { cdf, decimate, formatMs, histogram, logBinEdges, rateSeries, summarizeLatencies } from '../stats.ts';
import { append, card, chartCard, field, formatNumber, h, note, numberInput, select, table, takeawaysCard } from '../ui.ts';

const MAX_POINTS = 2_500;

export function renderCompare(root: HTMLElement, server: ServerInfo): () => void {
  const state = { state: 'idle' as 'idle' | 'running' | 'done', results: [] as RunResult[] };
  labState.compare = state;
  let abort: AbortController | undefined;

  const picks = VARIANTS.map((v) => {
    const why = unavailable(v, server);
    const input = h('input', { type: 'checkbox', value: v.key, checked: !why, disabled: !!why });
    return { v, input, element: h('label', { class: `chip${why ? ' chip-off' : ''}`, title: why ?? v.about }, input, h('span', {}, v.label), why ? h('small', {}, 'unavailable') : null) };
  });
  const missing = picks.filter((p) => p.input.disabled);
  const workload = select<Workload>(
    [
      { value: 'echo', label: 'Echo (send to self through the server)' },
      { value: 'fanout', label: 'Fan-out (1 publisher → N subscribers)' },
      { value: 'pubsub', label: 'Pub/sub (topics, partial subscriptions)' },
    ],
    'echo',
    { name: 'workload' },
  );
  const size = select(
    [
      { value: '64', label: '64 B' },
      { value: '1024', label: '1 KiB' },
      { value: '16384', label: '16 KiB' },
      { value: '65536', label: '64 KiB' },
    ],
    '64',
    { name: 'size' },
  );
  const rate = numberInput(200, { name: 'rate', min: 1, max: 5000 });
  const duration = numberInput(3, { name: 'duration', min: 0.2, max: 60, step: 0.1 });
  const subscribers = numberInput(8, { name: 'subscribers', min: 1, max: 50 });
  const topics = numberInput(9, { name: 'topics', min: 3, max: 50 });
  const run = h('button', { class: 'primary', id: 'run' }, 'Run');
  const stop = h('button', { class: 'ghost', disabled: true }, 'Stop');
  const progress = h('div', { class: 'progress' }, h('div', { class: 'progress-bar' }));
  const status = h('span', { class: 'muted', id: 'status' }, 'Pick transports and a workload, then run.');

  const overTime = chartCard('Latency over time', 'each dot is one delivery, placed at its send time');
  const hist = chartCard('Latency histogram', 'deliveries per log-spaced bin');
  const cdfCard = chartCard('Latency CDF', 'share of deliveries at or below a latency');
  const rateCard = chartCard('Throughput', 'deliveries per second, 250 ms buckets');
  const summary = h('div', { class: 'table-wrap', id: 'summary' });

  append(
    root,
    h('div', { class: 'page-head' }, h('h2', {}, 'Compare transports'), h('p', { class: 'lead' }, 'Run one workload over each transport from this browser against the server, on real connections, and compare what arrives and when.')),
    networkNote(),
    networkChooser(),
    missing.length ? note('warn', `Not available here: ${missing.map((p) => `${p.v.label} (${p.element.title})`).join('; ')}.`) : null,
    card(
      'Experiment',
      undefined,
      h('div', { class: 'chips' }, ...picks.map((p) => p.element)),
      h('div', { class: 'form-grid' }, h('div', { class: 'span-2' }, field('Workload', workload)), field('Message size', size), field('Rate', rate, 'messages/s sent'), field('Duration', duration, 'seconds per transport'), field('Subscribers', subscribers, 'fan-out, pub/sub'), field('Topics', topics, 'pub/sub')),
      h('div', { class: 'actions' }, run, stop, status),
      progress,
    ),
    h('div', { class: 'grid-2' }, overTime.element, rateCard.element, hist.element, cdfCard.element),
    card('Summary', 'latency from when each message was handed to the client to its arrival; wire bytes from the server’s own counters (frames, HTTP heads, polls, QUIC and TLS included)', summary),
  );

  const charts = {
    time: xyChart('compare-time', overTime.canvas, { x: { title: 'seconds' }, y: { title: 'latency (ms)', log: true } }),
    rate: xyChart('compare-rate', rateCard.canvas, { x: { title: 'seconds' }, y: { title: 'deliveries/s' }, line: true }),
    hist: barChart('compare-hist', hist.canvas, { x: 'latency (ms)', y: { title: 'deliveries' } }),
    cdf: xyChart('compare-cdf', cdfCard.canvas, { x: { title: 'latency (ms)', log: true }, y: { title: 'percentile', min: 0, max: 100 }, line: true }),
  };

  const live = new Map<string, { samples: Sample[]; arrivals: number[]; index: number; label: string }>();
  function redraw(): void {
    const entries = [...live.values()];
    setData(
      charts.time,
      entries.map((e) => series(e.label, decimate(e.samples, MAX_POINTS).map((s): Point => ({ x: s.t, y: Math.max(s.latencyMs, 0.001) })), e.index)),
    );
    const until = Math.max(0.25, ...entries.map((e) => e.arrivals.at(-1) ?? 0));
    setData(
      charts.rate,
      entries.map((e) => series(e.label, rateSeries(e.arrivals, 250, until), e.index)),
    );
    const all = entries.flatMap((e) => e.samples.map((s) => s.latencyMs));
    if (all.length > 0) {
      const edges = logBinEdges(Math.min(...all), Math.max(...all), 6);
      setData(
        charts.hist,
        entries.map((e) => series(e.label, histogram(e.samples.map((s) => s.latencyMs), edges), e.index)),
        edges.slice(0, -1).map((edge) => formatMs(edge)),
      );
    }
    setData(
      charts.cdf,
      entries.map((e) => series(e.label, cdf(e.samples.map((s) => Math.max(s.latencyMs, 0.001))), e.index)),
    );
  }

  function renderSummary(): void {
    const rows = state.results.map((r) => {
      const v = VARIANTS.find((x) => x.key === r.variant)!;
      const stats = summarizeLatencies(r.samples.map((s) => s.latencyMs));
      const index = VARIANTS.indexOf(v);
      return [
        h('span', { class: 'swatch-label' }, h('i', { class: 'swatch', style: `background: var(--c${index})` }), v.label),
        r.error ? h('span', { class: 'bad' }, r.error) : formatNumber(r.sent),
        formatNumber(r.delivered),
        r.lost || r.refused ? h('span', { class: 'warn-text' }, `${formatNumber(r.lost)}${r.refused ? ` (+${r.refused} refused)` : ''}`) : '0',
        formatMs(stats.p50),
        formatMs(stats.p99),
        formatMs(stats.max),
        formatNumber(r.delivered / (r.durationMs / 1000)),
        r.wireBytesPerHop === null ? '—' : `${formatNumber(r.wireBytesPerHop, 1)} B`,
      ];
    });
    const limited = state.results.flatMap((r) => (r.subscribersLimited ? [note('warn', h('strong', {}, `${VARIANTS.find((x) => x.key === r.variant)!.label}: ${r.subscribersLimited.ran} of ${r.subscribersLimited.asked} subscribers. `), `${r.subscribersLimited.why}. A browser limit, not message loss; the Node benchmarks (npm run bench) have no such limit.`)] : []));
    summary.replaceChildren(table(['transport', 'sent', 'delivered', 'lost', 'p50', 'p99', 'max', 'deliveries/s', 'wire B per hop'], rows, { 'data-testid': 'summary-table' }), ...limited, ...(state.state === 'done' ? [takeaways()].filter((x): x is HTMLElement => x !== null) : []));
  }

  /** What the finished run shows, from its own figures. */
  function takeaways(): HTMLElement | null {
    const measured = state.results.filter((r) => !r.error && r.samples.length > 0).map((r) => ({ r, v: VARIANTS.find((x) => x.key === r.variant)!, stats: summarizeLatencies(r.samples.map((s) => s.latencyMs)) }));
    if (measured.length === 0) return null;
    const network = currentNetwork() ?? 'loopback';
    const best = (key: 'p50' | 'p99') => measured.reduce((a, b) => (b.stats[key] < a.stats[key] ? b : a));
    const reliable = measured.filter((m) => m.v.kind !== 'unreliable');
    const lossy = reliable.filter((m) => m.r.lost > 0);
    const unreliable = measured.filter((m) => m.v.kind === 'unreliable');
    const spread = measured.length > 1 && best('p99').stats.p99 * 1.2 > Math.max(...measured.map((m) => m.stats.p99));
    const lines = [
      `Over ${network}: lowest median ${best('p50').v.label} (${formatMs(best('p50').stats.p50)}), lowest p99 ${best('p99').v.label} (${formatMs(best('p99').stats.p99)}).${spread ? ' The differences are within 20 %: inconclusive on this run.' : ''}`,
      network === 'loopback' ? 'Loopback loses nothing: these are CPU and protocol costs. What loss does to each transport shows through a lossy network (chooser above) or on the Head-of-line page.' : `Every transport crossed the same ${network}; reliable lanes repaired every loss (${lossy.length ? `except ${lossy.map((m) => m.v.label).join(', ')}: see the lost column` : 'nothing lost'}), at the cost of their tail latency.`,
      reliable.length ? `Ordered state updates → one reliable lane; of those measured, ${reliable.reduce((a, b) => (b.stats.p99 < a.stats.p99 ? b : a)).v.label} had the lowest p99 here. Independent feeds → channels (WebTransport or WebRTC; the Head-of-line page shows why).` : '',
      ...unreliable.map((m) => `Latest-value telemetry → ${m.v.label}: ${formatNumber(m.r.lost)} of ${formatNumber(m.r.expected)} lost here${m.r.lost === 0 && network === 'loopback' ? ' (loopback drops nothing unless a queue overflows)' : ''}; none waited for another.`),
      limitedLine(),
    ].filter(Boolean);
    return takeawaysCard('compare-takeaways', 'What this run shows', lines);
  }

  /** A fan-out that ran fewer subscribers than asked says so in the takeaways too: never read as loss. */
  function limitedLine(): string {
    const limited = state.results.filter((r) => r.subscribersLimited);
    return limited.length ? `${limited.map((r) => variant(r.variant).label).join(', ')} ran ${limited[0]!.subscribersLimited!.ran} of ${limited[0]!.subscribersLimited!.asked} subscribers: a browser connection limit, not message loss; compare fan-out sizes across transports with npm run bench.` : '';
  }

  run.addEventListener('click', async () => {
    const chosen = picks.filter((p) => p.input.checked && !p.input.disabled).map((p) => p.v);
    if (chosen.length === 0) {
      status.textContent = 'Pick at least one transport.';
      return;
    }
    const config: RunConfig = {
      workload: workload.value as Workload,
      size: Number(size.value),
      rate: Math.min(5000, Math.max(1, Number(rate.value))),
      durationMs: Math.min(60, Math.max(0.2, Number(duration.value))) * 1000,
      subscribers: Math.min(50, Math.max(1, Number(subscribers.value))),
      topics: Math.min(50, Math.max(3, Number(topics.value))),
    };
    abort = new AbortController();
    state.state = 'running';
    state.results = [];
    live.clear();
    renderSummary();
    run.disabled = true;
    stop.disabled = false;
    const timer = setInterval(redraw, 250);
    const bar = progress.firstElementChild as HTMLElement;
    for (const [i, v] of chosen.entries()) {
      if (abort.signal.aborted) break;
      status.textContent = `Running ${v.label} (${i + 1}/${chosen.length})…`;
      bar.style.width = `${(i / chosen.length) * 100}%`;
      const entry = { samples: [] as Sample[], arrivals: [] as number[], index: VARIANTS.indexOf(v), label: v.label };
      live.set(v.key, entry);
      const result = await runVariant(
        v,
        config,
        (sample, arrival) => {
          entry.samples.push(sample);
          entry.arrivals.push(arrival);
        },
        abort.signal,
      );
      state.results.push(result);
      renderSummary();
    }
    clearInterval(timer);
    redraw();
    bar.style.width = '100%';
    status.textContent = abort.signal.aborted ? 'Stopped.' : `Done: ${state.results.length} transport${state.results.length === 1 ? '' : 's'}.`;
    state.state = 'done';
    renderSummary();
    run.disabled = false;
    stop.disabled = true;
  });
  stop.addEventListener('click', () => abort?.abort());
  renderSummary();
  return () => abort?.abort();
}
