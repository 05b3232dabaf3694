/**
 * A page from another origin (a second local server, as a Vite dev server on :5173 would be) uses
 * the browser bundle — built exactly as `npm run build:lib` builds dist/browser/client.js — to
 * reach a Switchyard server over websocket, long-polling, webtransport and webrtc in headless
 * Chromium: it works when `allowedOrigins` names the page's origin, and each transport is refused
 * without. WebRTC's signalling session (its `Location`) is readable from that origin, and can be
 * ended with DELETE.
 */
import type { AddressInfo } from 'node:net';
import http from 'node:http';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleBrowserClient, CLIENT_PAGE } from '../test-support/browser-page.ts';
import { launchChromium } from '../test-support/chromium.ts';
import type { ConnectRequest } from '../transports/webtransport/engine/h3-connection.ts';
import { startServer, type SwitchyardServer } from './index.ts';

let pageServer: http.Server;
let pageOrigin: string;
let browser: Browser;

beforeAll(async () => {
  const script = await bundleBrowserClient();
  pageServer = http.createServer((request, response) => {
    if (request.url === '/client.js') response.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
    else response.writeHead(200, { 'content-type': 'text/html' }).end(CLIENT_PAGE);
  });
  await new Promise<void>((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
  pageOrigin = `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}`;
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => pageServer?.close(resolve));
});

type Outcome = { transport: string; ok: true; echoed: unknown } | { transport: string; ok: false; error: string };
/** What the page saw of WebRTC signalling: the offer's status, the session it was told, and its DELETE. */
type Signalling = { status: number; location: string | null; deleted: number } | { error: string };

/** In the page: each transport alone connects, sends itself a message with a receipt, and reports. */
async function tryEveryTransport(page: Page, server: SwitchyardServer): Promise<{ outcomes: Outcome[]; signalling: Signalling }> {
  return page.evaluate(
    async ({ url, webTransportUrl, certificateSha256 }) => {
      const { createClient } = (window as unknown as { switchyard: typeof import('../transports/browser-client.ts') }).switchyard;
      const outcomes: Outcome[] = [];
      for (const transport of ['websocket', 'long-polling', 'webtransport', 'webrtc'] as const) {
        // The WebTransport URL and hash are given, so its refusal is the CONNECT's own (not /info's CORS).
        const client = createClient({ url, transports: transport, reconnect: false, transportOptions: { webTransportUrl, certificateSha256 } as never });
        try {
          const echoed = new Promise<unknown>((resolve) => client.on('message', (m) => resolve(m.data)));
          await client.connect();
          await client.send(client.id!, `hello over ${transport}`, { ack: true });
          outcomes.push({ transport, ok: true, echoed: await echoed });
        } catch (error) {
          outcomes.push({ transport, ok: false, error: String(error) });
        } finally {
          client.close();
        }
      }
      // WebRTC signalling by hand: the client core only needs Location to end a session it gives up on.
      let signalling: Signalling;
      const peer = new RTCPeerConnection();
      try {
        peer.createDataChannel('reliable');
        await peer.setLocalDescription(await peer.createOffer());
        const offer = await fetch(`${url}/rtc`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: peer.localDescription!.sdp });
        await offer.text();
        const location = offer.headers.get('location');
        const deleted = location ? (await fetch(new URL(location, url), { method: 'DELETE' })).status : 0;
        signalling = { status: offer.status, location, deleted };
      } catch (error) {
        signalling = { error: String(error) };
      } finally {
        peer.close();
      }
      return { outcomes, signalling };
    },
    { url: server.urls.http, webTransportUrl: server.urls.webtransport!, certificateSha256: server.certificate!.sha256Hex },
  );
}

async function run(allowedOrigins: string[] | undefined): Promise<{ outcomes: Outcome[]; signalling: Signalling; connects: number[] }> {
  const connects: number[] = [];
  const server = await startServer({
    port: 0,
    certificate: 'ephemeral',
    ...(allowedOrigins ? { allowedOrigins } : {}),
    plugins: [{ webTransportConnect: (_request: ConnectRequest, status: number) => void connects.push(status) }],
    router: { helloTimeoutMs: 5_000 },
  });
  const page = await browser.newPage();
  try {
    await page.goto(`${pageOrigin}/`);
    await page.waitForFunction(() => 'switchyard' in window);
    return { ...(await tryEveryTransport(page, server)), connects };
  } finally {
    await page.close();
    await server.close();
  }
}

describe('a page from another origin (Chromium, browser bundle)', () => {
  it('connects over websocket, long-polling, webtransport and webrtc when allowedOrigins names it; reads and ends a signalling session', async () => {
    const { outcomes, signalling, connects } = await run([pageOrigin]);
    expect(outcomes).toEqual([
      { transport: 'websocket', ok: true, echoed: 'hello over websocket' },
      { transport: 'long-polling', ok: true, echoed: 'hello over long-polling' },
      { transport: 'webtransport', ok: true, echoed: 'hello over webtransport' },
      { transport: 'webrtc', ok: true, echoed: 'hello over webrtc' },
    ]);
    expect(signalling).toEqual({ status: 201, location: expect.stringMatching(/^\/rtc\/.+/), deleted: 204 });
    expect(connects).toEqual([200]);
  }, 60_000);

  it('is refused on every transport without it (the WebTransport CONNECT answered 403)', async () => {
    const { outcomes, signalling, connects } = await run(undefined);
    expect(outcomes.map((o) => [o.transport, o.ok])).toEqual([
      ['websocket', false],
      ['long-polling', false],
      ['webtransport', false],
      ['webrtc', false],
    ]);
    expect(signalling).toEqual({ error: expect.stringMatching(/Failed to fetch/) });
    expect(connects.length).toBeGreaterThan(0);
    expect(new Set(connects)).toEqual(new Set([403]));
  }, 60_000);
});
