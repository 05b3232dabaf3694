/**
 * The lab's experiment runs over real HTTP against a real server: options checked (400 with a
 * typed error), one run at a time (409), a short real backpressure run and a short real HOL run
 * (network namespaces when root, else the UDP relay: the runner decides) polled to their result,
 * and a server closed mid-run leaves no process or namespace behind.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKPRESSURE_DEFAULTS, BACKPRESSURE_TRANSPORTS, POLICIES } from '../../benchmarks/experiments/backpressure.ts';
import { HOL_DEFAULTS, HOL_VARIANTS } from '../../benchmarks/experiments/hol.ts';
import { canImpair, pathNamePrefix } from '../../benchmarks/impairment/netns.ts';
import { canForward } from '../../benchmarks/impairment/tun-path.ts';
import { EXPERIMENT_LIMITS, ExperimentRequestError, parseBackpressureOptions, parseHolOptions, type ExperimentCatalog, type ExperimentView } from './experiments-api.ts';
import { startServer, type SwitchyardServer } from '../../server/index.ts';
import { labPlugin } from './plugin.ts';

const capability = await canImpair();
/** The path the HOL runner picks here: the TUN forwarder, else nftables, else the UDP relay. */
const expectedPath = (await canForward()).ok ? 'tun' : capability.ok ? 'netns' : 'relay';
let server: SwitchyardServer;

beforeAll(async () => {
  server = await startServer({ port: 0, certificate: 'ephemeral', plugins: [labPlugin({ staticDir: null })] });
});
afterAll(async () => {
  await server?.close();
});

