/**
 * Backpressure: a fast sender on this page and a deliberately slow consumer in a worker, on the
 * same transport. Sampled every 100 ms: the sender's client-side queue (`connection.queued`), the
 * server's queue towards the consumer and its drop counter (`/lab/clients/:id`), and each
 * delivery's latency. The server's slow-consumer policy is the one it was started with.
 * Every policy side by side: the server runs the experiment runner for this page ("Run on the
 * server"), or `npm run experiment -- backpressure` writes JSON that opens here; both are drawn by
 * renderBackpressureExperiment.
 */
import type { BackpressureResult } from '../../../benchmarks/experiments/backpressure.ts';
import { series, setData, xyChart, type Point } from '../charts.ts';
import { startConsumer, type ConsumerCommand, type ConsumerReport } from '../consumer.ts';
import type { TransportName } from '../../../transports/browser-client.ts';
import { connectClient, labState, serverView, unavailable, variant, VARIANTS, type ServerInfo } from '../lab.ts';
import { openLoop } from '../runner.ts';
import { serverRunPanel, type ExperimentCatalog, type ExperimentEvent } from '../server-run.ts';
import { decimate, formatMs, nowMs, rateSeries, stampPayload, summarizeLatencies } from '../stats.ts';
import { append, card, chartCard, field, formatBytes, formatNumber, h, jsonFileButton, note, numberInput, parseJson, select, sleep, table, takeawaysCard } from '../ui.ts';

/** One 100 ms sample of the queues. */
export interface QueueSample {
  t: number;
  senderQueuedBytes: number;
  serverQueuedBytes: number | null;
  serverDropped: number | null;
  /** Sent but neither delivered nor in either queue: in sockets, TCP/QUIC buffers, the browser. */
  elsewhereBytes: number;
}

/** A run as the page charts it (from the browser now; from `npm run experiment` later). */
export interface BackpressureRun {
  transport: string;
  source: 'browser loopback' | 'experiment';
  /** The consumer ran on this page rather than in a worker (WebRTC: workers have no RTCPeerConnection). */
  consumerOnPage: boolean;
  sent: number;
  sentTimes: number[];
  deliveries: { t: number; latencyMs: number }[];
  queue: QueueSample[];
  closed?: { code: number; reason: string };
  error?: string;
}

interface Config {
  transport: string;
  rate: number;
  size: number;
  costMs: number;
  durationMs: number;
}

/** The slow consumer: in a worker, or on this page for WebRTC (workers have no RTCPeerConnection). */
function consumerFor(transport: TransportName, onReport: (report: ConsumerReport) => void): { command(message: ConsumerCommand): void; dispose(): void } {
  if (transport === 'webrtc') {
    let consumer: { stop(): void } | undefined;
    return {
      command: (message) => (message.type === 'start' ? (consumer ??= startConsumer(message.transport, message.costMs, onReport)) : consumer?.stop()),
      dispose: () => undefined,
    };
  }
  const worker = new Worker(new URL('../consumer-worker.ts', import.meta.url), { type: 'module' });
  worker.onmessage = (event: MessageEvent<ConsumerReport>) => onReport(event.data);
  return { command: (message) => worker.postMessage(message), dispose: () => worker.terminate() };
}

/** Longest wait for the consumer's last batch after `stop`. */
const CONSUMER_STOP_TIMEOUT_MS = 1_000;

