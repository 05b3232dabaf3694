/**
 * The browser client on `webrtc` in headless Chromium (native RTCPeerConnection), bundled from
 * transports/browser-client.ts and served by the Switchyard server itself: the page sends on every
 * lane to Node clients on websocket, webtransport and webrtc and receives on the sender's lanes;
 * with the signalling endpoint unreachable the client falls back to WebSocket and says why.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SwitchyardServer } from '../../server/index.ts';
import { openBrowserClientPage } from '../../test-support/browser-page.ts';
import { createClient } from '../../test-support/clients.ts';
import { waitFor } from '../../test-support/servers.ts';
import type { Delivery } from '../client.ts';

type PageModule = typeof import('../browser-client.ts') & typeof import('./client.ts');

let server: SwitchyardServer;
let page: Page;
let close: (() => Promise<void>) | undefined;

beforeAll(async () => {
  ({ server, page, close } = await openBrowserClientPage("export { connectWebRtc } from './transports/webrtc/client.ts';"));
}, 60_000);

afterAll(() => close?.());

describe('browser client on webrtc (Chromium)', () => {
  it('sends on every lane to Node clients on websocket, webtransport and webrtc, and receives on the sender lanes', async () => {
    const nodes = {
      websocket: createClient({ url: server.urls.http, transports: 'websocket' }),
      webtransport: createClient({ url: server.urls.http, transports: 'webtransport' }),
      webrtc: createClient({ url: server.urls.http, transports: 'webrtc' }),
    };
    const inboxes = { websocket: [] as Delivery[], webtransport: [] as Delivery[], webrtc: [] as Delivery[] };
    for (const [name, client] of Object.entries(nodes)) client.on('message', (d) => inboxes[name as keyof typeof nodes].push(d));
    await Promise.all(Object.values(nodes).map((c) => c.connect()));
    await Promise.all(Object.values(nodes).map((c) => c.join('rtc-lab')));

    const pageState = await page.evaluate(async () => {
      const { createClient } = (window as unknown as { switchyard: PageModule }).switchyard;
      const client = createClient({ transports: ['webrtc', 'websocket'] });
      const inbox: { data: unknown; lane: string; from: string }[] = [];
      client.on('message', (m) => inbox.push({ data: m.data, lane: m.lane, from: m.from }));
      await client.connect();
      await client.join('rtc-lab');
      (window as unknown as { lab: unknown }).lab = { client, inbox };
      await client.multicast({ room: 'rtc-lab' }, 'page reliable', { ack: true });
      await client.multicast({ room: 'rtc-lab' }, 'page channel a', { ack: true, lane: 'channel:a' });
      await client.multicast({ room: 'rtc-lab' }, new Uint8Array(200_000).fill(7), { ack: true, lane: 'channel:b' });
      for (let i = 0; i < 20; i++) await client.multicast({ room: 'rtc-lab' }, `page unreliable ${i}`, { lane: 'unreliable' });
      return { transport: client.transport, id: client.id, maxUnreliable: client.connection?.capabilities.maxUnreliableSize };
    });
    expect(pageState.transport).toBe('webrtc');
    expect(pageState.maxUnreliable).toBeGreaterThanOrEqual(64 * 1024);

    const fromPage = (inbox: Delivery[]) => inbox.filter((d) => d.from === pageState.id);
    const summary = (d: Delivery) => [d.data instanceof Uint8Array ? `${d.data.length} bytes` : d.data, d.lane];
    await waitFor(() => Object.values(inboxes).every((inbox) => fromPage(inbox).filter((d) => d.lane !== 'unreliable' && !String(d.data).startsWith('page unreliable')).length >= 3), 15_000, 'the page to reach every Node client');
    // WebSocket has one lane: everything arrives on it, in order (documented downgrade).
    // Unreliable may be lost even on loopback (a burst right after the 200 kB message can go whole):
    // the page sends more until each lane-keeping recipient has one.
    const unreliableArrived = () => (['webtransport', 'webrtc'] as const).every((name) => fromPage(inboxes[name]).some((d) => d.lane === 'unreliable' && String(d.data).startsWith('page unreliable')));
    for (let i = 20; i < 500 && !unreliableArrived(); i++) {
      await page.evaluate((n) => (window as unknown as { lab: { client: { multicast(t: { room: string }, d: string, o: { lane: 'unreliable' }): Promise<unknown> } } }).lab.client.multicast({ room: 'rtc-lab' }, `page unreliable ${n}`, { lane: 'unreliable' }), i);
    }
    expect(fromPage(inboxes.websocket).slice(0, 3).map(summary)).toEqual([
      ['page reliable', 'reliable'],
      ['page channel a', 'reliable'],
      ['200000 bytes', 'reliable'],
    ]);
    expect(fromPage(inboxes.websocket).slice(3).every((d) => d.lane === 'reliable')).toBe(true);
    // WebTransport and WebRTC keep the lanes.
    for (const name of ['webtransport', 'webrtc'] as const) {
      const got = fromPage(inboxes[name]);
      expect(got.filter((d) => d.lane !== 'unreliable').map(summary)).toEqual([
        ['page reliable', 'reliable'],
        ['page channel a', 'channel:a'],
        ['200000 bytes', 'channel:b'],
      ]);
      expect(got.some((d) => d.lane === 'unreliable' && String(d.data).startsWith('page unreliable'))).toBe(true);
    }

    // From a Node webrtc sender, the page receives on the sender's lanes.
    await nodes.webrtc.multicast({ room: 'rtc-lab' }, 'node reliable', { ack: true });
    await nodes.webrtc.multicast({ room: 'rtc-lab' }, 'node channel a', { ack: true, lane: 'channel:a' });
    for (let i = 0; i < 20; i++) await nodes.webrtc.multicast({ room: 'rtc-lab' }, 'node unreliable', { lane: 'unreliable' });
    await nodes.websocket.multicast({ room: 'rtc-lab' }, 'from websocket', { ack: true });
    const got = await page.evaluate(async () => {
      const { inbox } = (window as unknown as { lab: { inbox: { data: unknown; lane: string }[] } }).lab;
      const want = ['node reliable', 'node channel a', 'node unreliable', 'from websocket'];
      for (let i = 0; i < 400 && !want.every((w) => inbox.some((m) => m.data === w)); i++) await new Promise((resolve) => setTimeout(resolve, 25));
      return inbox.map((m) => [m.data, m.lane]);
    });
    expect(got).toEqual(
      expect.arrayContaining([
        ['node reliable', 'reliable'],
        ['node channel a', 'channel:a'],
        ['node unreliable', 'unreliable'],
        ['from websocket', 'reliable'],
      ]),
    );
    await page.evaluate(() => (window as unknown as { lab: { client: { close(): void } } }).lab.client.close());
    for (const client of Object.values(nodes)) client.close();
  }, 60_000);

  it('falls back to WebSocket when the webrtc signalling fails, and reports why', async () => {
    const result = await page.evaluate(async () => {
      const { createClient, connectWebRtc } = (window as unknown as { switchyard: PageModule }).switchyard;
      const client = createClient({
        transports: ['webrtc', 'websocket'],
        connectTimeoutMs: 3_000,
        connectors: { webrtc: (options) => connectWebRtc({ ...options, url: `${location.origin}/no-signalling-here/` }) },
      });
      let fallback: { transport: string; failed: { transport: string; reason: string }[] } | undefined;
      client.on('fallback', (transport, failed) => (fallback = { transport, failed }));
      await client.connect();
      const transport = client.transport;
      client.close();
      return { transport, fallback };
    });
    expect(result.transport).toBe('websocket');
    expect(result.fallback?.failed[0]?.transport).toBe('webrtc');
    expect(result.fallback?.failed[0]?.reason).toMatch(/404/);
  }, 30_000);

  it('connects two clients in the page peer-to-peer; messages on every lane leave the server counters flat', async () => {
    await page.evaluate(async () => {
      const { createClient } = (window as unknown as { switchyard: PageModule }).switchyard;
      const alice = createClient({ transports: 'websocket' });
      const bob = createClient({ transports: 'webrtc' });
      await Promise.all([alice.connect(), bob.connect()]);
      const incoming = new Promise<import('../transport.ts').Connection>((resolve) => bob.on('peer', (connection) => resolve(connection)));
      const toBob = await alice.peer(bob.id!);
      const toAlice = await incoming;
      (window as unknown as { pair: unknown }).pair = { alice, bob, toBob, toAlice };
    });
    const before = server.router.stats();
    const result = await page.evaluate(async () => {
      type Pair = { toBob: import('../transport.ts').Connection; toAlice: import('../transport.ts').Connection };
      const { toBob, toAlice } = (window as unknown as { pair: Pair }).pair;
      const atBob: [unknown, string][] = [];
      const atAlice: [unknown, string][] = [];
      toAlice.on('message', (m, lane) => atBob.push([typeof m === 'string' ? m : m.length, lane]));
      toBob.on('message', (m, lane) => atAlice.push([typeof m === 'string' ? m : m.length, lane]));
      toBob.send('hi bob');
      toBob.send(new Uint8Array(300_000), 'channel:bulk');
      toAlice.send('hi alice', 'channel:chat');
      for (let i = 0; i < 200 && !(atBob.length === 2 && atAlice.length === 1); i++) await new Promise((resolve) => setTimeout(resolve, 25));
      for (let i = 0; i < 50 && !atBob.some(([, lane]) => lane === 'unreliable'); i++) {
        toBob.send(`datagram ${i}`, 'unreliable');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      toBob.close(4000, 'bye');
      const closed = await toAlice.closed;
      return { atBob, atAlice, closed, transport: toBob.transport };
    });
    const after = server.router.stats();
    await page.evaluate(() => {
      const { alice, bob } = (window as unknown as { pair: { alice: { close(): void }; bob: { close(): void } } }).pair;
      alice.close();
      bob.close();
    });
    expect(result.transport).toBe('webrtc');
    expect(result.atBob.filter(([, lane]) => lane !== 'unreliable')).toEqual([
      ['hi bob', 'reliable'],
      [300_000, 'channel:bulk'],
    ]);
    expect(result.atBob.some(([, lane]) => lane === 'unreliable')).toBe(true);
    expect(result.atAlice).toEqual([['hi alice', 'channel:chat']]);
    // Nothing of the exchange crossed the server.
    expect({ routed: after.routed, deliveries: after.deliveries }).toEqual({ routed: before.routed, deliveries: before.deliveries });
    expect(result.closed).toEqual({ code: 4000, reason: 'bye', wasClean: true });
  }, 60_000);

  it('connects a page client and a Node client (wrtc) peer-to-peer, both ways', async () => {
    const node = createClient({ url: server.urls.http, transports: 'websocket' });
    await node.connect();
    const fromPage = new Promise<import('../transport.ts').Connection>((resolve) => node.on('peer', (connection) => resolve(connection)));
    const pageId = await page.evaluate(async () => {
      const { createClient } = (window as unknown as { switchyard: PageModule }).switchyard;
      const client = createClient({ transports: 'websocket' });
      await client.connect();
      const got: unknown[] = [];
      client.on('peer', (connection) => connection.on('message', (m) => got.push(m)));
      (window as unknown as { p2p: unknown }).p2p = { client, got };
      return client.id!;
    });
    // Node offers to the page.
    const toPage = await node.peer(pageId);
    toPage.send('from node', 'channel:x');
    // The page offers to Node.
    const [pageGot] = await Promise.all([
      page.evaluate(async (nodeId) => {
        const { client, got } = (window as unknown as { p2p: { client: import('../client.ts').SwitchyardClient; got: unknown[] } }).p2p;
        const toNode = await client.peer(nodeId);
        toNode.send('from page');
        for (let i = 0; i < 200 && got.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 25));
        return got;
      }, node.id!),
      fromPage.then(async (connection) => {
        const got: unknown[] = [];
        connection.on('message', (m) => got.push(m));
        await waitFor(() => got.length === 1, 10_000, 'the page to reach Node directly');
        expect(got).toEqual(['from page']);
      }),
    ]);
    expect(pageGot).toEqual(['from node']);
    toPage.close();
    node.close();
  }, 60_000);
});
