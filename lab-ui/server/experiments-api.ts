/**
 * The lab's experiment runs (`/lab/experiments/...`): the server runs the real head-of-line and
 * backpressure experiments (benchmarks/experiments/) for a lab page and hands back their progress
 * and JSON result, the same result `npm run experiment` writes.
 *
 * - `POST /lab/experiments/hol` and `POST /lab/experiments/backpressure` with a JSON body of
 *   options start a run: 202 `{ id, ... }`; bad options 400, a run already going 409.
 * - `GET /lab/experiments/:id?since=N` is polled: `{ state: 'running' | 'done' | 'failed',
 *   progress: events from N on, next, result?, error? }`.
 * - `DELETE /lab/experiments/:id` stops a run.
 * - `GET /lab/experiments` says what a page may ask for (variants, transports, policies, defaults,
 *   limits) and which run is going.
 * - `GET|POST|DELETE /lab/experiments/network`: the live impaired network (live-network.ts): a
 *   second server with the lab behind the TUN forwarder; POST `{ profile }` starts (or replaces) it.
 *
 * One run at a time (they measure timing on a shared machine and the HOL one builds network
 * namespaces), each bounded by the option limits below, and stopped through its AbortSignal when
 * the server closes: the runners then end their processes and tear their paths down.
 * The runners are imported on the first request, so the server starts without loading them.
 */
import type http from 'node:http';
import type { BackpressureOptions, BackpressureResult, BackpressureSample, BackpressureTransport } from '../../benchmarks/experiments/backpressure.ts';
import type { HolImpairment, HolOptions, HolResult, HolVariant } from '../../benchmarks/experiments/hol.ts';
import type { SlowConsumerPolicy } from '../../transports/transport.ts';
import { readBody } from '../../transports/http-body.ts';

export type ExperimentKind = 'hol' | 'backpressure';

/** A progress event as the page reads it (HOL's variant results stay out: they are in the final result). */
export type ExperimentEvent =
  | { type: 'path'; impairment: HolImpairment }
  | { type: 'variant-start' | 'variant-done'; variant: HolVariant; index: number; of: number }
  | { type: 'run-start' | 'run-done'; transport: BackpressureTransport; policy: SlowConsumerPolicy; index: number; of: number }
  | { type: 'sample'; transport: BackpressureTransport; policy: SlowConsumerPolicy; sample: BackpressureSample };

export interface ExperimentError {
  code: 'ERR_EXPERIMENT_OPTIONS' | 'ERR_EXPERIMENT_BUSY' | 'ERR_NO_EXPERIMENT' | 'ERR_EXPERIMENT_FAILED' | 'ERR_EXPERIMENT_ABORTED' | 'ERR_BAD_JSON' | 'ERR_BODY_TOO_LARGE';
  message: string;
}

/** What `GET /lab/experiments/:id` answers. */
export interface ExperimentView {
  id: string;
  kind: ExperimentKind;
  state: 'running' | 'done' | 'failed';
  startedAt: string;
  /** The options the run uses, after validation. */
  options: HolRunOptions | BackpressureRunOptions;
  /** Events from `since` on; pass `next` as `since` to get only newer ones. */
  progress: ExperimentEvent[];
  next: number;
  result?: HolResult | BackpressureResult;
  error?: ExperimentError;
}

/** What `GET /lab/experiments` answers: the choices a page offers, from the runners themselves. */
export interface ExperimentCatalog {
  running: string | null;
  limits: typeof EXPERIMENT_LIMITS;
  hol: { variants: readonly HolVariant[]; defaults: { lossPercent: number; durationMs: number; delayMs: number } };
  backpressure: { transports: readonly BackpressureTransport[]; policies: readonly SlowConsumerPolicy[]; defaults: { durationMs: number; drainMs: number } };
}

/** Limits of a lab run: a page must not tie the server up for long. */
export const EXPERIMENT_LIMITS = {
  /** Per HOL variant, warm-up included. */
  holDurationMs: 20_000,
  /** Per backpressure run: producing plus draining. */
  backpressureRunMs: 10_000,
};