async function runLive(config: Config, signal: AbortSignal, onUpdate: (run: BackpressureRun) => void): Promise<BackpressureRun> {
  const v = variant(config.transport);
  const run: BackpressureRun = { transport: v.label, source: 'browser loopback', consumerOnPage: v.transport === 'webrtc', sent: 0, sentTimes: [], deliveries: [], queue: [] };
  const start = nowMs();
  let ready: { resolve: (id: string) => void; reject: (error: Error) => void } | undefined;
  let stopped: () => void = () => undefined;
  const consumer = consumerFor(v.transport, (report) => {
    if (report.type === 'ready') ready?.resolve(report.id);
    else if (report.type === 'error') ready?.reject(new Error(report.message));
    else if (report.type === 'batch') for (const [sentAt, arrived] of report.received) run.deliveries.push({ t: (arrived - start) / 1000, latencyMs: arrived - sentAt });
    else if (report.type === 'closed') run.closed = { code: report.code, reason: report.reason };
    else stopped();
  });
  let producer;
  try {
    const consumerId = await new Promise<string>((resolve, reject) => {
      ready = { resolve, reject };
      consumer.command({ type: 'start', transport: v.transport, costMs: config.costMs });
    });
    producer = await connectClient(v.transport);
    const sender = producer;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const view = await serverView(consumerId);
        const senderQueuedBytes = sender.connection?.queued.bytes ?? 0;
        const serverQueuedBytes = view?.queued.bytes ?? null;
        const serverDropped = view?.stats.dropped ?? null;
        const outstanding = (run.sentTimes.length - run.deliveries.length - (serverDropped ?? 0)) * config.size;
        const elsewhereBytes = Math.max(0, outstanding - senderQueuedBytes - (serverQueuedBytes ?? 0));
        run.queue.push({ t: (nowMs() - start) / 1000, senderQueuedBytes, serverQueuedBytes, serverDropped, elsewhereBytes });
        onUpdate(run);
        await sleep(100);
      }
    })();
    run.sent = await openLoop(config.rate, config.durationMs, signal, () => {
      run.sentTimes.push((nowMs() - start) / 1000);
      sender.send(consumerId, stampPayload(config.size, nowMs(), run.sentTimes.length, 0), { lane: v.lane(0, 0) }).catch(() => undefined);
    });
    // Let the consumer work through the backlog for a while: the queues drain (or it was cut off).
    const deadline = nowMs() + 3_000;
    while (!signal.aborted && !run.closed && run.deliveries.length < run.sent && nowMs() < deadline) await sleep(100);
    sampling = false;
    await sampler;
  } catch (error) {
    run.error = (error as Error).message;
  } finally {
    // The consumer's last batch comes before its `stopped` report.
    const last = new Promise<void>((resolve) => {
      stopped = resolve;
      setTimeout(resolve, CONSUMER_STOP_TIMEOUT_MS);
    });
    consumer.command({ type: 'stop' });
    producer?.close();
    await last;
    consumer.dispose();
  }
  return run;
}

/** Checks that a file is a result of `npm run experiment -- backpressure`. */
export function parseBackpressureResult(text: string): BackpressureResult {
  const value = parseJson(text) as Partial<BackpressureResult>;
  if (value?.experiment !== 'backpressure' || !Array.isArray(value.runs)) throw new Error('not a backpressure experiment result (npm run experiment -- backpressure --json FILE)');
  return value as BackpressureResult;
}

/** Draws an experiment: every policy × transport, queue and drops over time, and the outcome table. */
export function renderBackpressureExperiment(container: HTMLElement, result: BackpressureResult): void {
  const s = result.settings;
  const queue = chartCard('Server queue towards the consumer', `per transport and policy · high-water ${formatBytes(s.highWaterMark)}, limit ${formatBytes(s.maxQueuedBytes)}`);
  const drops = chartCard('Dropped or not queued', 'cumulative messages the policy discarded or refused');
  const rows = result.runs.map((r) => [
    r.transport,
    r.policy,
    formatNumber(r.published),
    formatNumber(r.received),
    formatNumber(r.dropped),
    formatNumber(r.notQueued),
    formatBytes(r.maxQueuedBytes),
    formatMs(r.latency.p50 / 1000),
    formatMs(r.latency.max / 1000),
    r.serverClose ? `${r.serverClose.code} ${r.serverClose.reason}` : '—',
    r.error ? h('span', { class: 'bad' }, r.error) : '',
  ]);
  append(
    container,
    note('info', `Experiment of ${result.startedAt}: producer ${formatNumber(s.producerRate)} msg/s × ${formatBytes(s.messageSize)}, consumer ${s.consumerWorkMs} ms per message, ${s.durationMs / 1000} s.`),
    h('div', { class: 'grid-2' }, queue.element, drops.element),
    h('div', { class: 'table-wrap' }, table(['transport', 'policy', 'published', 'received', 'dropped', 'not queued', 'peak queue', 'latency p50', 'max', 'server closed', ''], rows, { 'data-testid': 'bp-experiment-table' })),
    experimentTakeaways(result),
  );
  const label = (r: BackpressureResult['runs'][number]) => `${r.transport} · ${r.policy}`;
  // Up to 3 transports × 4 policies on one chart: colour says the policy, the dash the transport,
  // so no two lines look alike (the palette alone would repeat after 8).
  const policies = [...new Set(result.runs.map((r) => r.policy))];
  const transports = [...new Set(result.runs.map((r) => r.transport))];
  const DASHES = [[], [6, 4], [2, 3]];
  const style = (r: BackpressureResult['runs'][number]) => ({ borderDash: DASHES[transports.indexOf(r.transport) % DASHES.length]! });
  setData(
    xyChart('bp-exp-queue', queue.canvas, { x: { title: 'seconds' }, y: { title: 'queued', min: 0, bytes: true }, line: true }),
    result.runs.map((r) => series(label(r), r.timeline.map((p): Point => ({ x: p.t / 1000, y: p.queuedBytes })), policies.indexOf(r.policy), style(r))),
  );
  setData(
    xyChart('bp-exp-drops', drops.canvas, { x: { title: 'seconds' }, y: { title: 'messages', min: 0 }, line: true }),
    result.runs.map((r) => series(label(r), r.timeline.map((p): Point => ({ x: p.t / 1000, y: p.dropped + p.notQueued })), policies.indexOf(r.policy), style(r))),
  );
}

