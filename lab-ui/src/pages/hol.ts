/**
 * Head-of-line blocking: four timestamped flows share one connection per transport/lane, and
 * flow 1 also sends a large message now and then. Without packet loss (loopback, from the browser)
 * what shows is blocking *behind a big message*: on one ordered lane (TCP, or one QUIC stream)
 * every flow waits for it; with WebTransport channels only flow 1's own channel does; datagrams
 * never wait. Loss-induced blocking needs the namespace experiments: the server runs them for this
 * page ("Run on the server"), or `npm run experiment -- hol` writes JSON that opens here; both are
 * drawn by renderHolExperiment (per-flow percentiles and shared stalls). Where the live impaired
 * path cannot run, the page says why and draws a result recorded with the experiment (shipped in
 * lab-ui/src/recorded/). Every run and result ends with takeaways computed from its figures.
 */
import type { HolResult } from '../../../benchmarks/experiments/hol.ts';
import { barChart, series, setData, xyChart, type Point } from '../charts.ts';
import { connectClient, labState, unavailable, variant, VARIANTS, type LaneKind, type ServerInfo, type Variant } from '../lab.ts';
import { openLoop } from '../runner.ts';
import { currentNetwork, networkChooser, networkNote, networkOffer } from '../network.ts';
import { serverRunPanel, type ExperimentCatalog, type ExperimentEvent } from '../server-run.ts';
import { decimate, formatMs, nowMs, readStamp, stampPayload, summarizeLatencies } from '../stats.ts';
import { append, card, chartCard, field, formatNumber, h, jsonFileButton, note, numberInput, parseJson, select, sleep, table, takeawaysCard } from '../ui.ts';

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
  /** 'browser': run from this page, over `network` (loopback, or the live impaired network). */
  source: 'browser' | 'experiment';
  network?: string;
  flows: FlowSeries[];
  error?: string;
}

const FLOWS = 4;
const BULK_FLOW = FLOWS; // flow index the bulk messages carry

/**
 * A head-of-line result recorded on a Linux machine as root, shipped with the lab for where the
 * live impaired path cannot run. Made by RECORDED_HOL_COMMAND; re-record with the same command.
 */
const RECORDED_HOL_URL = new URL('../recorded/hol-loss2-delay20.json', import.meta.url);
export const RECORDED_HOL_COMMAND = 'npm run experiment -- hol --loss 2 --delay 20 --json lab-ui/src/recorded/hol-loss2-delay20.json';

interface HolConfig {
  ratePerFlow: number;
  bulkBytes: number;
  bulkEveryMs: number;
  durationMs: number;
}

