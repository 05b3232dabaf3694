/**
 * Headless Chromium for browser tests (Debian's `chromium`, driven by playwright-core), with the
 * flags this machine needs: no sandbox as root, no background networking (the network is closed),
 * no proxy (WebTransport fails through one) and — unlike many setups — QUIC left on.
 */
import http from 'node:http';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Playwright gives every launch a fresh temporary profile (its own --user-data-dir). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-proxy-server',
      // WebRTC host candidates as real addresses (not mDNS names, which nothing resolves here).
      '--disable-features=WebRtcHideLocalIpsWithMdns',
    ],
  });
}

/**
 * A page on a blank http://127.0.0.1 origin (a secure context, as WebTransport requires),
 * served by a throw-away server that `close()` stops.
 */
export async function blankSecurePage(browser: Browser): Promise<{ page: Page; close: () => Promise<void> }> {
  const server = http.createServer((_request, response) => response.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>test</title>'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${(server.address() as { port: number }).port}/`);
  return {
    page,
    close: async () => {
      await page.close();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