/** What a run here shows, from its own figures: where the backlog went, what the policy did, what to choose. */
export function liveTakeaways(r: BackpressureRun, config: { rate: number; costMs: number }): HTMLElement {
  const lines: string[] = [];
  const capacity = config.costMs > 0 ? 1000 / config.costMs : Infinity;
  const seconds = Math.max(0.001, r.sentTimes.at(-1) ?? 0);
  const sentRate = r.sent / seconds;
  const peakServer = Math.max(0, ...r.queue.map((s) => s.serverQueuedBytes ?? 0));
  const peakSender = Math.max(0, ...r.queue.map((s) => s.senderQueuedBytes));
  const peakElsewhere = Math.max(0, ...r.queue.map((s) => s.elsewhereBytes));
  const dropped = Math.max(0, ...r.queue.map((s) => s.serverDropped ?? 0));
  const latencies = r.deliveries.map((d) => d.latencyMs);
  const tenth = Math.max(1, Math.floor(latencies.length / 10));
  const early = summarizeLatencies(latencies.slice(0, tenth)).p50;
  const late = summarizeLatencies(latencies.slice(-tenth)).p50;
  if (r.error) lines.push(`The run failed (${r.error}): nothing to conclude (inconclusive).`);
  else if (sentRate < capacity * 0.9) lines.push(`The producer sent ${formatNumber(sentRate)} msg/s and the consumer could take about ${formatNumber(capacity)}: it kept up, so there was no backlog to show (inconclusive about backpressure). Send faster or raise the consumer cost.`);
  else {
    const places = [
      ['the server’s queue towards the consumer', peakServer],
      ['the sender’s own client', peakSender],
      ['sockets and the browser (TCP/QUIC/SCTP buffers, undelivered events)', peakElsewhere],
    ] as const;
    const [where, bytes] = places.reduce((a, b) => (b[1] > a[1] ? b : a));
    lines.push(`The producer sent ${formatNumber(sentRate)} msg/s to a consumer that takes about ${formatNumber(capacity)}: the backlog peaked in ${where} (${formatBytes(bytes)}), and delivery latency went from ${formatMs(early)} (first tenth) to ${formatMs(late)} (last tenth). A queue turns a rate mismatch into delay.`);
    if (r.consumerOnPage)
      lines.push(`Caveat: WebRTC’s consumer shared this page’s thread with the producer and the sampler, so while it burned CPU the producer’s client could not hand its queue to the data channel either. The backlog shows where the busy page left it (server queue peak ${formatBytes(peakServer)}, sender client ${formatBytes(peakSender)}), not only where the network would: inconclusive about where a slow WebRTC reader pushes back.`);
  }
  if (r.closed) lines.push(`The server cut the consumer off (${r.closed.code} ${r.closed.reason}): its queue limit held, and the reader must reconnect and resync. Right for ordered state updates, where a gap is worse than a reconnect.`);
  else if (dropped > 0) lines.push(`The server dropped ${formatNumber(dropped)} messages to keep its queue bounded: right for latest-value telemetry (a newer value replaces a dropped one), wrong for ordered state updates.`);
  else if (!r.error && sentRate >= capacity * 0.9) lines.push('Nothing was dropped or cut off in this run: the backlog stayed under the server’s limit, so every message arrived, late. Run longer to see the policy act.');
  return takeawaysCard('bp-takeaways', 'What this run shows', lines);
}

