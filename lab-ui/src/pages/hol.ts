/**
 * Head-of-line blocking: four timestamped flows share one connection per transport/lane, and
 * flow 1 also sends a large message now and then. Without packet loss (loopback, from the browser)
 * what shows is blocking *behind a big message*: on one ordered lane (TCP, or one QUIC stream)
 * every flow waits for it; with WebTransport channels only flow 1's own channel does; datagrams
 * never wait. Loss-induced blocking needs the namespace experiments: the server runs them for this
 * page ("Run on the server"), or `npm run experiment -- hol` writes JSON that opens here; both are
 * drawn by renderHolExperiment (per-flow percentiles and shared stalls).
 */
import type { HolResult } from '../../../benchmarks/experiments/hol.ts';
import { barChart, series, setData, xyChart, type Point } from '../charts.ts';
import { connectClient, labState, unavailable, VARIANTS, type ServerInfo, type Variant } from '../lab.ts';
import { openLoop } from '../runner.ts';
import { serverRunPanel, type ExperimentCatalog, type ExperimentEvent } from '../server-run.ts';
import { decimate, formatMs, nowMs, readStamp, stampPayload, summarizeLatencies } from '../stats.ts';
import { append, card, chartCard, field, formatNumber, h, jsonFileButton, note, numberInput, parseJson, select, sleep, table } from '../ui.ts';

/** One flow's deliveries: send time (s since start) and latency. */
export interface FlowSeries {
  name: string;
  points: { t: number; latencyMs: number }[];
  sent: number;
}

/** One transport/lane's run: what the page charts, whether measured here or loaded from an experiment. */
export interface HolRun {
  variant: string;
  label: string;
  source: 'browser loopback' | 'experiment';
  flows: FlowSeries[];
  error?: string;
}

const FLOWS = 4;
const BULK_FLOW = FLOWS; // flow index the bulk messages carry

interface HolConfig {
  ratePerFlow: number;
  bulkBytes: number;
  bulkEveryMs: number;
  durationMs: number;
}

/** Runs the four flows (and flow 1's bulk messages) over one connection of `v`, echoed by the server. */
async function runHolLive(v: Variant, config: HolConfig, signal: AbortSignal): Promise<HolRun> {
  const flows: FlowSeries[] = [...Array.from({ length: FLOWS }, (_, i) => ({ name: `flow ${i + 1}`, points: [], sent: 0 })), { name: `flow 1 bulk (${Math.round(config.bulkBytes / 1024)} KiB)`, points: [], sent: 0 }];
  const run: HolRun = { variant: v.key, label: v.label, source: 'browser loopback', flows };
  let client;
  try {
    client = await connectClient(v.transport);
    const self = client;
    const start = nowMs();
    client.on('message', (delivery) => {
      const stamp = readStamp(delivery.data);
      if (stamp) flows[stamp.flow]?.points.push({ t: (stamp.sentAtMs - start) / 1000, latencyMs: nowMs() - stamp.sentAtMs });
    });
    // Bulk messages ride flow 1's lane; a datagram cannot carry them, so on that variant they go reliably.
    const bulkLane = v.key === 'wt-unreliable' ? 'reliable' : v.lane(0, 0);
    let nextBulk = start + config.bulkEveryMs / 2;
    await openLoop(config.ratePerFlow * FLOWS, config.durationMs, signal, (seq) => {
      const flow = seq % FLOWS;
      flows[flow]!.sent++;
      self.send(self.id!, stampPayload(64, nowMs(), seq, flow), { lane: v.lane(seq, flow) }).catch(() => undefined);
      if (config.bulkBytes > 0 && nowMs() >= nextBulk) {
        nextBulk += config.bulkEveryMs;
        flows[BULK_FLOW]!.sent++;
        self.send(self.id!, stampPayload(config.bulkBytes, nowMs(), seq, BULK_FLOW), { lane: bulkLane }).catch(() => undefined);
      }
    });
    const deadline = nowMs() + 1_500;
    while (flows.reduce((n, f) => n + f.points.length, 0) < flows.reduce((n, f) => n + f.sent, 0) && nowMs() < deadline) await sleep(20);
  } catch (error) {
    run.error = (error as Error).message;
  } finally {
    client?.close();
  }
  return run;
}

