/**
 * The lab in headless Chromium against a real server: the lab is built with Vite into a temporary
 * folder (never a stale build), served by startServer, and every page is driven like a reader
 * would: a short Compare run over every transport, the HOL and Backpressure runs, Learn's
 * handshakes, frame inspector and wire bytes, and a bench report opened on Results. Charts are
 * read through `window.__lab.charts()`; screenshots go to test-output/lab/. Each case opens its own
 * page and fails on any error thrown in it.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { BackpressureResult } from '../benchmarks/experiments/backpressure.ts';
import type { HolResult } from '../benchmarks/experiments/hol.ts';
import type { BenchReport, Cell } from '../benchmarks/report.ts';
import { startServer, type SwitchyardServer } from '../server/index.ts';
import { labPlugin } from './server/plugin.ts';
import { launchChromium } from '../test-support/chromium.ts';

const SHOTS = path.resolve(import.meta.dirname, '../test-output/lab');
const VARIANT_LABELS = ['WebSocket', 'Long-polling', 'Polling', 'WebTransport · reliable', 'WebTransport · channels', 'WebTransport · unreliable', 'WebRTC · reliable', 'WebRTC · channels', 'WebRTC · unreliable'];

let server: SwitchyardServer;
let browser: Browser;
let page: Page;
let dist: string;
/** Errors thrown in the pages of the running case (each case checks its own, in afterEach). */
let pageErrors: string[] = [];

/** Collects a page's uncaught errors into the running case's list. */
function watchErrors(target: Page): Page {
  target.on('pageerror', (error) => pageErrors.push(`${target.url()}: ${error.message}`));
  return target;
}

type ChartView = { id: string; datasets: { label: string; points: number }[] };
const charts = () => page.evaluate(() => (window as unknown as { __lab: { charts: () => ChartView[] } }).__lab.charts());
const labState = <T>(key: string) => page.evaluate((k) => (window as unknown as { __lab: Record<string, unknown> }).__lab[k], key) as Promise<T>;
const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

async function open(route: string): Promise<void> {
  await page.goto(`${server.urls.http}/#/${route}`);
  await page.waitForFunction((r) => (window as unknown as { __lab?: { page?: string } }).__lab?.page === r, route);
}

async function setValue(selector: string, value: string): Promise<void> {
  await page.fill(selector, value);
}

beforeAll(async () => {
  dist = await mkdtemp(path.join(os.tmpdir(), 'switchyard-lab-'));
  await build({ configFile: path.join(import.meta.dirname, 'vite.config.ts'), build: { outDir: dist, emptyOutDir: true }, logLevel: 'warn' });
  await mkdir(SHOTS, { recursive: true });
  server = await startServer({ port: 0, certificate: 'ephemeral', plugins: [labPlugin({ staticDir: dist })] });
  browser = await launchChromium();
}, 60_000);

// Every case starts on a fresh page and ends by checking that none of its pages threw.
beforeEach(async () => {
  pageErrors = [];
  page = watchErrors(await browser.newPage({ viewport: { width: 1400, height: 900 } }));
});

afterEach(async () => {
  await page.close();
  expect(pageErrors).toEqual([]);
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (dist) await rm(dist, { recursive: true, force: true });
});

