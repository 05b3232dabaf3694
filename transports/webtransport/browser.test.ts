/**
 * The browser client in headless Chromium, bundled from transports/browser-client.ts and served by
 * the Switchyard server itself (same origin): a page on WebTransport and Node clients on
 * WebSocket and WebTransport share a room; every lane arrives as specified; and with WebTransport
 * pointed at a closed UDP port the client falls back to WebSocket and says why.
 */
import dgram from 'node:dgram';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SwitchyardServer } from '../../server/index.ts';
import { openBrowserClientPage } from '../../test-support/browser-page.ts';
import { waitFor } from '../../test-support/servers.ts';
import type { Delivery } from '../client.ts';
import { createClient } from '../node-webtransport.ts';
import { connectWebTransportNode } from './node.ts';

let server: SwitchyardServer;
let page: Page;
let close: (() => Promise<void>) | undefined;

async function closedUdpPort(): Promise<number> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(resolve));
  return port;
}

beforeAll(async () => {
  // Every WebTransport connection first completes a stateless Retry: Chromium must follow it.
  ({ server, page, close } = await openBrowserClientPage("export { connectWebTransport } from './transports/webtransport/client.ts';", { webtransport: { retryAfterHandshakes: 0 } }));
}, 60_000);

afterAll(() => close?.());

describe('browser client (Chromium)', () => {
  it('joins a room over WebTransport with Node clients on WebSocket and WebTransport; lanes arrive as specified', async () => {
    const viaWebSocket = createClient({ url: server.urls.http, transports: 'websocket' });
    const viaWebTransport = createClient({ url: server.urls.http, transports: 'webtransport' });
    const wsInbox: Delivery[] = [];
    viaWebSocket.on('message', (d) => wsInbox.push(d));
    await Promise.all([viaWebSocket.connect(), viaWebTransport.connect()]);
    await Promise.all([viaWebSocket.join('lab'), viaWebTransport.join('lab')]);

    const pageState = await page.evaluate(async () => {
      const { createClient } = (window as unknown as { switchyard: typeof import('../browser-client.ts') }).switchyard;
      const client = createClient({ transports: ['webtransport', 'websocket', 'long-polling'] });
      const inbox: { data: unknown; lane: string; from: string }[] = [];
      client.on('message', (m) => inbox.push({ data: m.data, lane: m.lane, from: m.from }));
      await client.connect();
      await client.join('lab');
      (window as unknown as { lab: unknown }).lab = { client, inbox };
      await client.multicast({ room: 'lab' }, 'page reliable', { ack: true });
      await client.multicast({ room: 'lab' }, 'page channel a', { ack: true, lane: 'channel:a' });
      await client.multicast({ room: 'lab' }, 'page channel b', { ack: true, lane: 'channel:b' });
      await client.multicast({ room: 'lab' }, 'page unreliable', { lane: 'unreliable' });
      return { transport: client.transport, id: client.id };
    });
    expect(pageState.transport).toBe('webtransport');
    expect(server.webtransport!.engine.stats().retriesSent).toBeGreaterThanOrEqual(2); // the Node client's and the page's

    // The WebSocket client gets everything, each on its one reliable lane (documented downgrade).
    await waitFor(() => wsInbox.filter((d) => d.from === pageState.id).length === 4, 10_000, 'the page to reach the WebSocket client');
    expect(wsInbox.filter((d) => d.from === pageState.id).map((d) => [d.data, d.lane])).toEqual([
      ['page reliable', 'reliable'],
      ['page channel a', 'reliable'],
      ['page channel b', 'reliable'],
      ['page unreliable', 'reliable'],
    ]);

    // From a WebTransport sender, the page receives on the sender's lanes.
    await viaWebTransport.multicast({ room: 'lab' }, 'node reliable', { ack: true });
    await viaWebTransport.multicast({ room: 'lab' }, 'node channel a', { ack: true, lane: 'channel:a' });
    await viaWebTransport.multicast({ room: 'lab' }, 'node channel b', { ack: true, lane: 'channel:b' });
    await viaWebTransport.multicast({ room: 'lab' }, 'node unreliable', { lane: 'unreliable' });
    await viaWebSocket.multicast({ room: 'lab' }, 'from websocket', { ack: true });
    const got = await page.evaluate(async () => {
      const { inbox } = (window as unknown as { lab: { inbox: { data: unknown; lane: string }[] } }).lab;
      for (let i = 0; i < 200 && inbox.length < 5; i++) await new Promise((resolve) => setTimeout(resolve, 25));
      return inbox.map((m) => [m.data, m.lane]);
    });
    expect(got).toEqual(
      expect.arrayContaining([
        ['node reliable', 'reliable'],
        ['node channel a', 'channel:a'],
        ['node channel b', 'channel:b'],
        ['node unreliable', 'unreliable'],
        ['from websocket', 'reliable'],
      ]),
    );
    viaWebSocket.close();
    viaWebTransport.close();
  }, 60_000);

  it('falls back to WebSocket when UDP to the server is closed, and reports why', async () => {
    const port = await closedUdpPort();
    const result = await page.evaluate(async (closedPort) => {
      const { createClient, connectWebTransport } = (window as unknown as { switchyard: typeof import('../browser-client.ts') & typeof import('./client.ts') }).switchyard;
      const client = createClient({
        transports: ['webtransport', 'websocket', 'long-polling'],
        connectTimeoutMs: 3_000,
        connectors: { webtransport: (options) => connectWebTransport({ ...options, webTransportUrl: `https://127.0.0.1:${closedPort}/wt` }) },
      });
      let fallback: { transport: string; failed: { transport: string; reason: string }[] } | undefined;
      client.on('fallback', (transport, failed) => (fallback = { transport, failed }));
      await client.connect();
      const transport = client.transport;
      client.close();
      return { transport, fallback };
    }, port);
    expect(result.transport).toBe('websocket');
    expect(result.fallback?.transport).toBe('websocket');
    expect(result.fallback?.failed[0]?.transport).toBe('webtransport');
    expect(result.fallback?.failed[0]?.reason).toMatch(/\w/);
  }, 30_000);
});

describe('Node client', () => {
  it('falls back to WebSocket from a closed UDP port within milliseconds (ICMP), not at the 5 s connect timeout', async () => {
    const port = await closedUdpPort();
    const client = createClient({
      url: server.urls.http,
      transports: ['webtransport', 'websocket'],
      connectors: { webtransport: (options) => connectWebTransportNode({ ...options, webTransportUrl: `https://127.0.0.1:${port}/wt` }) },
    });
    let failed: { transport: string; reason: string }[] = [];
    client.on('fallback', (_transport, reasons) => (failed = reasons));
    const start = performance.now();
    await client.connect();
    const ms = performance.now() - start;
    expect(client.transport).toBe('websocket');
    expect(failed[0]?.reason).toMatch(/unreachable/);
    expect(ms).toBeLessThan(1_500);
    client.close();
  });
});