/** Draws one run: a per-flow delivery timeline and a per-flow latency table. */
export function renderHolRun(container: HTMLElement, run: HolRun): void {
  const chart = chartCard(run.label, `${run.source}: each dot is one message, at its send time`);
  chart.canvas.parentElement!.classList.add('short');
  const rows = run.flows.map((flow, i) => {
    const stats = summarizeLatencies(flow.points.map((p) => p.latencyMs));
    const lost = flow.sent - flow.points.length;
    return [h('span', { class: 'swatch-label' }, h('i', { class: 'swatch', style: `background: var(--c${i})` }), flow.name), formatNumber(flow.points.length), lost > 0 ? h('span', { class: 'warn-text' }, formatNumber(lost)) : '0', formatMs(stats.p50), formatMs(stats.p99), formatMs(stats.max)];
  });
  append(chart.element, run.error ? note('error', run.error) : null, h('div', { class: 'table-wrap' }, table(['flow', 'delivered', 'lost', 'p50', 'p99', 'max'], rows)));
  container.append(chart.element);
  const xy = xyChart(`hol-${run.variant}`, chart.canvas, { x: { title: 'send time (s)' }, y: { title: 'latency (ms)', log: true } });
  setData(
    xy,
    run.flows.map((flow, i) => series(flow.name, decimate(flow.points, 2_000).map((p): Point => ({ x: p.t, y: Math.max(p.latencyMs, 0.001) })), i, i === BULK_FLOW ? { pointRadius: 4, pointStyle: 'rectRot' } : {})),
  );
}

/** Checks that a file is a head-of-line result of `npm run experiment -- hol`. */
export function parseHolResult(text: string): HolResult {
  const value = parseJson(text) as Partial<HolResult>;
  if (value?.experiment !== 'head-of-line' || !Array.isArray(value.variants)) throw new Error('not a head-of-line experiment result (npm run experiment -- hol --json FILE)');
  return value as HolResult;
}

/**
 * Draws an experiment run under real loss: per variant, each flow's latency percentiles and how
 * often one flow's stall coincided with another's (against what chance alone would give).
 */
export function renderHolExperiment(container: HTMLElement, result: HolResult): void {
  const path = result.impairment;
  const about = note('info', h('strong', {}, `Experiment of ${result.startedAt}: `), `${path.kind === 'netns' ? 'network namespaces + nftables' : 'userspace UDP relay'}, ${path.lossPercent} % loss each way${path.rateMbit ? `, ${path.rateMbit} Mbit/s` : ''}${path.delayMs ? `, ${path.delayMs} ms delay` : ''}. ${path.note}`);
  // The path's description spans the grid; the variants' charts fill it two by two.
  about.style.gridColumn = '1 / -1';
  container.append(about);
  for (const [i, v] of result.variants.entries()) {
    const chart = chartCard(v.variant, `${v.impaired ? 'over the lossy path' : 'not impaired on this path'} · stall above ${formatNumber(v.thresholdMs, 1)} ms · shared stalls ${v.stalls.sharedFraction === null ? '—' : `${Math.round(v.stalls.sharedFraction * 100)} %`} (chance ${v.stalls.chanceFraction === null ? '—' : `${Math.round(v.stalls.chanceFraction * 100)} %`})`);
    chart.canvas.parentElement!.classList.add('short');
    const ms = (us: number) => us / 1000;
    const rows = v.flows.map((f) => [`flow ${f.flow + 1}`, f.lane, formatNumber(f.delivered), f.lost ? h('span', { class: 'warn-text' }, formatNumber(f.lost)) : '0', formatMs(ms(f.latency.p50)), formatMs(ms(f.latency.p99)), formatMs(ms(f.latency.max)), formatNumber(f.stalls), formatMs(f.maxGapMs)]);
    append(chart.element, v.error ? note('error', v.error) : null, h('div', { class: 'table-wrap' }, table(['flow', 'lane', 'delivered', 'lost', 'p50', 'p99', 'max', 'stalls', 'longest gap'], rows)));
    container.append(chart.element);
    setData(
      barChart(`hol-exp-${i}`, chart.canvas, { x: 'flow', y: { title: 'latency (ms)', log: true } }),
      [series('p50', v.flows.map((f) => ms(f.latency.p50)), 0), series('p99', v.flows.map((f) => ms(f.latency.p99)), 1), series('max', v.flows.map((f) => ms(f.latency.max)), 3)],
      v.flows.map((f) => `flow ${f.flow + 1}`),
    );
    // The runner keeps each message's send time and latency: the same per-flow timeline as a run here.
    if (v.flows.every((f) => f.series)) renderHolRun(container, experimentTimeline(v));
  }
}