describe('lab (Chromium)', () => {
  it('serves the shell with a page per route and the server status', async () => {
    await open('compare');
    expect(await page.locator('#nav a').allTextContents()).toHaveLength(5);
    await page.waitForSelector('.server .dot.ok');
    for (const [route, heading] of [
      ['hol', 'Head-of-line blocking'],
      ['backpressure', 'Backpressure'],
      ['learn', 'Learn: five ways to carry a message'],
      ['results', 'Benchmark results'],
      ['compare', 'Compare transports'],
    ]) {
      await page.click(`#nav a[data-page="${route}"]`);
      await expect.poll(() => page.locator('main h2').first().textContent()).toBe(heading);
      expect(await page.locator('#nav a.active').getAttribute('data-page')).toBe(route);
    }
  });

  it('fits a 390 px phone screen: no page scrolls sideways (wide tables scroll inside their own box)', async () => {
    const phone = watchErrors(await browser.newPage({ viewport: { width: 390, height: 844 } }));
    try {
      for (const route of ['compare', 'hol', 'backpressure', 'learn', 'results']) {
        await phone.goto(`${server.urls.http}/#/${route}`);
        await phone.waitForFunction((r) => (window as unknown as { __lab?: { page?: string } }).__lab?.page === r, route);
        const width = await phone.evaluate(() => document.documentElement.scrollWidth);
        expect(width, route).toBeLessThanOrEqual(390);
      }
    } finally {
      await phone.close();
    }
  });

  it('Compare: a short echo run over every transport fills every chart and the summary', async () => {
    await open('compare');
    await setValue('[name=duration]', '0.5');
    await setValue('[name=rate]', '100');
    await page.click('#run');
    await page.waitForFunction(() => (window as unknown as { __lab: { compare: { state: string } } }).__lab.compare.state === 'done', undefined, { timeout: 40_000 });
    const views = (await charts()).filter((c) => c.id.startsWith('compare-'));
    expect(views.map((c) => c.id).sort()).toEqual(['compare-cdf', 'compare-hist', 'compare-rate', 'compare-time']);
    for (const view of views) {
      expect(view.datasets.map((d) => d.label)).toEqual(VARIANT_LABELS);
      for (const dataset of view.datasets) expect(dataset.points, `${view.id} ${dataset.label}`).toBeGreaterThan(0);
    }
    const rows = await page.locator('[data-testid=summary-table] tbody tr').allInnerTexts();
    expect(rows).toHaveLength(VARIANT_LABELS.length);
    rows.forEach((row, i) => expect(row).toContain(VARIANT_LABELS[i]));
    const results = await labState<{ results: { variant: string; delivered: number; error?: string; wireBytesPerHop: number | null }[] }>('compare');
    for (const result of results.results) {
      expect(result.error, result.variant).toBeUndefined();
      expect(result.delivered, result.variant).toBeGreaterThan(0);
      expect(result.wireBytesPerHop, result.variant).toBeGreaterThan(16);
    }
    // The page ends with what the run shows, from its figures, and says loopback cannot show loss.
    expect(await page.locator('#compare-takeaways').innerText()).toMatch(/Over loopback: lowest median[\s\S]*Loopback loses nothing/);
    await shot('compare');
  }, 60_000);

  it('Compare: a long-polling fan-out to 8 subscribers runs 4 (Chromium’s 6 connections per host), says so, and loses nothing', async () => {
    await open('compare');
    for (const box of await page.locator('.chips input[type=checkbox]').all()) if ((await box.inputValue()) !== 'long-polling') await box.uncheck();
    await page.selectOption('[name=workload]', 'fanout');
    await setValue('[name=subscribers]', '8');
    await setValue('[name=duration]', '1');
    await setValue('[name=rate]', '50');
    await page.click('#run');
    await page.waitForFunction(() => (window as unknown as { __lab: { compare: { state: string } } }).__lab.compare.state === 'done', undefined, { timeout: 40_000 });
    const { results } = await labState<{ results: { variant: string; lost: number; delivered: number; subscribersLimited?: { asked: number; ran: number } }[] }>('compare');
    expect(results.map((r) => [r.variant, r.lost, r.subscribersLimited])).toEqual([['long-polling', 0, expect.objectContaining({ asked: 8, ran: 4 })]]);
    expect(results[0]!.delivered).toBeGreaterThan(100);
    expect(await page.locator('#summary').innerText()).toMatch(/4 of 8 subscribers[\s\S]*6 HTTP\/1\.1 connections per host[\s\S]*not message loss/);
  }, 60_000);

  it('Head-of-line: four flows and the bulk flow chart per transport', async () => {
    await open('hol');
    await setValue('[name=duration]', '0.6');
    await setValue('[name=bulk]', '256');
    await setValue('[name=every]', '200');
    await page.click('#run');
    await page.waitForFunction(() => (window as unknown as { __lab: { hol: { state: string } } }).__lab.hol.state === 'done', undefined, { timeout: 40_000 });
    const views = (await charts()).filter((c) => c.id.startsWith('hol-'));
    expect(views).toHaveLength(VARIANT_LABELS.length);
    for (const view of views) {
      expect(view.datasets).toHaveLength(5);
      for (const dataset of view.datasets) expect(dataset.points, `${view.id} ${dataset.label}`).toBeGreaterThan(0);
    }
    // On loopback the page says plainly what it cannot show, and never that channels do not help.
    const takeaways = await page.locator('#hol-takeaways').innerText();
    expect(takeaways).toMatch(/On loopback nothing is lost[\s\S]*inconclusive about loss[\s\S]*Channels help exactly when/);
    await page.setInputFiles('#hol-file', { name: 'experiment-hol.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(holFixture())) });
    await page.waitForSelector('#hol-experiment canvas');
    const experiment = (await charts()).find((c) => c.id === 'hol-exp-0')!;
    expect(experiment.datasets.map((d) => [d.label, d.points])).toEqual([
      ['p50', 2],
      ['p99', 2],
      ['max', 2],
    ]);
    await shot('hol');

    // The recorded experiment shipped with the lab, with takeaways drawn from it.
    await page.click('#hol-show-recorded');
    await page.waitForSelector('#recorded-experiment-takeaways');
    const recorded = (await charts()).filter((c) => c.id.startsWith('recorded-exp-'));
    expect(recorded.length).toBeGreaterThanOrEqual(5);
    expect(await page.locator('#hol-recorded').innerText()).toMatch(/TUN forwarder between namespaces, 2 % loss each way, 20 ms delay each way/);
    expect(await page.locator('#recorded-experiment-takeaways').innerText()).toMatch(/(Each loss stalled|Shared stalls)[\s\S]*Ordered state updates → one reliable lane[\s\S]*Latest-value telemetry/);
  }, 60_000);

  it('Head-of-line where the live impaired path cannot run: says why and shows the recorded result at once', async () => {
    // The server's answer as a non-root or non-Linux server gives it (the real one here is root on Linux).
    await page.route('**/lab/experiments/network', (route) => route.fulfill({ json: { available: false, reason: 'not root (network namespaces need CAP_NET_ADMIN)', profiles: [{ id: 'lossy', label: '2 % loss + 40 ms RTT' }], active: null } }));
    await open('hol');
    await page.waitForSelector('#recorded-experiment-takeaways');
    expect(await page.locator('#hol-recorded').locator('xpath=..').innerText()).toMatch(/The live impaired network cannot run here: not root \(network namespaces need CAP_NET_ADMIN\)[\s\S]*npm run experiment -- hol --loss 2 --delay 20/);
    expect((await labState<{ recorded: { shown: boolean; liveUnavailable: string } }>('hol')).recorded).toEqual({ shown: true, liveUnavailable: 'not root (network namespaces need CAP_NET_ADMIN)' });
    expect(await page.locator('#network-status').innerText()).toMatch(/no impaired network here: not root/);
    // At a desktop width every column of the per-variant tables fits (none cut behind a scroll).
    const cut = await page.locator('#hol-recorded .table-wrap').evaluateAll((boxes) => boxes.filter((box) => box.scrollWidth > box.clientWidth + 1).map((box) => `${box.clientWidth} < ${box.scrollWidth}: ${[...box.querySelectorAll('th')].map((th) => `${th.textContent} ${Math.round(th.getBoundingClientRect().width)}`).join(', ')}`));
    expect(cut).toEqual([]);
    await page.locator('#hol-recorded').scrollIntoViewIfNeeded();
    await shot('hol-recorded');
  }, 30_000);

  it('Head-of-line through the live impaired network (2 % loss + 40 ms RTT): WebSocket flows stall together, WebTransport and WebRTC channels mostly alone', async (context) => {
    const offer = (await (await fetch(`${server.urls.http}/lab/experiments/network`)).json()) as { available: boolean; reason: string | null };
    if (!offer.available) return context.skip(`no live impaired network here: ${offer.reason}`);
    try {
      await open('hol');
      await page.waitForSelector('[name=network] option[value=lossy]:not([disabled])', { state: 'attached' });
      // Choosing the network starts it on the server and reopens the page through it.
      await Promise.all([page.waitForURL(/network=/, { timeout: 90_000 }), page.selectOption('[name=network]', 'lossy')]);
      await page.waitForFunction(() => (window as unknown as { __lab?: { page?: string } }).__lab?.page === 'hol');
      expect(new URL(page.url()).origin).not.toBe(new URL(server.urls.http).origin);
      expect(await page.locator('main .note').first().innerText()).toMatch(/Network: 2 % loss \+ 40 ms RTT/);
      for (const box of await page.locator('[name=variant]').all()) if (!['websocket', 'wt-channels', 'rtc-channels'].includes(await box.inputValue())) await box.uncheck();
      await setValue('[name=duration]', '5');
      await page.click('#run');
      await page.waitForFunction(() => (window as unknown as { __lab: { hol: { state: string } } }).__lab.hol.state === 'done', undefined, { timeout: 60_000 });
      const { runs, stalls } = await labState<{ runs: { variant: string; error?: string; network: string }[]; stalls: Record<string, { episodes: number; sharedFraction: number | null }> }>('hol');
      expect(runs.map((r) => [r.variant, r.error, r.network])).toEqual([
        ['websocket', undefined, '2 % loss + 40 ms RTT'],
        ['wt-channels', undefined, '2 % loss + 40 ms RTT'],
        ['rtc-channels', undefined, '2 % loss + 40 ms RTT'],
      ]);
      // As the experiment asserts: losses stall every flow of the one TCP connection together, a channel's only its own.
      expect(stalls.websocket!.episodes).toBeGreaterThan(3);
      // A 5 s live run has a handful of stall episodes: one that a scheduling hiccup leaves unshared moves the fraction by 0.1–0.25.
      expect(stalls.websocket!.sharedFraction!).toBeGreaterThanOrEqual(0.75);
      expect(stalls['wt-channels']!.sharedFraction ?? 0).toBeLessThan(stalls.websocket!.sharedFraction!);
      expect(stalls['rtc-channels']!.sharedFraction ?? 0).toBeLessThan(stalls.websocket!.sharedFraction!);
      expect(await page.locator('#hol-takeaways').innerText()).toMatch(/What this run shows/);
      await shot('hol-live-network');
    } finally {
      await fetch(`${server.urls.http}/lab/experiments/network`, { method: 'DELETE' });
    }
  }, 180_000);

  it('Backpressure: a slow consumer builds a queue; latency, rates and drops are charted', async () => {
    await open('backpressure');
    await page.selectOption('[name=transport]', 'websocket');
    await setValue('[name=rate]', '3000');
    await setValue('[name=cost]', '1');
    await setValue('[name=duration]', '1.5');
    await page.click('#run');
    await page.waitForFunction(() => (window as unknown as { __lab: { backpressure: { state: string } } }).__lab.backpressure.state === 'done', undefined, { timeout: 30_000 });
    const run = (await labState<{ run: { sent: number; deliveries: unknown[]; queue: { serverQueuedBytes: number | null }[]; error?: string } }>('backpressure')).run;
    expect(run.error).toBeUndefined();
    expect(run.sent).toBeGreaterThan(3000);
    // The consumer handles ~1000/s, so fewer arrive in time than were sent, and a backlog formed somewhere.
    expect(run.deliveries.length).toBeGreaterThan(100);
    expect(run.deliveries.length).toBeLessThan(run.sent);
    const views = Object.fromEntries((await charts()).map((c) => [c.id, c.datasets]));
    expect(views['bp-queue']!.every((d) => d.points > 0)).toBe(true);
    expect(views['bp-latency']![0]!.points).toBeGreaterThan(0);
    expect(views['bp-rate']!.map((d) => d.points > 0)).toEqual([true, true]);
    expect(await page.locator('[data-testid=bp-table] tbody tr').count()).toBe(1);
    // Takeaways from this run's figures: the producer outran the consumer, so a backlog formed somewhere.
    expect(await page.locator('#bp-takeaways').innerText()).toMatch(/consumer that takes about 1,000: the backlog peaked in/);
    await page.setInputFiles('#bp-file', { name: 'experiment-backpressure.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(backpressureFixture())) });
    await page.waitForSelector('[data-testid=bp-experiment-table]');
    expect((await charts()).find((c) => c.id === 'bp-exp-queue')!.datasets[0]!.points).toBe(3);
    expect(await page.locator('#bp-experiment-takeaways').innerText()).toMatch(/drop-oldest: websocket: 900 of 3,000 received, peak queue 256\.0 KiB[\s\S]*latest-value telemetry/);
    await shot('backpressure');
  }, 45_000);

  it('Backpressure over WebRTC: the consumer runs on the page and the run ends with its takeaways', async () => {
    await open('backpressure');
    await page.selectOption('[name=transport]', 'rtc-reliable');
    await setValue('[name=rate]', '2000');
    await setValue('[name=cost]', '1');
    await setValue('[name=duration]', '1');
    await page.click('#run');
    await page.waitForFunction(() => (window as unknown as { __lab: { backpressure: { state: string } } }).__lab.backpressure.state === 'done', undefined, { timeout: 30_000 });
    const run = (await labState<{ run: { sent: number; consumerOnPage: boolean; deliveries: unknown[]; error?: string } }>('backpressure')).run;
    expect(run.error).toBeUndefined();
    expect(run.consumerOnPage).toBe(true);
    expect(run.deliveries.length).toBeGreaterThan(100);
    expect(await page.locator('#bp-summary').innerText()).toMatch(/WebRTC’s consumer ran on this page/);
    expect(await page.locator('#bp-takeaways').innerText()).toMatch(/What this run shows[\s\S]*(backlog peaked in|kept up)/);
    await shot('backpressure-webrtc');
  }, 45_000);

  it('Head-of-line: a short run on the server under real loss is charted like an opened JSON file', async () => {
    await open('hol');
    await page.waitForSelector('#hol-server [name=srv-variant]');
    for (const box of await page.locator('#hol-server [name=srv-variant]').all()) {
      if (!['websocket', 'webtransport-channels'].includes(await box.inputValue())) await box.uncheck();
    }
    await setValue('[name=srv-loss]', '2');
    await setValue('[name=srv-duration]', '2');
    await page.click('#hol-server-run');
    await page.waitForFunction(() => (window as unknown as { __lab: { hol: { server: { state: string } } } }).__lab.hol.server.state !== 'running', undefined, { timeout: 90_000 });
    const run = (await labState<{ server: { state: string; error?: string; events: number } }>('hol')).server;
    expect(run.error).toBeUndefined();
    expect(run.state).toBe('done');
    // path, then start and done per variant
    expect(run.events).toBe(5);
    const views = (await charts()).filter((c) => c.id.startsWith('hol-exp-'));
    expect(views.map((v) => v.id).sort()).toEqual(['hol-exp-0', 'hol-exp-1']);
    for (const view of views) expect(view.datasets.map((d) => [d.label, d.points])).toEqual([
      ['p50', 4],
      ['p99', 4],
      ['max', 4],
    ]);
    // Each variant's per-flow delivery timeline, from the runner's per-message series.
    const timelines = (await charts()).filter((c) => c.id.startsWith('hol-timeline-'));
    expect(timelines.map((v) => v.id).sort()).toEqual(['hol-timeline-websocket', 'hol-timeline-webtransport-channels']);
    for (const timeline of timelines) {
      expect(timeline.datasets).toHaveLength(4);
      for (const flow of timeline.datasets) expect(flow.points).toBeGreaterThan(10);
    }
    expect(await page.locator('#hol-experiment').innerText()).toMatch(/websocket[\s\S]*webtransport-channels/);
    await expect.poll(() => page.locator('[data-testid=hol-server-progress]').innerText()).toMatch(/^Done: experiment/);
    expect(await page.locator('[data-testid=hol-server-download]').isVisible()).toBe(true);
    await page.locator('#hol-server').scrollIntoViewIfNeeded();
    await shot('hol-server');

    // On the UDP relay only WebTransport is impaired: the page says so beside the result.
    await page.locator('#hol-server [name=srv-variant][value=webtransport-channels]').uncheck();
    await page.selectOption('[name=srv-impairment]', 'relay');
    await setValue('[name=srv-duration]', '1');
    await page.click('#hol-server-run');
    await page.waitForFunction(() => (window as unknown as { __lab: { hol: { server: { state: string } } } }).__lab.hol.server.state !== 'running', undefined, { timeout: 60_000 });
    expect((await labState<{ server: { state: string } }>('hol')).server.state).toBe('done');
    expect(await page.locator('#hol-server .note-warn').innerText()).toMatch(/UDP relay, as chosen\. Only WebTransport crossed the lossy path/);
    expect(await page.locator('#hol-experiment').innerText()).toMatch(/websocket\s+not impaired on this path/);
  }, 180_000);

  it('Backpressure: a short run on the server (one transport, one policy) charts its queue timeline', async () => {
    await open('backpressure');
    await page.waitForSelector('#backpressure-server [name=srv-policy]');
    for (const [name, keep] of [
      ['srv-transport', 'websocket'],
      ['srv-policy', 'drop-oldest'],
    ]) {
      for (const box of await page.locator(`#backpressure-server [name=${name}]`).all()) if ((await box.inputValue()) !== keep) await box.uncheck();
    }
    await setValue('[name=srv-duration]', '1');
    await page.click('#backpressure-server-run');
    await page.waitForFunction(() => (window as unknown as { __lab: { backpressure: { server: { state: string } } } }).__lab.backpressure.server.state !== 'running', undefined, { timeout: 30_000 });
    const run = (await labState<{ server: { state: string; error?: string; events: number } }>('backpressure')).server;
    expect(run.error).toBeUndefined();
    expect(run.state).toBe('done');
    const views = Object.fromEntries((await charts()).map((c) => [c.id, c.datasets]));
    expect(views['bp-exp-queue']!.map((d) => d.label)).toEqual(['websocket · drop-oldest']);
    expect(views['bp-exp-queue']![0]!.points).toBeGreaterThan(5);
    expect(views['bp-exp-drops']![0]!.points).toBe(views['bp-exp-queue']![0]!.points);
    const rows = await page.locator('[data-testid=bp-experiment-table] tbody tr').allInnerTexts();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatch(/websocket\s+drop-oldest\s+1,000/);
    // start, one event per sample, done
    expect(run.events).toBe(views['bp-exp-queue']![0]!.points + 2);
    await page.locator('#backpressure-server').scrollIntoViewIfNeeded();
    await shot('backpressure-server');
  }, 40_000);

  it('Learn: handshakes of all five transports, every WebSocket opcode, wire bytes per transport', async () => {
    await open('learn');
    await page.waitForSelector('#handshake .http-msg');
    const handshake = await page.locator('#handshake').innerText();
    expect(handshake).toMatch(/GET \/ws HTTP\/1\.1/);
    expect(handshake).toMatch(/HTTP\/1\.1 101 Switching Protocols/);
    expect(handshake).toMatch(/Sec-WebSocket-Accept/i);
    for (const id of ['send-text', 'send-binary', 'send-large', 'send-ping']) await page.click(`#${id}`);
    await expect.poll(async () => new Set((await labState<{ frames: { opcode: number }[] }>('learn')).frames.map((f) => f.opcode)).size, { timeout: 10_000 }).toBe(5);
    await page.click('#send-close');
    await expect
      .poll(async () => [...new Set((await labState<{ frames: { opcode: number }[] }>('learn')).frames.map((f) => f.opcode))].sort((a, b) => a - b), { timeout: 10_000 })
      .toEqual([0x0, 0x1, 0x2, 0x8, 0x9, 0xa]);
    const frames = (await labState<{ frames: { direction: string; masked: boolean; opcode: number }[] }>('learn')).frames;
    expect(frames.filter((f) => f.direction === 'client→server').every((f) => f.masked)).toBe(true);
    expect(frames.filter((f) => f.direction === 'server→client').some((f) => f.masked)).toBe(false);
    await shot('learn-frames');

    for (const [tab, expected] of [
      ['long-polling', /POST \/lp\/open HTTP\/1\.1/],
      ['polling', /POST \/poll\/open HTTP\/1\.1/],
      ['webtransport', /:protocol: webtransport/],
    ] as const) {
      await page.click(`[data-tab="${tab}"]`);
      await expect.poll(() => page.locator('#handshake').innerText(), { timeout: 10_000 }).toMatch(expected);
    }
    await shot('learn-webtransport');

    // WebRTC: the offer and answer of a connection this page made, with their candidates and the pair ICE chose.
    await page.click('[data-tab="webrtc"]');
    await expect.poll(() => page.locator('#handshake').innerText(), { timeout: 15_000 }).toMatch(/POST \/rtc · content-type: application\/sdp[\s\S]*v=0[\s\S]*a=candidate:[\s\S]*201 · Location: \/rtc\/\S+[\s\S]*a=candidate:/);
    const signalling = (await labState<{ signalling: { offerCandidates: number; answerCandidates: number; status: number; selectedPair: string | null; channels: string[] } }>('learn')).signalling;
    expect(signalling.status).toBe(201);
    expect(signalling.offerCandidates).toBeGreaterThan(0);
    expect(signalling.answerCandidates).toBeGreaterThan(0);
    expect(signalling.selectedPair).toMatch(/udp .* ⇄ .* udp/);
    expect(signalling.channels).toContain('reliable');
    expect(await page.locator('[data-testid=rtc-candidates] tbody tr').count()).toBe(signalling.offerCandidates + signalling.answerCandidates);
    await shot('learn-webrtc');

    await page.click('#measure-wire');
    await page.waitForFunction(() => (window as unknown as { __lab: { learn: { wireState: string } } }).__lab.learn.wireState === 'done', undefined, { timeout: 30_000 });
    const wire = (await labState<{ wire: { transport: string; perMessage: number | null }[] }>('learn')).wire;
    expect(wire.map((w) => w.transport)).toEqual(VARIANT_LABELS.filter((l) => !l.endsWith('· channels')));
    for (const row of wire) expect(row.perMessage, JSON.stringify(row)).toBeGreaterThan(64);
    expect((await charts()).find((c) => c.id === 'learn-wire')!.datasets[0]!.points).toBe(wire.length);
    expect(await page.locator('#learn-takeaways').innerText()).toMatch(/At 64 B per message, .+ cost least .+ and .+ most/);
    await page.locator('#wire-table').scrollIntoViewIfNeeded();
    await shot('learn');
  }, 60_000);

  it('degrades clearly in a browser without WebTransport: its variants are disabled and named', async () => {
    const context = await browser.newContext();
    await context.addInitScript(() => delete (globalThis as { WebTransport?: unknown }).WebTransport);
    const bare = watchErrors(await context.newPage());
    await bare.goto(`${server.urls.http}/#/compare`);
    await bare.waitForSelector('.note-warn');
    expect(await bare.locator('.note-warn').innerText()).toMatch(/WebTransport · reliable \(this browser has no WebTransport API\)/);
    expect(await bare.locator('.chip input:disabled').count()).toBe(3);
    expect(await bare.locator('.chip input:checked').count()).toBe(6);
    await bare.screenshot({ path: path.join(SHOTS, 'compare-no-webtransport.png') });
    await context.close();
  });

  it('Results: opens a bench report and charts it; refuses a file that is not one', async () => {
    await open('results');
    await page.setInputFiles('#report-file', { name: 'not-a-report.json', mimeType: 'application/json', buffer: Buffer.from('{"hello":1}') });
    await expect.poll(() => page.locator('#report').innerText()).toMatch(/not a Switchyard benchmark report/);
    await page.setInputFiles('#report-file', { name: 'bench-test.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(benchFixture())) });
    await page.waitForSelector('[data-testid=cells-table]');
    const views = Object.fromEntries((await charts()).map((c) => [c.id, c.datasets]));
    for (const id of ['results-cdf', 'results-echo', 'results-throughput', 'results-fanout', 'results-wire', 'results-setup']) {
      expect(views[id]?.length, id).toBeGreaterThan(0);
      for (const dataset of views[id]!) expect(dataset.points, `${id} ${dataset.label}`).toBeGreaterThan(0);
    }
    expect(await page.locator('[data-testid=cells-table] tbody tr').count()).toBe(benchFixture().cells.length);
    // Takeaways from the report's cells: websocket leads echo by far; throughput and setup leads are clear too.
    expect(await page.locator('#results-takeaways').innerText()).toMatch(/Lowest echo p99 at 64 B: websocket \(144 µs\), then webtransport \(TLS\) \(1\.21 ms\)\. For interactive[\s\S]*Fan-out to 100 subscribers: .*inconclusive/);
    await shot('results');
  });
});

/** A small report in the schema of benchmarks/report.ts (typed, so a schema change breaks this test). */
function benchFixture(): BenchReport {
  const latency = (p50: number) => ({ count: 1000, p50, p90: p50 * 2, p99: p50 * 4, p999: p50 * 6, max: p50 * 9, cdf: [0, 10, 50, 90, 99, 100].map((p): [number, number] => [p, p50 * (0.5 + p / 25)]) });
  const targets = [
    ['websocket', 36],
    ['long-polling', 854],
    ['webtransport', 302],
  ] as const;
  return {
    schemaVersion: 1,
    meta: { date: '2026-11-24T10:00:00.000Z', commit: 'abc1234', node: 'v20.20.2', os: 'linux', cpu: 'AMD EPYC', cores: 2, memoryGiB: 8, options: { quick: true } },
    cells: targets.flatMap(([target, p50], i): Cell[] => [
      { target, tls: target === 'webtransport', workload: 'echo', params: { size: 64 }, status: 'ok', runs: [], result: { latency: latency(p50), msgsPerSec: 1000 } },
      { target, tls: false, workload: 'throughput', params: { size: 64, window: 32 }, status: 'ok', runs: [], result: { msgsPerSec: 100_000 / (i + 1) } },
      { target, tls: false, workload: 'fanout', params: { subscribers: 10, rate: 50 }, status: 'ok', runs: [], result: { msgsPerSec: 500, latency: latency(p50) } },
      { target, tls: false, workload: 'fanout', params: { subscribers: 100, rate: 50 }, status: 'ok', runs: [], result: { msgsPerSec: 5000, latency: latency(p50) } },
      { target, tls: false, workload: 'wire-bytes', params: { size: 64, messages: 200 }, status: 'ok', runs: [], result: { wireBytesPerMessage: 89 + i * 100 } },
      { target, tls: false, workload: 'setup', params: { connections: 10 }, status: 'ok', runs: [], result: { setupMs: 0.6 + i } },
    ]),
    targets: [{ name: 'long-polling p50 / socket.io polling p50', value: 0.18, goal: '≤ 0.25', met: true }],
  };
}

const latencyUs = (p50: number) => ({ count: 100, p50, p90: p50 * 2, p99: p50 * 5, p999: p50 * 8, max: p50 * 10, cdf: [] });

/** The fields of a head-of-line experiment result the page reads (the rest of the run's settings left out). */
function holFixture(): Pick<HolResult, 'experiment' | 'startedAt' | 'impairment'> & { variants: Pick<HolResult['variants'][number], 'variant' | 'transport' | 'impaired' | 'thresholdMs' | 'flows' | 'stalls'>[] } {
  const flow = (i: number, p50: number) => ({ flow: i, lane: `channel:c${i}` as const, sent: 100, delivered: 100, lost: 0, lossRate: 0, latency: latencyUs(p50), stalls: 2, stalledMs: 40, maxGapMs: 60 });
  return {
    experiment: 'head-of-line',
    startedAt: '2026-11-24T10:00:00.000Z',
    impairment: { kind: 'netns', lossPercent: 2, rateMbit: null, delayMs: null, note: 'both directions' },
    variants: [{ variant: 'webtransport-channels', transport: 'webtransport', impaired: true, thresholdMs: 12, flows: [flow(0, 900), flow(1, 1100)], stalls: { episodes: 4, shared: 1, sharedFraction: 0.25, chanceFraction: 0.2 } }],
  };
}

function backpressureFixture(): Pick<BackpressureResult, 'experiment' | 'startedAt' | 'settings'> & { runs: Omit<BackpressureResult['runs'][number], 'consumerClose' | 'overHighWaterAtMs' | 'peakServerHeapBytes' | 'missing' | 'maxQueuedMessages'>[] } {
  const sample = (t: number, queuedBytes: number, dropped: number) => ({ t, queuedBytes, queuedMessages: queuedBytes / 1024, dropped, notQueued: 0, refused: 0, published: t, received: t / 2, latencyP50Ms: 5, latencyMaxMs: 9, serverHeapBytes: 1e7, serverRssBytes: 5e7, connected: true });
  return {
    experiment: 'backpressure',
    startedAt: '2026-11-24T10:00:00.000Z',
    settings: { producerRate: 1000, messageSize: 16384, consumerWorkMs: 5, durationMs: 3000, drainMs: 1500, sampleMs: 50, highWaterMark: 65536, maxQueuedBytes: 262144, transports: ['websocket'], policies: ['drop-oldest'], producerTransport: 'websocket' },
    runs: [{ transport: 'websocket', policy: 'drop-oldest', published: 3000, received: 900, dropped: 2000, notQueued: 0, maxQueuedBytes: 262144, serverClose: null, latency: latencyUs(5000), timeline: [sample(0, 0, 0), sample(50, 131072, 10), sample(100, 262144, 40)] }],
  };
}