async function call(method: string, path: string, body?: unknown, base = server.urls.http): Promise<{ status: number; body: ExperimentView & { error?: { code: string; message: string } } }> {
  const response = await fetch(`${base}${path}`, { method, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' } }) });
  return { status: response.status, body: (await response.json()) as ExperimentView & { error?: { code: string; message: string } } };
}

/** Polls a run as the lab page does (only new events each time) until it ends. */
async function poll(id: string, base = server.urls.http): Promise<{ view: ExperimentView; events: ExperimentView['progress'] }> {
  const events: ExperimentView['progress'] = [];
  let since = 0;
  for (;;) {
    const { status, body } = await call('GET', `/lab/experiments/${id}?since=${since}`, undefined, base);
    expect(status).toBe(200);
    events.push(...body.progress);
    since = body.next;
    if (body.state !== 'running') return { view: body, events };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Our child processes (the runners' servers, workers, consumers), but not this `ps` itself. */
function children(): string[] {
  const out = execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(process.pid)], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.endsWith(' ps'));
}

describe('option validation (pure)', () => {
  const hol = (body: unknown) => parseHolOptions(body, HOL_VARIANTS, HOL_DEFAULTS);
  const bp = (body: unknown) => parseBackpressureOptions(body, { transports: BACKPRESSURE_TRANSPORTS, policies: POLICIES }, BACKPRESSURE_DEFAULTS);

  it('fills the lab defaults within the limits and keeps what was given', () => {
    expect(hol({})).toEqual({ variants: [...HOL_VARIANTS], durationMs: HOL_DEFAULTS.durationMs, warmupMs: HOL_DEFAULTS.warmupMs, impairment: 'auto' });
    // A short run gets a proportionate warm-up.
    expect(hol({ lossPercent: 3, variants: ['websocket', 'websocket'], durationMs: 2_000, rateMbit: 1 })).toEqual({ lossPercent: 3, rateMbit: 1, variants: ['websocket'], durationMs: 2_000, warmupMs: 400, impairment: 'auto' });
    expect(hol({ lossPercent: 2.5, impairment: 'relay', delayMs: 30 }).lossPercent).toBe(2.5);
    expect(bp({ transports: ['websocket'], policies: ['drop-oldest'], durationMs: 9_000 })).toEqual({ transports: ['websocket'], policies: ['drop-oldest'], durationMs: 9_000, drainMs: 1_000 });
  });

  it('refuses what is out of range, unknown or mistyped, with a typed error', () => {
    const refused = (parse: () => unknown, pattern: RegExp) => {
      try {
        parse();
      } catch (error) {
        expect(error).toBeInstanceOf(ExperimentRequestError);
        expect((error as ExperimentRequestError).code).toBe('ERR_EXPERIMENT_OPTIONS');
        expect((error as ExperimentRequestError).status).toBe(400);
        expect((error as Error).message).toMatch(pattern);
        return;
      }
      throw new Error('accepted');
    };
    refused(() => hol({ lossPercent: 11 }), /lossPercent must be a number from 0 to 10/);
    refused(() => hol({ lossPercent: 2.5, impairment: 'netns' }), /whole number/);
    refused(() => hol({ lossPercent: '2' }), /lossPercent/);
    refused(() => hol({ durationMs: EXPERIMENT_LIMITS.holDurationMs + 1 }), /durationMs .* to 20000/);
    refused(() => hol({ variants: ['quic'] }), /"quic" is not one of websocket/);
    refused(() => hol({ variants: [] }), /non-empty list/);
    refused(() => hol({ impairment: 'tc' }), /impairment must be/);
    refused(() => hol({ loss: 2 }), /unknown option loss/);
    refused(() => hol([1]), /JSON object/);
    refused(() => bp({ policies: ['block'] }), /"block" is not one of wait/);
    refused(() => bp({ transports: ['polling'] }), /"polling" is not one of websocket, long-polling, webtransport/);
    refused(() => bp({ durationMs: 8_000, drainMs: 3_000 }), /drainMs .* to 2000/);
    refused(() => bp({ highWaterMark: 4_096, maxQueuedBytes: 2_048 }), /maxQueuedBytes .* from 4096/);
  });
});

describe('lab experiment runs over HTTP', () => {
  it('answers bad options and bad JSON with 400 and a typed error, unknown runs with 404', async () => {
    const bad = await call('POST', '/lab/experiments/hol', { lossPercent: 50 });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toEqual({ code: 'ERR_EXPERIMENT_OPTIONS', message: expect.stringMatching(/lossPercent/) as string });
    const policy = await call('POST', '/lab/experiments/backpressure', { policies: ['nope'] });
    expect([policy.status, policy.body.error?.code]).toEqual([400, 'ERR_EXPERIMENT_OPTIONS']);
    const garbage = await call('POST', '/lab/experiments/backpressure', '{"transports": [');
    expect([garbage.status, garbage.body.error?.code]).toEqual([400, 'ERR_BAD_JSON']);
    const missing = await call('GET', '/lab/experiments/999');
    expect([missing.status, missing.body.error?.code]).toEqual([404, 'ERR_NO_EXPERIMENT']);
  });

  it('tells a page what it can ask for: the runners\' variants, transports, policies and the limits', async () => {
    const response = await fetch(`${server.urls.http}/lab/experiments`);
    const catalog = (await response.json()) as ExperimentCatalog;
    expect(catalog).toMatchObject({ running: null, limits: EXPERIMENT_LIMITS, hol: { variants: HOL_VARIANTS }, backpressure: { transports: BACKPRESSURE_TRANSPORTS, policies: POLICIES } });
    expect(catalog.hol.defaults.durationMs).toBeLessThanOrEqual(EXPERIMENT_LIMITS.holDurationMs);
  });

  it('runs a short real backpressure experiment, refusing a second run meanwhile (409)', async () => {
    const started = await call('POST', '/lab/experiments/backpressure', { transports: ['websocket'], policies: ['drop-oldest'], durationMs: 800, drainMs: 300 });
    expect(started.status).toBe(202);
    expect(started.body.state).toBe('running');
    const busy = await call('POST', '/lab/experiments/hol', { variants: ['websocket'] });
    expect([busy.status, busy.body.error?.code]).toEqual([409, 'ERR_EXPERIMENT_BUSY']);
    const { view, events } = await poll(started.body.id);
    expect(view.error).toBeUndefined();
    expect(view.state).toBe('done');
    const result = view.result as Extract<ExperimentView['result'], { experiment: 'backpressure' }>;
    expect(result.experiment).toBe('backpressure');
    const [run] = result.runs;
    expect([run!.transport, run!.policy, run!.error]).toEqual(['websocket', 'drop-oldest', undefined]);
    expect(run!.published).toBe(800);
    expect(run!.timeline.length).toBeGreaterThan(5);
    // The policy acted: the slow consumer's queue filled and drop-oldest dropped.
    expect(run!.dropped).toBeGreaterThan(0);
    // Every sample reached the page as a progress event, between the run's start and end.
    expect(events[0]).toMatchObject({ type: 'run-start', transport: 'websocket', policy: 'drop-oldest' });
    expect(events.at(-1)).toMatchObject({ type: 'run-done' });
    expect(events.filter((e) => e.type === 'sample')).toHaveLength(run!.timeline.length);
  }, 20_000);

  it(`runs a short real HOL experiment (${expectedPath} path) to a charted result`, async () => {
    const started = await call('POST', '/lab/experiments/hol', { lossPercent: 2, variants: ['webtransport-channels'], durationMs: 2_000 });
    expect(started.status).toBe(202);
    const { view, events } = await poll(started.body.id);
    expect(view.error).toBeUndefined();
    const result = view.result as Extract<ExperimentView['result'], { experiment: 'head-of-line' }>;
    expect(result.impairment.kind).toBe(expectedPath);
    // On a fallback path the page is told why the better one is missing.
    if (expectedPath === 'tun') expect(result.impairment.unavailable).toBeUndefined();
    else expect(result.impairment.unavailable).toMatch(/./);
    expect(events.map((e) => e.type)).toEqual(['path', 'variant-start', 'variant-done']);
    const [variant] = result.variants;
    expect(variant!.error).toBeUndefined();
    expect(variant!.flows).toHaveLength(4);
    for (const flow of variant!.flows) expect(flow.delivered).toBeGreaterThan(50);
    expect(result.settings.durationMs).toBe(2_000);
  }, 30_000);

  it('DELETE stops a run: its state says so and the next run may start', async () => {
    const started = await call('POST', '/lab/experiments/backpressure', { transports: ['websocket'], policies: ['wait'], durationMs: 10_000, drainMs: 0 });
    expect(started.status).toBe(202);
    await expect.poll(async () => (await call('GET', `/lab/experiments/${started.body.id}`)).body.progress.some((e) => e.type === 'sample'), { timeout: 15_000, interval: 100 }).toBe(true);
    const stopping = performance.now();
    const stopped = await call('DELETE', `/lab/experiments/${started.body.id}`);
    expect(performance.now() - stopping).toBeLessThan(3_000);
    expect([stopped.status, stopped.body.state, stopped.body.error?.code]).toEqual([200, 'failed', 'ERR_EXPERIMENT_ABORTED']);
    const catalog = (await (await fetch(`${server.urls.http}/lab/experiments`)).json()) as ExperimentCatalog;
    expect(catalog.running).toBeNull();
  }, 20_000);

  it('a server closed mid-run stops it and leaves no process or namespace behind', async () => {
    const own = await startServer({ port: 0, certificate: 'none', plugins: [labPlugin({ staticDir: null })] });
    const before = children();
    const started = await call('POST', '/lab/experiments/hol', { variants: ['websocket'], durationMs: 20_000 }, own.urls.http);
    expect(started.status).toBe(202);
    // Wait until the run is measuring (path built, server and worker up).
    await expect.poll(async () => (await call('GET', `/lab/experiments/${started.body.id}`, undefined, own.urls.http)).body.progress.map((e) => e.type), { timeout: 15_000, interval: 100 }).toContain('variant-start');
    expect(children().length).toBeGreaterThan(before.length);
    const closing = performance.now();
    await own.close();
    expect(performance.now() - closing).toBeLessThan(5_000);
    expect(children()).toEqual(before);
    // Namespaces of this process's paths start with its pid.
    if (capability.ok) expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(pathNamePrefix());
  }, 30_000);

  it('is off unless the server listens on loopback or is told to run experiments', async () => {
    const own = await startServer({ port: 0, certificate: 'none', plugins: [labPlugin({ staticDir: null, experiments: false })] });
    try {
      const refused = await call('POST', '/lab/experiments/backpressure', { transports: ['websocket'], policies: ['drop-oldest'] }, own.urls.http);
      expect([refused.status, refused.body.error?.code]).toEqual([403, 'ERR_EXPERIMENTS_OFF']);
      expect((await fetch(`${own.urls.http}/lab/experiments`)).status).toBe(403);
    } finally {
      await own.close();
    }
  });
});