/** A request the API refuses: its HTTP status and stable code. */
export class ExperimentRequestError extends Error {
  override readonly name = 'ExperimentRequestError';
  constructor(
    readonly status: number,
    readonly code: ExperimentError['code'],
    message: string,
  ) {
    super(message);
  }
}

/** Invalid options for a run (400). */
function invalid(message: string): ExperimentRequestError {
  return new ExperimentRequestError(400, 'ERR_EXPERIMENT_OPTIONS', message);
}

// ——— option validation (pure) ———

export type HolRunOptions = Pick<HolOptions, 'lossPercent' | 'rateMbit' | 'delayMs' | 'flows' | 'ratePerFlow' | 'messageSize' | 'impairment'> & { variants: HolVariant[]; durationMs: number; warmupMs: number };
export type BackpressureRunOptions = Omit<BackpressureOptions, 'onSample' | 'onProgress' | 'signal' | 'transports' | 'policies'> & { transports: BackpressureTransport[]; policies: SlowConsumerPolicy[] };

interface NumberRule {
  min: number;
  max: number;
  integer?: boolean;
}

function asObject(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw invalid('the options must be a JSON object');
  return body as Record<string, unknown>;
}

/** Rejects keys the run does not know (a typo must not silently fall back to a default). */
function onlyKnown(body: Record<string, unknown>, known: readonly string[]): void {
  const unknown = Object.keys(body).filter((key) => !known.includes(key));
  if (unknown.length) throw invalid(`unknown option${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (known: ${known.join(', ')})`);
}