/** What an experiment's runs show, per policy: what each kept bounded and what it cost. */
export function experimentTakeaways(result: BackpressureResult): HTMLElement {
  const lines: string[] = [];
  const limit = result.settings.maxQueuedBytes;
  const ok = result.runs.filter((r) => !r.error);
  for (const policy of [...new Set(ok.map((r) => r.policy))]) {
    const runs = ok.filter((r) => r.policy === policy);
    const bounded = runs.every((r) => r.maxQueuedBytes <= limit * 1.1);
    const describe = runs.map((r) => `${r.transport}: ${formatNumber(r.received)} of ${formatNumber(r.published)} received, peak queue ${formatBytes(r.maxQueuedBytes)}, p50 ${formatMs(r.latency.p50 / 1000)}${r.serverClose ? `, closed ${r.serverClose.code}` : ''}`).join('; ');
    const use = { wait: 'flows that must not lose data and whose producer can slow down (sends are refused while the queue is full)', 'drop-oldest': 'latest-value telemetry (the newest value survives)', 'drop-newest': 'little: the reader keeps old data while new data is lost', disconnect: 'ordered state updates (a reconnect and resync beats a silent gap)' }[policy];
    lines.push(`${policy}: ${describe}. ${bounded ? 'Server memory stayed within the limit' : 'The queue went past the limit'}; use for ${use}.`);
  }
  if (ok.length === 0) lines.push('No run of this result finished without an error: nothing to conclude (inconclusive).');
  const backlog = ok.filter((r) => r.received < r.published);
  if (ok.length > 0 && backlog.length === 0) lines.push('Every consumer kept up with its producer in this result: no policy had anything to do (inconclusive about backpressure).');
  return takeawaysCard('bp-experiment-takeaways', 'What this result shows', lines);
}

/** The server-run options: consumer transports, policies, producing time per run. */
function serverRunControls(catalog: ExperimentCatalog): { element: HTMLElement; options: () => Record<string, unknown> } {
  const { transports, policies, defaults } = catalog.backpressure;
  const chips = (name: string, values: readonly string[]) => {
    const inputs = values.map((value) => h('input', { type: 'checkbox', name, value, checked: true }));
    return { inputs, element: h('div', { class: 'chips' }, ...inputs.map((input) => h('label', { class: 'chip' }, input, h('span', {}, input.value)))) };
  };
  const transportPicks = chips('srv-transport', transports);
  const policyPicks = chips('srv-policy', policies);
  const maxSeconds = (catalog.limits.backpressureRunMs - defaults.drainMs) / 1000;
  const duration = numberInput(defaults.durationMs / 1000, { name: 'srv-duration', min: 0.2, max: maxSeconds, step: 0.1 });
  const element = h(
    'div',
    {},
    transportPicks.element,
    policyPicks.element,
    h('div', { class: 'form-grid' }, field('Duration', duration, `seconds of producing per run (≤ ${maxSeconds}), then up to ${defaults.drainMs / 1000} s of draining`)),
  );
  const checked = (inputs: HTMLInputElement[]) => inputs.filter((input) => input.checked).map((input) => input.value);
  return { element, options: () => ({ transports: checked(transportPicks.inputs), policies: checked(policyPicks.inputs), durationMs: Math.round(Number(duration.value) * 1000) }) };
}

function describeBackpressureEvent(event: ExperimentEvent): string | null {
  if (event.type === 'run-start') return `Running ${event.transport} · ${event.policy} (${event.index + 1}/${event.of})…`;
  if (event.type === 'sample') {
    const { t, queuedBytes, received, dropped, notQueued } = event.sample;
    return `${event.transport} · ${event.policy} at ${(t / 1000).toFixed(1)} s: server queue ${formatBytes(queuedBytes)}, ${formatNumber(received)} received, ${formatNumber(dropped + notQueued)} dropped or not queued`;
  }
  return null;
}