/** Runs the four flows (and flow 1's bulk messages) over one connection of `v`, echoed by the server. */
async function runHolLive(v: Variant, config: HolConfig, signal: AbortSignal): Promise<HolRun> {
  const flows: FlowSeries[] = [...Array.from({ length: FLOWS }, (_, i) => ({ name: `flow ${i + 1}`, points: [], sent: 0 })), { name: `flow 1 bulk (${Math.round(config.bulkBytes / 1024)} KiB)`, points: [], sent: 0 }];
  const run: HolRun = { variant: v.key, label: v.label, source: 'browser', network: currentNetwork() ?? 'loopback', flows };
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
    const bulkLane = v.kind === 'unreliable' ? 'reliable' : v.lane(0, 0);
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
export function renderHolRun(container: HTMLElement, run: HolRun, chartId = `hol-${run.variant}`): void {
  const chart = chartCard(run.label, `${run.source === 'browser' ? `this browser over ${run.network}` : 'experiment'}: each dot is one message, at its send time`);
  chart.canvas.parentElement!.classList.add('short');
  const rows = run.flows.map((flow, i) => {
    const stats = summarizeLatencies(flow.points.map((p) => p.latencyMs));
    const lost = flow.sent - flow.points.length;
    return [h('span', { class: 'swatch-label' }, h('i', { class: 'swatch', style: `background: var(--c${i})` }), flow.name), formatNumber(flow.points.length), lost > 0 ? h('span', { class: 'warn-text' }, formatNumber(lost)) : '0', msCell(stats.p50), msCell(stats.p99), msCell(stats.max)];
  });
  append(chart.element, run.error ? note('error', run.error) : null, h('div', { class: 'table-wrap' }, table(['flow', 'delivered', 'lost', 'p50 ms', 'p99 ms', 'max ms'], rows)));
  container.append(chart.element);
  const xy = xyChart(chartId, chart.canvas, { x: { title: 'send time (s)' }, y: { title: 'latency (ms)', log: true } });
  setData(
    xy,
    run.flows.map((flow, i) => series(flow.name, decimate(flow.points, 2_000).map((p): Point => ({ x: p.t, y: Math.max(p.latencyMs, 0.001) })), i, i === BULK_FLOW ? { pointRadius: 4, pointStyle: 'rectRot' } : {})),
  );
}

/**
 * Shared stalls of a run, as the experiment counts them (benchmarks/experiments/analysis.ts): a
 * stall is a run of one flow's messages later than the median + 20 ms; it is shared when another
 * flow was stalled at the same time. The bulk flow is left out (it is the cause, not a victim).
 */
export function runStalls(run: HolRun): { episodes: number; shared: number; sharedFraction: number | null } {
  const flows = run.flows.slice(0, FLOWS);
  const all = flows.flatMap((f) => f.points.map((p) => p.latencyMs)).sort((a, b) => a - b);
  const threshold = (all[Math.floor(all.length / 2)] ?? 0) + 20;
  const episodes: { flow: number; start: number; end: number }[] = [];
  flows.forEach((flow, i) => {
    let current: { flow: number; start: number; end: number } | undefined;
    for (const p of [...flow.points].sort((a, b) => a.t - b.t)) {
      if (p.latencyMs <= threshold) {
        current = undefined;
        continue;
      }
      const start = p.t * 1000 + threshold;
      const end = p.t * 1000 + p.latencyMs;
      if (current) current.end = Math.max(current.end, end);
      else episodes.push((current = { flow: i, start, end }));
    }
  });
  const shared = episodes.filter((e) => episodes.some((o) => o.flow !== e.flow && o.start <= e.end && e.start <= o.end)).length;
  return { episodes: episodes.length, shared, sharedFraction: episodes.length ? shared / episodes.length : null };
}

/** A latency in a table whose header says "ms". */
const msCell = (ms: number) => formatNumber(ms, ms < 10 ? 2 : 1);

const percent = (x: number | null) => (x === null ? '—' : `${Math.round(x * 100)} %`);

/** What to choose for what, drawn from the runs measured on this page. */
export function liveTakeaways(runs: readonly HolRun[]): HTMLElement {
  const measured = runs.filter((r) => !r.error).map((r) => ({ r, v: variant(r.variant) }));
  const network = runs[0]?.network ?? 'loopback';
  const lines: string[] = [];
  // One ordered lane to compare channels with: WebSocket first (one TCP connection), else any.
  const oneLane = measured.filter((m) => m.v.kind === 'one-lane');
  const one = oneLane.find((m) => m.v.key === 'websocket') ?? oneLane[0];
  const channels = measured.filter((m) => m.v.kind === 'channels');
  const delivered = (r: HolRun) => r.flows.reduce((n, f) => n + f.points.length, 0);
  const sent = (r: HolRun) => r.flows.reduce((n, f) => n + f.sent, 0);
  if (network === 'loopback') {
    const shares = [...oneLane, ...channels].map((m) => `${percent(runStalls(m.r).sharedFraction)} on ${m.v.label}`);
    lines.push(`On loopback nothing is lost, so these runs cannot show head-of-line blocking after a packet loss: inconclusive about loss. What they do show is blocking behind flow 1’s large message${shares.length ? ` (shared stalls: ${shares.join(', ')})` : ''}. Channels help exactly when one flow’s data is held up (a loss, a big message): reopen this page through a lossy network to see it.`);
  } else if (one && channels.length) {
    const a = runStalls(one.r);
    for (const c of channels) {
      const b = runStalls(c.r);
      const clear = a.sharedFraction !== null && b.sharedFraction !== null && a.episodes >= 5 && b.sharedFraction < a.sharedFraction - 0.15;
      lines.push(
        clear
          ? `On ${network}, ${one.v.label} stalled its flows together (${percent(a.sharedFraction)} of ${a.episodes} stalls shared) and ${c.v.label} mostly one at a time (${percent(b.sharedFraction)} of ${b.episodes}): independent feeds → channels.`
          : `On ${network}, ${one.v.label} shared ${percent(a.sharedFraction)} of ${a.episodes} stalls and ${c.v.label} ${percent(b.sharedFraction)} of ${b.episodes}: inconclusive this time (too few losses, or this machine’s scheduling hiccups stalled every flow at once). Run longer, or open the recorded experiment.`,
      );
    }
  } else lines.push(`Run ${one ? 'a channels variant (WebTransport or WebRTC)' : 'WebSocket or a reliable lane'} too to compare one ordered lane with channels.`);
  if (one) lines.push(`Ordered state updates (each depends on the one before) → one reliable lane: ${one.v.label} delivered ${delivered(one.r)} of ${sent(one.r)} messages, in order; a loss delays what follows, it never reorders.`);
  for (const d of measured.filter((m) => m.v.kind === 'unreliable')) {
    const lost = sent(d.r) - delivered(d.r);
    const stalls = runStalls(d.r);
    lines.push(`Latest-value telemetry (a newer value replaces a lost one) → ${d.v.label}: ${lost} of ${sent(d.r)} lost (${percent(sent(d.r) ? lost / sent(d.r) : null)}), ${stalls.episodes} stall${stalls.episodes === 1 ? '' : 's'}; nothing waits for a lost message.`);
  }
  return takeawaysCard('hol-takeaways', 'What this run shows', lines);
}

/** How an experiment variant carries its flows, from its name (`…-channels`, `…-unreliable`, else one lane). */
export function experimentLaneKind(variantName: string): LaneKind {
  return variantName.endsWith('channels') ? 'channels' : variantName.endsWith('unreliable') ? 'unreliable' : 'one-lane';
}

/** What to choose for what, drawn from an experiment's result (flows held per loss, shared stalls, datagram loss). */
export function experimentTakeaways(result: HolResult, id = 'hol-experiment-takeaways'): HTMLElement {
  const path = result.impairment;
  const variants = result.variants.filter((v) => !v.error && v.impaired);
  const lines: string[] = [];
  // The one-lane baseline: WebSocket (one TCP connection) when it crossed the lossy path, else another.
  const oneLane = variants.filter((v) => experimentLaneKind(v.variant) === 'one-lane');
  const lane = oneLane.find((v) => v.variant === 'websocket') ?? oneLane[0];
  const held = (v: HolResult['variants'][number]) => v.afterLoss?.flowsHeld ?? null;
  if (path.kind === 'relay') lines.push('Only WebTransport crossed the lossy path here (UDP relay): WebSocket and long-polling cannot be compared with it in this result.');
  if (path.lossPercent === 0) lines.push('This run had no loss: any stall here is the machine’s own scheduling, and nothing can be concluded about head-of-line blocking after a loss (inconclusive by design; it is the baseline for a lossy run).');
  for (const channels of variants.filter((v) => experimentLaneKind(v.variant) === 'channels')) {
    if (!lane || path.lossPercent === 0) break;
    const [a, b] = [held(lane), held(channels)];
    if (a !== null && b !== null)
      lines.push(
        b < a - 1
          ? `Each loss stalled ${a.toFixed(1)} of ${lane.flows.length} flows on ${lane.variant} and ${b.toFixed(1)} on ${channels.variant}: independent feeds → channels.`
          : `Each loss stalled ${a.toFixed(1)} flows on ${lane.variant} and ${b.toFixed(1)} on ${channels.variant}: inconclusive (the machine’s own scheduling stalls may have hidden the difference; compare with a --loss 0 run).`,
      );
    else
      lines.push(
        (channels.stalls.sharedFraction ?? 1) < (lane.stalls.sharedFraction ?? 0) - 0.15
          ? `Shared stalls ${percent(lane.stalls.sharedFraction)} on ${lane.variant}, ${percent(channels.stalls.sharedFraction)} on ${channels.variant}: independent feeds → channels.`
          : `Shared stalls ${percent(lane.stalls.sharedFraction)} on ${lane.variant}, ${percent(channels.stalls.sharedFraction)} on ${channels.variant}: inconclusive${path.delayMs ? '' : ' (this path adds no delay, so losses are repaired too fast to stand out)'}.`,
      );
  }
  if (lane) lines.push(`Ordered state updates → one reliable lane: ${lane.variant} lost ${percent(lane.lossRate)} and kept order; a loss delays what follows (p99 ${formatMs(Math.max(...lane.flows.map((f) => f.latency.p99 / 1000)))}).`);
  for (const datagrams of variants.filter((v) => experimentLaneKind(v.variant) === 'unreliable'))
    lines.push(`Latest-value telemetry → ${datagrams.variant}: ${percent(datagrams.lossRate)} lost at ${path.lossPercent} % loss each way, ${datagrams.afterLoss ? `${datagrams.afterLoss.stalling} of ${datagrams.afterLoss.drops} losses followed by a stall (chance alone: ${percent(datagrams.afterLoss.chanceStalling)})` : `${datagrams.stalls.episodes} stalls`}.`);
  if (lines.length === 0)
    lines.push(
      variants.length === 0
        ? 'No variant of this result crossed the lossy path without an error: nothing to conclude (inconclusive).'
        : `This result holds only ${variants.map((v) => v.variant).join(', ')} over the lossy path, and no one-lane variant to compare with: inconclusive about head-of-line blocking.`,
    );
  return takeawaysCard(id, 'What this result shows', lines);
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
export function renderHolExperiment(container: HTMLElement, result: HolResult, prefix = 'hol'): void {
  const path = result.impairment;
  const kind = { tun: 'TUN forwarder between namespaces', netns: 'network namespaces + nftables (no delay)', relay: 'userspace UDP relay (WebTransport only)' }[path.kind];
  const about = note('info', h('strong', {}, `Experiment of ${result.startedAt}: `), `${kind}, ${path.lossPercent} % loss each way${path.rateMbit ? `, ${path.rateMbit} Mbit/s` : ''}${path.delayMs ? `, ${path.delayMs} ms delay each way` : ''}. ${path.note}`);
  // The path's description spans the grid; the variants' charts fill it two by two.
  about.style.gridColumn = '1 / -1';
  container.append(about);
  for (const [i, v] of result.variants.entries()) {
    const chart = chartCard(v.variant, `${v.impaired ? 'over the lossy path' : 'not impaired on this path'} · stall above ${formatNumber(v.thresholdMs, 1)} ms · shared stalls ${percent(v.stalls.sharedFraction)} (chance ${percent(v.stalls.chanceFraction)})${v.afterLoss?.flowsHeld != null ? ` · flows stalled per loss ${v.afterLoss.flowsHeld.toFixed(1)}` : ''}`);
    chart.canvas.parentElement!.classList.add('short');
    const ms = (us: number) => us / 1000;
    const rows = v.flows.map((f) => [h('span', { title: f.lane }, `flow ${f.flow + 1}`), formatNumber(f.delivered), f.lost ? h('span', { class: 'warn-text' }, formatNumber(f.lost)) : '0', msCell(ms(f.latency.p50)), msCell(ms(f.latency.p99)), msCell(ms(f.latency.max)), formatNumber(f.stalls), msCell(f.maxGapMs)]);
    const lanes = [...new Set(v.flows.map((f) => f.lane))];
    append(chart.element, v.error ? note('error', v.error) : null, h('p', { class: 'muted' }, `${lanes.length === 1 ? 'lane' : 'lanes'}: ${lanes.join(', ')}`), h('div', { class: 'table-wrap' }, table(['flow', 'delivered', 'lost', 'p50 ms', 'p99 ms', 'max ms', 'stalls', 'longest gap ms'], rows)));
    container.append(chart.element);
    setData(
      barChart(`${prefix}-exp-${i}`, chart.canvas, { x: 'flow', y: { title: 'latency (ms)', log: true } }),
      [series('p50', v.flows.map((f) => ms(f.latency.p50)), 0), series('p99', v.flows.map((f) => ms(f.latency.p99)), 1), series('max', v.flows.map((f) => ms(f.latency.max)), 3)],
      v.flows.map((f) => `flow ${f.flow + 1}`),
    );
    // The runner keeps each message's send time and latency: the same per-flow timeline as a run here.
    if (v.flows.every((f) => f.series)) renderHolRun(container, experimentTimeline(v), `${prefix}-timeline-${v.variant}`);
  }
  const takeaways = experimentTakeaways(result, `${prefix}-experiment-takeaways`);
  takeaways.style.gridColumn = '1 / -1';
  container.append(takeaways);
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
  // Empty: the runner's default (the nftables path cannot delay and says so).
  const delay = h('input', { type: 'number', name: 'srv-delay', min: 0, max: 500, placeholder: `${defaults.delayMs} (default)` });
  const path = select(
    [
      { value: 'auto', label: 'auto (TUN forwarder when root)' },
      { value: 'tun', label: 'TUN forwarder (delay + loss, TCP and UDP)' },
      { value: 'netns', label: 'namespaces + nftables (loss only, no delay)' },
      { value: 'relay', label: 'UDP relay (WebTransport only)' },
    ] as const,
    'auto',
    { name: 'srv-impairment' },
  );
  const duration = numberInput(Math.min(5, defaults.durationMs / 1000), { name: 'srv-duration', min: 1, max: catalog.limits.holDurationMs / 1000, step: 1 });
  const element = h(
    'div',
    {},
    h('div', { class: 'chips' }, ...picks.map((input) => h('label', { class: 'chip' }, input, h('span', {}, input.value)))),
    h(
      'div',
      { class: 'form-grid' },
      field('Packet loss', loss, '% each way'),
      field('Rate limit', rateMbit, 'Mbit/s each way (0: none; not on the relay)'),
      field('Delay', delay, 'ms each way (not on the nftables path)'),
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
  if (event.type === 'path') return `Path ready: ${{ tun: 'TUN forwarder', netns: 'network namespaces (loss only)', relay: 'UDP relay' }[event.impairment.kind]}, ${event.impairment.lossPercent} % loss${event.impairment.delayMs ? ` + ${event.impairment.delayMs} ms` : ''} each way.`;
  if (event.type === 'variant-start') return `Running ${event.variant} (${event.index + 1}/${event.of})…`;
  if (event.type === 'variant-done') return `${event.variant} done (${event.index + 1}/${event.of}).`;
  return null;
}

export function renderHol(root: HTMLElement, server: ServerInfo): () => void {
  const state = { state: 'idle' as 'idle' | 'running' | 'done', runs: [] as HolRun[], stalls: {} as Record<string, ReturnType<typeof runStalls>>, experiment: 0, server: undefined as unknown, recorded: { shown: false, liveUnavailable: null as string | null } };
  labState.hol = state;
  let abort: AbortController | undefined;
  const picks = VARIANTS.map((v) => {
    const why = unavailable(v, server);
    const input = h('input', { type: 'checkbox', name: 'variant', value: v.key, checked: !why, disabled: !!why });
    return { v, input, element: h('label', { class: `chip${why ? ' chip-off' : ''}`, title: why ?? v.about }, input, h('span', {}, v.label)) };
  });
  const rate = numberInput(50, { name: 'rate', min: 1, max: 500 });
  // Through a lossy network the flows' own losses are the lesson: no bulk message by default there.
  const bulk = numberInput(currentNetwork() ? 0 : 512, { name: 'bulk', min: 0, max: 1900 });
  const every = numberInput(400, { name: 'every', min: 100, max: 5000 });
  const duration = numberInput(currentNetwork() ? 5 : 2, { name: 'duration', min: 0.3, max: 30, step: 0.1 });
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
  // The recorded result: shown at once where the live impaired path cannot run, on request elsewhere.
  const recorded = h('div', { class: 'grid-2', id: 'hol-recorded' });
  const recordedWhy = h('div');
  const showRecorded = h('button', { class: 'ghost', id: 'hol-show-recorded' }, 'Show the recorded result');
  const loadRecorded = async () => {
    showRecorded.disabled = true;
    try {
      const response = await fetch(RECORDED_HOL_URL);
      if (!response.ok) throw new Error(`the recorded result did not load: ${response.status}`);
      recorded.replaceChildren();
      renderHolExperiment(recorded, parseHolResult(await response.text()), 'recorded');
      state.recorded.shown = true;
      showRecorded.hidden = true;
    } catch (error) {
      recorded.replaceChildren(note('error', (error as Error).message));
      showRecorded.disabled = false;
    }
  };
  showRecorded.addEventListener('click', () => void loadRecorded());
  if (!currentNetwork())
    networkOffer().then(
      (offer) => {
        if (!offer.available) unavailableHere(offer.reason ?? 'unknown reason');
      },
      (error: unknown) => unavailableHere((error as Error).message),
    );
  function unavailableHere(reason: string): void {
    state.recorded.liveUnavailable = reason;
    recordedWhy.replaceChildren(note('warn', h('strong', {}, 'The live impaired network cannot run here: '), `${reason}. It needs the server to run as root on Linux (network namespaces and a TUN forwarder). Below is a result recorded where it could, over the same path (2 % loss and 20 ms delay each way, TCP and QUIC alike).`));
    void loadRecorded();
  }

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
    networkNote(),
    note(
      'info',
      h('strong', {}, 'What this page can show. '),
      'From this browser, over the network chosen below: on loopback, blocking behind a large message (on one ordered lane every flow waits for it; on WebTransport channels only flow 1’s channel does; datagrams never wait). Through a lossy network, blocking after a lost packet too: one TCP connection or one QUIC stream holds every flow until the loss is repaired, channels only the flow whose data was lost. ',
      h('strong', {}, 'Run on the server'),
      ' runs the same experiment between two namespaces (',
      h('code', {}, 'npm run experiment -- hol --loss 2 --delay 20'),
      ' writes the JSON that opens there).',
    ),
    card(
      'Experiment',
      undefined,
      h('div', { class: 'chips' }, ...picks.map((p) => p.element)),
      networkChooser(),
      h('div', { class: 'form-grid' }, field('Rate per flow', rate, 'messages/s'), field('Bulk message', bulk, 'KiB, on flow 1 (0: none)'), field('Bulk every', every, 'ms'), field('Duration', duration, 'seconds per transport')),
      h('div', { class: 'actions' }, run, status),
    ),
    results,
    card(
      'Recorded under packet loss',
      'a result of the head-of-line experiment shipped with the lab, for machines where the impaired path cannot run',
      recordedWhy,
      note('info', 'Recorded with ', h('code', {}, RECORDED_HOL_COMMAND), ' as root on a shared 2-core Linux machine; its own scheduling stalls show as stalls on every variant, datagrams included. Re-run the command to record it again.'),
      h('div', { class: 'actions' }, showRecorded),
      recorded,
    ),
    card(
      'Under packet loss',
      'run on the server (delay and loss on every packet between two namespaces, or a labelled fallback), or open the JSON of npm run experiment -- hol',
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
    state.stalls = Object.fromEntries(state.runs.map((r) => [r.variant, runStalls(r)]));
    const takeaways = liveTakeaways(state.runs);
    takeaways.style.gridColumn = '1 / -1';
    results.append(takeaways);
    status.textContent = `Done: ${state.runs.length} run${state.runs.length === 1 ? '' : 's'}.`;
    state.state = 'done';
    run.disabled = false;
  });
  return () => {
    abort?.abort();
    panel.dispose();
  };
}