function readNumber(body: Record<string, unknown>, key: string, rule: NumberRule): number | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < rule.min || value > rule.max || (rule.integer && !Number.isInteger(value))) {
    throw invalid(`${key} must be ${rule.integer ? 'a whole number' : 'a number'} from ${rule.min} to ${rule.max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function readList<T extends string>(body: Record<string, unknown>, key: string, allowed: readonly T[]): T[] | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || value.length === 0) throw invalid(`${key} must be a non-empty list of ${allowed.join(', ')}`);
  for (const item of value) if (!allowed.includes(item as T)) throw invalid(`${key}: ${JSON.stringify(item)} is not one of ${allowed.join(', ')}`);
  return [...new Set(value as T[])];
}

/** Drops the keys left undefined, so the runners' defaults apply. */
function defined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

const HOL_KEYS = ['lossPercent', 'rateMbit', 'delayMs', 'variants', 'flows', 'ratePerFlow', 'messageSize', 'durationMs', 'warmupMs', 'impairment'] as const;

/**
 * A HOL run's options from a request body, checked against the lab's limits. `variants` are the
 * runner's (HOL_VARIANTS), passed in so this module need not load the runner to start.
 */
export function parseHolOptions(body: unknown, variants: readonly HolVariant[], defaults: { durationMs: number; warmupMs: number }): HolRunOptions {
  const input = asObject(body);
  onlyKnown(input, HOL_KEYS);
  const impairment = input.impairment ?? 'auto';
  if (impairment !== 'auto' && impairment !== 'tun' && impairment !== 'netns' && impairment !== 'relay') throw invalid(`impairment must be auto, tun, netns or relay, got ${JSON.stringify(impairment)}`);
  // nftables drops whole percents; the TUN forwarder and the relay take fractions.
  const lossPercent = readNumber(input, 'lossPercent', { min: 0, max: 10, integer: impairment === 'netns' });
  const durationMs = readNumber(input, 'durationMs', { min: 1_000, max: EXPERIMENT_LIMITS.holDurationMs, integer: true }) ?? Math.min(defaults.durationMs, EXPERIMENT_LIMITS.holDurationMs);
  // A short run keeps most of its time for measuring: the default warm-up is at most a fifth of it.
  const warmupMs = readNumber(input, 'warmupMs', { min: 0, max: durationMs - 500, integer: true }) ?? Math.min(defaults.warmupMs, Math.round(durationMs / 5));
  return defined({
    lossPercent,
    rateMbit: readNumber(input, 'rateMbit', { min: 0.1, max: 1_000 }),
    delayMs: readNumber(input, 'delayMs', { min: 0, max: 500, integer: true }),
    variants: readList(input, 'variants', variants) ?? [...variants],
    flows: readNumber(input, 'flows', { min: 1, max: 16, integer: true }),
    ratePerFlow: readNumber(input, 'ratePerFlow', { min: 1, max: 500, integer: true }),
    // 5 header bytes at least; at most what one datagram carries (the unreliable lane never splits).
    messageSize: readNumber(input, 'messageSize', { min: 5, max: 1_000, integer: true }),
    durationMs,
    warmupMs,
    impairment,
  });
}

const BACKPRESSURE_KEYS = ['transports', 'policies', 'producerRate', 'messageSize', 'consumerWorkMs', 'durationMs', 'drainMs', 'sampleMs', 'highWaterMark', 'maxQueuedBytes'] as const;

/** A backpressure run's options from a request body; the allowed transports and policies are the runner's. */
export function parseBackpressureOptions(
  body: unknown,
  allowed: { transports: readonly BackpressureTransport[]; policies: readonly SlowConsumerPolicy[] },
  defaults: { durationMs: number; drainMs: number; highWaterMark: number; maxQueuedBytes: number },
): BackpressureRunOptions {
  const input = asObject(body);
  onlyKnown(input, BACKPRESSURE_KEYS);
  const durationMs = readNumber(input, 'durationMs', { min: 200, max: EXPERIMENT_LIMITS.backpressureRunMs, integer: true }) ?? defaults.durationMs;
  const drainMs = readNumber(input, 'drainMs', { min: 0, max: EXPERIMENT_LIMITS.backpressureRunMs - durationMs, integer: true }) ?? Math.min(defaults.drainMs, EXPERIMENT_LIMITS.backpressureRunMs - durationMs);
  const highWaterMark = readNumber(input, 'highWaterMark', { min: 1_024, max: 16 * 1024 * 1024, integer: true });
  const maxQueuedBytes = readNumber(input, 'maxQueuedBytes', { min: highWaterMark ?? defaults.highWaterMark, max: 64 * 1024 * 1024, integer: true });
  if (highWaterMark !== undefined && maxQueuedBytes === undefined && highWaterMark > defaults.maxQueuedBytes) throw invalid(`highWaterMark must not exceed maxQueuedBytes (${defaults.maxQueuedBytes})`);
  return defined({
    transports: readList(input, 'transports', allowed.transports) ?? [...allowed.transports],
    policies: readList(input, 'policies', allowed.policies) ?? [...allowed.policies],
    producerRate: readNumber(input, 'producerRate', { min: 1, max: 5_000, integer: true }),
    // The producer stamps 12 bytes (send time, sequence) into each message.
    messageSize: readNumber(input, 'messageSize', { min: 12, max: 256 * 1024, integer: true }),
    consumerWorkMs: readNumber(input, 'consumerWorkMs', { min: 0, max: 100 }),
    durationMs,
    drainMs,
    sampleMs: readNumber(input, 'sampleMs', { min: 20, max: 1_000, integer: true }),
    highWaterMark,
    maxQueuedBytes,
  });
}

// ——— runs and HTTP ———

interface Run {
  view: Omit<ExperimentView, 'progress' | 'next'>;
  events: ExperimentEvent[];
  abort: AbortController;
  finished: Promise<void>;
}

/** Finished runs kept for the pages to read (the newest). */
const KEEP_FINISHED = 4;
const MAX_BODY_BYTES = 16 * 1024;

export interface ExperimentsApi {
  /** Answers a `/lab/experiments...` request (`parts`: the path's segments after `/lab/experiments`). */
  handle(request: http.IncomingMessage, response: http.ServerResponse, parts: string[], searchParams: URLSearchParams): Promise<void>;
  /** Stops a run in progress and waits until its processes and paths are gone. */
  close(): Promise<void>;
}

function send(response: http.ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
}

function fail(response: http.ServerResponse, status: number, code: ExperimentError['code'], message: string): void {
  send(response, status, { error: { code, message } });
}

/** The request's JSON body (empty: `{}`), or the error to answer. */
async function readJson(request: http.IncomingMessage): Promise<{ value: unknown } | { status: number; error: ExperimentError }> {
  const body = await readBody(request, MAX_BODY_BYTES);
  if (body === undefined) return { status: 413, error: { code: 'ERR_BODY_TOO_LARGE', message: `options are at most ${MAX_BODY_BYTES} bytes` } };
  const text = Buffer.from(body).toString('utf8').trim();
  try {
    return { value: text ? JSON.parse(text) : {} };
  } catch (error) {
    return { status: 400, error: { code: 'ERR_BAD_JSON', message: `the body is not JSON: ${(error as Error).message}` } };
  }
}

/** `labStaticDir`: the built lab this server serves, which the live network's server serves too. */
export function createExperimentsApi(labStaticDir?: string): ExperimentsApi {
  let networks: ReturnType<typeof import('../../benchmarks/experiments/live-network.ts').liveNetworks> | undefined;
  /** The live impaired network's routes. */
  async function network(request: http.IncomingMessage, response: http.ServerResponse, method: string): Promise<void> {
    const { liveNetworks, NETWORK_PROFILES } = await import('../../benchmarks/experiments/live-network.ts');
    networks ??= liveNetworks(undefined, labStaticDir);
    if (method === 'GET') return send(response, 200, await networks.status());
    if (method === 'DELETE') return send(response, 200, await networks.stop());
    if (method !== 'POST') return fail(response, 404, 'ERR_NO_EXPERIMENT', `no route for ${method} /lab/experiments/network`);
    const body = await readJson(request);
    if ('error' in body) return fail(response, body.status, body.error.code, body.error.message);
    const profile = (body.value as { profile?: unknown } | null)?.profile;
    if (typeof profile !== 'string' || !Object.hasOwn(NETWORK_PROFILES, profile)) return fail(response, 400, 'ERR_EXPERIMENT_OPTIONS', `profile must be one of ${Object.keys(NETWORK_PROFILES).join(', ')}`);
    const status = await networks.status();
    if (!status.available) return fail(response, 409, 'ERR_EXPERIMENT_FAILED', `no live network here: ${status.reason}`);
    try {
      return send(response, 200, await networks.start(profile as keyof typeof NETWORK_PROFILES));
    } catch (error) {
      return fail(response, 500, 'ERR_EXPERIMENT_FAILED', (error as Error).message);
    }
  }
  const runs = new Map<string, Run>();
  let current: Run | undefined;
  let nextId = 1;
  let closed = false;

  /** Refuses a second run (or one while closing). */
  function checkIdle(): void {
    if (closed) throw new ExperimentRequestError(409, 'ERR_EXPERIMENT_BUSY', 'the server is closing');
    if (current) throw new ExperimentRequestError(409, 'ERR_EXPERIMENT_BUSY', `experiment ${current.view.id} (${current.view.kind}) is still running: one at a time`);
  }

  /** Starts `execute` as the one run; its events and outcome land in the run's view. */
  function start(kind: ExperimentKind, options: ExperimentView['options'], execute: (signal: AbortSignal, record: (event: ExperimentEvent) => void) => Promise<HolResult | BackpressureResult>): Run {
    // Checked again here: another request may have started a run while this one loaded the runner.
    checkIdle();
    const id = String(nextId++);
    const abort = new AbortController();
    const events: ExperimentEvent[] = [];
    const run: Run = { view: { id, kind, state: 'running', startedAt: new Date().toISOString(), options }, events, abort, finished: Promise.resolve() };
    run.finished = execute(abort.signal, (event) => events.push(event)).then(
      (result) => {
        run.view = { ...run.view, state: 'done', result };
      },
      (error: unknown) => {
        const code = abort.signal.aborted ? 'ERR_EXPERIMENT_ABORTED' : 'ERR_EXPERIMENT_FAILED';
        const message = abort.signal.aborted ? 'the run was stopped' : (error as Error).message;
        run.view = { ...run.view, state: 'failed', error: { code, message } };
      },
    ).finally(() => {
      if (current === run) current = undefined;
    });
    current = run;
    runs.set(id, run);
    // Forget the oldest finished runs.
    const finished = [...runs.values()].filter((r) => r !== current);
    for (const old of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) runs.delete(old.view.id);
    return run;
  }

  async function begin(kind: ExperimentKind, body: unknown): Promise<Run> {
    if (kind === 'hol') {
      const { HOL_DEFAULTS, HOL_VARIANTS, runHol } = await import('../../benchmarks/experiments/hol.ts');
      const options = parseHolOptions(body, HOL_VARIANTS, HOL_DEFAULTS);
      return start('hol', options, (signal, record) =>
        runHol({
          ...options,
          signal,
          onProgress: (event) => record(event.type === 'variant-done' ? { type: 'variant-done', variant: event.result.variant, index: event.index, of: event.of } : event),
        }),
      );
    }
    const { BACKPRESSURE_DEFAULTS, BACKPRESSURE_TRANSPORTS, POLICIES, runBackpressure } = await import('../../benchmarks/experiments/backpressure.ts');
    const options = parseBackpressureOptions(body, { transports: BACKPRESSURE_TRANSPORTS, policies: POLICIES }, BACKPRESSURE_DEFAULTS);
    return start('backpressure', options, (signal, record) =>
      runBackpressure({
        ...options,
        signal,
        onProgress: (event) => record(event),
        onSample: ({ transport, policy }, sample) => record({ type: 'sample', transport, policy, sample }),
      }),
    );
  }

  async function catalog(): Promise<ExperimentCatalog> {
    const [hol, bp] = await Promise.all([import('../../benchmarks/experiments/hol.ts'), import('../../benchmarks/experiments/backpressure.ts')]);
    return {
      running: current?.view.id ?? null,
      limits: EXPERIMENT_LIMITS,
      hol: { variants: hol.HOL_VARIANTS, defaults: { lossPercent: hol.HOL_DEFAULTS.lossPercent, durationMs: Math.min(hol.HOL_DEFAULTS.durationMs, EXPERIMENT_LIMITS.holDurationMs), delayMs: hol.HOL_DEFAULTS.delayMs } },
      backpressure: { transports: bp.BACKPRESSURE_TRANSPORTS, policies: bp.POLICIES, defaults: { durationMs: bp.BACKPRESSURE_DEFAULTS.durationMs, drainMs: bp.BACKPRESSURE_DEFAULTS.drainMs } },
    };
  }

  function view(run: Run, since: number): ExperimentView {
    return { ...run.view, progress: run.events.slice(since), next: run.events.length };
  }

  return {
    async handle(request, response, parts, searchParams) {
      const method = request.method ?? 'GET';
      const [first] = parts;
      if (parts.length === 0 && method === 'GET') return send(response, 200, await catalog());
      if (parts.length === 1 && (first === 'hol' || first === 'backpressure') && method === 'POST') {
        const body = await readJson(request);
        if ('error' in body) return fail(response, body.status, body.error.code, body.error.message);
        try {
          checkIdle();
          const run = await begin(first, body.value);
          return send(response, 202, view(run, 0));
        } catch (error) {
          if (error instanceof ExperimentRequestError) return fail(response, error.status, error.code, error.message);
          throw error;
        }
      }
      if (parts.length === 1 && first === 'network') return network(request, response, method);
      const run = parts.length === 1 ? runs.get(first!) : undefined;
      if (!run) return fail(response, 404, 'ERR_NO_EXPERIMENT', `no experiment ${parts.join('/')} (the ${KEEP_FINISHED} newest finished runs are kept)`);
      if (method === 'GET') {
        const since = Math.max(0, Math.floor(Number(searchParams.get('since') ?? 0)) || 0);
        return send(response, 200, view(run, since));
      }
      if (method === 'DELETE') {
        run.abort.abort();
        await run.finished;
        return send(response, 200, view(run, run.events.length));
      }
      fail(response, 404, 'ERR_NO_EXPERIMENT', `no experiment route for ${method} /lab/experiments/${parts.join('/')}`);
    },
    async close() {
      closed = true;
      current?.abort.abort();
      await Promise.all([current?.finished, networks?.close()]);
    },
  };
}