export function renderBackpressure(root: HTMLElement, server: ServerInfo): () => void {
  const state = { state: 'idle' as 'idle' | 'running' | 'done', run: undefined as BackpressureRun | undefined, experiment: 0, server: undefined as unknown };
  labState.backpressure = state;
  let abort: AbortController | undefined;
  const options = VARIANTS.filter((v) => v.kind !== 'channels').map((v) => ({ value: v.key, label: unavailable(v, server) ? `${v.label} (unavailable)` : v.label }));
  const transport = select(options, 'websocket', { name: 'transport' });
  const rate = numberInput(4000, { name: 'rate', min: 10, max: 20000 });
  const size = numberInput(1024, { name: 'size', min: 16, max: 65536 });
  const cost = numberInput(1, { name: 'cost', min: 0, max: 50, step: 0.1 });
  const duration = numberInput(3, { name: 'duration', min: 0.5, max: 30, step: 0.1 });
  const run = h('button', { class: 'primary', id: 'run' }, 'Run');
  const status = h('span', { class: 'muted' }, 'The consumer can take 1000 / cost messages per second; send faster than that.');
  const queueCard = chartCard('Queue depth', 'payload bytes waiting: in the sender’s client, in the server towards the consumer, and the rest of what was sent but not yet handled');
  const latencyCard = chartCard('Delivery latency', 'send → handled by the slow consumer');
  const rateCard = chartCard('Sent vs delivered', 'messages per second, 250 ms buckets');
  const dropCard = chartCard('Drops', 'messages the server’s slow-consumer policy dropped (cumulative)');
  const summary = h('div', { id: 'bp-summary' });
  const experiment = h('div', { id: 'bp-experiment' });
  // A result opened from a file and one the server just ran are drawn alike.
  const showExperiment = (result: BackpressureResult) => {
    experiment.replaceChildren();
    renderBackpressureExperiment(experiment, result);
    state.experiment = result.runs.length;
  };
  const panel = serverRunPanel<BackpressureResult>({
    kind: 'backpressure',
    label: 'Run on the server',
    controls: serverRunControls,
    describe: describeBackpressureEvent,
    show: showExperiment,
  });
  state.server = panel.state;

  append(
    root,
    h('div', { class: 'page-head' }, h('h2', {}, 'Backpressure'), h('p', { class: 'lead' }, 'A producer that sends faster than its consumer can read. Where does the backlog go, and what happens when it hits a limit?')),
    note(
      'info',
      'The consumer runs in a worker that burns CPU per message, so it really stops reading: the browser’s socket, the TCP window or QUIC credit, then the server’s per-connection queue fill up. The server applies the policy it was started with (default: ',
      h('code', {}, 'disconnect'),
      ' at 16 MiB queued, close code 4008). Every policy side by side, each with its own server process: ',
      h('strong', {}, 'Run on the server'),
      ' at the bottom of this page, or ',
      h('code', {}, 'npm run experiment -- backpressure'),
      '.',
    ),
    card('Experiment', undefined, h('div', { class: 'form-grid' }, field('Transport', transport), field('Send rate', rate, 'messages/s'), field('Message size', size, 'bytes'), field('Consumer cost', cost, 'ms of CPU per message'), field('Duration', duration, 'seconds of sending')), h('div', { class: 'actions' }, run, status)),
    card('Outcome', undefined, summary),
    h('div', { class: 'grid-2' }, queueCard.element, latencyCard.element, rateCard.element, dropCard.element),
    card(
      'Every policy, from the experiment runner',
      'run on the server, or open the JSON of npm run experiment -- backpressure (server per policy, consumer in its own process)',
      panel.element,
      h('div', { class: 'actions' }, jsonFileButton('Open experiment JSON', 'bp-file', (text) => showExperiment(parseBackpressureResult(text)))),
      experiment,
    ),
  );
  const charts = {
    queue: xyChart('bp-queue', queueCard.canvas, { x: { title: 'seconds' }, y: { title: 'queued', min: 0, bytes: true }, line: true }),
    latency: xyChart('bp-latency', latencyCard.canvas, { x: { title: 'seconds (arrival)' }, y: { title: 'latency (ms)', log: true } }),
    rate: xyChart('bp-rate', rateCard.canvas, { x: { title: 'seconds' }, y: { title: 'messages/s' }, line: true }),
    drops: xyChart('bp-drops', dropCard.canvas, { x: { title: 'seconds' }, y: { title: 'messages dropped', min: 0 }, line: true }),
  };

  function draw(r: BackpressureRun): void {
    const q = (pick: (s: QueueSample) => number | null) => r.queue.flatMap((s): Point[] => (pick(s) === null ? [] : [{ x: s.t, y: pick(s)! }]));
    setData(charts.queue, [
      series('server queue → consumer', q((s) => s.serverQueuedBytes), 1, { fill: 'origin', backgroundColor: '#e8762c33' }),
      series('sender client queue', q((s) => s.senderQueuedBytes), 0),
      series('elsewhere: sockets, TCP/QUIC, browser', q((s) => s.elsewhereBytes), 6, { borderDash: [5, 4] }),
    ]);
    setData(charts.latency, [series('latency', decimate(r.deliveries, 2_500).map((d) => ({ x: d.t, y: Math.max(d.latencyMs, 0.001) })), 4)]);
    const until = Math.max(0.25, r.queue.at(-1)?.t ?? 0);
    setData(charts.rate, [series('sent', rateSeries(r.sentTimes, 250, until), 0), series('delivered', rateSeries(r.deliveries.map((d) => d.t), 250, until), 2)]);
    setData(charts.drops, [series('dropped by the server', q((s) => s.serverDropped), 3, { stepped: true })]);
  }

  function describe(r: BackpressureRun, config: Config): void {
    const latency = summarizeLatencies(r.deliveries.map((d) => d.latencyMs));
    const peak = Math.max(0, ...r.queue.map((s) => s.serverQueuedBytes ?? 0));
    const dropped = Math.max(0, ...r.queue.map((s) => s.serverDropped ?? 0));
    summary.replaceChildren(
      r.error ? note('error', r.error) : '',
      r.closed ? note('warn', `The server closed the consumer: ${r.closed.code} ${r.closed.reason}`) : '',
      h('div', { class: 'table-wrap' }, table(
        ['transport', 'sent', 'delivered', 'dropped (server)', 'not delivered', 'peak server queue', 'peak elsewhere', 'latency p50', 'p99', 'max'],
        [[r.transport, formatNumber(r.sent), formatNumber(r.deliveries.length), formatNumber(dropped), formatNumber(Math.max(0, r.sent - r.deliveries.length)), formatBytes(peak), formatBytes(Math.max(0, ...r.queue.map((s) => s.elsewhereBytes))), formatMs(latency.p50), formatMs(latency.p99), formatMs(latency.max)]],
        { 'data-testid': 'bp-table' },
      )),
      r.consumerOnPage ? note('info', 'WebRTC’s consumer ran on this page (workers have no RTCPeerConnection), so the page was busy while it consumed and the charts updated between messages.') : '',
      liveTakeaways(r, config),
    );
  }

  run.addEventListener('click', async () => {
    abort = new AbortController();
    state.state = 'running';
    run.disabled = true;
    summary.replaceChildren(h('p', { class: 'empty' }, 'Running…'));
    const config: Config = {
      transport: transport.value,
      rate: Math.min(20_000, Math.max(10, Number(rate.value))),
      size: Math.min(65_536, Math.max(16, Number(size.value))),
      costMs: Math.min(50, Math.max(0, Number(cost.value))),
      durationMs: Math.min(30, Math.max(0.5, Number(duration.value))) * 1000,
    };
    let last = 0;
    const result = await runLive(config, abort.signal, (r) => {
      if (performance.now() - last < 250) return;
      last = performance.now();
      draw(r);
    });
    draw(result);
    describe(result, config);
    state.run = result;
    state.state = 'done';
    run.disabled = false;
  });
  summary.append(h('p', { class: 'empty' }, 'No run yet.'));
  return () => {
    abort?.abort();
    panel.dispose();
  };
}