/** A variant's per-flow series as a timeline run (lost messages have no point). */
function experimentTimeline(v: HolResult['variants'][number]): HolRun {
  const flows = v.flows.map((f): FlowSeries => {
    const { sentAt, latencyMs } = f.series!;
    const points = sentAt.flatMap((t, k) => (latencyMs[k] == null ? [] : [{ t: t / 1000, latencyMs: latencyMs[k]! }]));
    return { name: `flow ${f.flow + 1} (${f.lane})`, points, sent: sentAt.length };
  });
  return { variant: `timeline-${v.variant}`, label: `${v.variant}: delivery timeline`, source: 'experiment', flows };
}

/** The server-run options: variants, loss, rate limit, relay delay, duration per variant. */
function serverRunControls(catalog: ExperimentCatalog): { element: HTMLElement; options: () => Record<string, unknown> } {
  const { variants, defaults } = catalog.hol;
  const picks = variants.map((v) => h('input', { type: 'checkbox', name: 'srv-variant', value: v, checked: true }));
  const loss = numberInput(defaults.lossPercent, { name: 'srv-loss', min: 0, max: 10, step: 1 });
  const rateMbit = numberInput(0, { name: 'srv-rate-mbit', min: 0, max: 1000, step: 0.5 });
  // Empty: the relay's own default (an explicit delay on the namespace path is reported as not applied).
  const delay = h('input', { type: 'number', name: 'srv-delay', min: 0, max: 500, placeholder: `${defaults.delayMs} (default)` });
  const path = select([{ value: 'auto', label: 'auto (namespaces when root)' }, { value: 'netns', label: 'network namespaces' }, { value: 'relay', label: 'UDP relay (WebTransport only)' }] as const, 'auto', { name: 'srv-impairment' });
  const duration = numberInput(Math.min(5, defaults.durationMs / 1000), { name: 'srv-duration', min: 1, max: catalog.limits.holDurationMs / 1000, step: 1 });
  const element = h(
    'div',
    {},
    h('div', { class: 'chips' }, ...picks.map((input) => h('label', { class: 'chip' }, input, h('span', {}, input.value)))),
    h(
      'div',
      { class: 'form-grid' },
      field('Packet loss', loss, '% each way (whole percents on the namespace path)'),
      field('Rate limit', rateMbit, 'Mbit/s each way, tc tbf (0: none; namespaces only)'),
      field('Relay delay', delay, 'ms each way (UDP relay only: no netem here)'),
      field('Path', path),
      field('Duration', duration, `seconds per variant (≤ ${catalog.limits.holDurationMs / 1000})`),
    ),
  );
  return {
    element,
    options: () => ({
      variants: picks.filter((p) => p.checked).map((p) => p.value),
      lossPercent: Number(loss.value),
      ...(Number(rateMbit.value) > 0 ? { rateMbit: Number(rateMbit.value) } : {}),
      ...(delay.value !== '' ? { delayMs: Number(delay.value) } : {}),
      impairment: path.value,
      durationMs: Math.round(Number(duration.value) * 1000),
    }),
  };
}

function describeHolEvent(event: ExperimentEvent): string | null {
  if (event.type === 'path') return `Path ready: ${event.impairment.kind === 'netns' ? 'network namespaces' : 'UDP relay'}, ${event.impairment.lossPercent} % loss each way.`;
  if (event.type === 'variant-start') return `Running ${event.variant} (${event.index + 1}/${event.of})…`;
  if (event.type === 'variant-done') return `${event.variant} done (${event.index + 1}/${event.of}).`;
  return null;
}

export function renderHol(root: HTMLElement, server: ServerInfo): () => void {
  const state = { state: 'idle' as 'idle' | 'running' | 'done', runs: [] as HolRun[], experiment: 0, server: undefined as unknown };
  labState.hol = state;
  let abort: AbortController | undefined;
  const picks = VARIANTS.map((v) => {
    const why = unavailable(v, server);
    const input = h('input', { type: 'checkbox', value: v.key, checked: !why, disabled: !!why });
    return { v, input, element: h('label', { class: `chip${why ? ' chip-off' : ''}`, title: why ?? v.about }, input, h('span', {}, v.label)) };
  });
  const rate = numberInput(50, { name: 'rate', min: 1, max: 500 });
  const bulk = numberInput(512, { name: 'bulk', min: 0, max: 1900 });
  const every = numberInput(400, { name: 'every', min: 100, max: 5000 });
  const duration = numberInput(2, { name: 'duration', min: 0.3, max: 30, step: 0.1 });
  const run = h('button', { class: 'primary', id: 'run' }, 'Run');
  const status = h('span', { class: 'muted' }, 'Four flows of 64 B messages on one connection; flow 1 also sends a large message periodically.');
  const results = h('div', { class: 'grid-2', id: 'hol-results' });
  const experiment = h('div', { class: 'grid-2', id: 'hol-experiment' });
  // A result opened from a file and one the server just ran are drawn alike.
  const showExperiment = (result: HolResult) => {
    experiment.replaceChildren();
    renderHolExperiment(experiment, result);
    state.experiment = result.variants.length;
  };
  const panel = serverRunPanel<HolResult>({
    kind: 'hol',
    label: 'Run on the server (real packet loss)',
    controls: serverRunControls,
    describe: describeHolEvent,
    show: showExperiment,
    caveat: ({ impairment }) => {
      if (impairment.kind !== 'relay') return null;
      const why = impairment.unavailable ? `The server cannot impair its own network here (${impairment.unavailable}), so it used the userspace UDP relay. ` : 'UDP relay, as chosen. ';
      return `${why}Only WebTransport crossed the lossy path; WebSocket and long-polling ran unimpaired (the relay cannot drop TCP segments).`;
    },
  });
  state.server = panel.state;

  append(
    root,
    h('div', { class: 'page-head' }, h('h2', {}, 'Head-of-line blocking'), h('p', { class: 'lead' }, 'Independent flows sharing one connection. Does a delay on one flow hold up the others?')),
    note(
      'info',
      h('strong', {}, 'What this page can show. '),
      'Measured here, from this browser over loopback, with no packet loss: blocking behind a large message. On an ordered lane (a TCP connection, or one QUIC stream) every flow waits for it; on WebTransport channels only flow 1’s channel does; datagrams never wait. ',
      'Blocking caused by ',
      h('em', {}, 'packet loss'),
      ' needs real loss on the path: ',
      h('strong', {}, 'Run on the server'),
      ' below (network namespaces + nftables random drop when the server runs as root, else a UDP relay), or run ',
      h('code', {}, 'npm run experiment -- hol'),
      ' and open its JSON there.',
    ),
    card(
      'Experiment',
      undefined,
      h('div', { class: 'chips' }, ...picks.map((p) => p.element)),
      h('div', { class: 'form-grid' }, field('Rate per flow', rate, 'messages/s'), field('Bulk message', bulk, 'KiB, on flow 1 (0: none)'), field('Bulk every', every, 'ms'), field('Duration', duration, 'seconds per transport')),
      h('div', { class: 'actions' }, run, status),
    ),
    results,
    card(
      'Under packet loss',
      'run on the server (real loss on a namespace path or a UDP relay), or open the JSON of npm run experiment -- hol',
      panel.element,
      h('div', { class: 'actions' }, jsonFileButton('Open experiment JSON', 'hol-file', (text) => showExperiment(parseHolResult(text)))),
      experiment,
    ),
  );

  run.addEventListener('click', async () => {
    abort = new AbortController();
    state.state = 'running';
    state.runs = [];
    results.replaceChildren();
    run.disabled = true;
    const config: HolConfig = {
      ratePerFlow: Math.min(500, Math.max(1, Number(rate.value))),
      bulkBytes: Math.min(1900, Math.max(0, Number(bulk.value))) * 1024,
      bulkEveryMs: Math.max(100, Number(every.value)),
      durationMs: Math.min(30, Math.max(0.3, Number(duration.value))) * 1000,
    };
    const chosen = picks.filter((p) => p.input.checked && !p.input.disabled).map((p) => p.v);
    for (const [i, v] of chosen.entries()) {
      if (abort.signal.aborted) break;
      status.textContent = `Running ${v.label} (${i + 1}/${chosen.length})…`;
      const result = await runHolLive(v, config, abort.signal);
      state.runs.push(result);
      renderHolRun(results, result);
    }
    status.textContent = `Done: ${state.runs.length} run${state.runs.length === 1 ? '' : 's'}.`;
    state.state = 'done';
    run.disabled = false;
  });
  return () => {
    abort?.abort();
    panel.dispose();
  };
}
