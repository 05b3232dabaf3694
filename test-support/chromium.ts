/**
 * Headless Chromium for browser tests, driven by playwright-core: Debian's `chromium` where it is
 * installed (`.ci/run` installs it), else the Chromium that the `@sparticuz/chromium` npm package
 * ships (so `npm install && npm test` needs nothing from apt). Flags this machine needs: no sandbox
 * as root, no background networking (the network is closed), no proxy (WebTransport fails through
 * one) and — unlike many setups — QUIC left on.
 *
 * `CHROMIUM_PATH` names a binary to use; `CHROMIUM_PATH=npm` forces the npm one (the test of the
 * fallback).
 */
import { access } from 'node:fs/promises';
import http from 'node:http';
import { chromium, type Browser, type Page } from 'playwright-core';

const SYSTEM_CHROMIUM = '/usr/bin/chromium';

/** Where the browser comes from, and its binary. */
export async function chromiumExecutable(): Promise<{ source: 'system' | 'npm' | 'CHROMIUM_PATH'; path: string }> {
  const wanted = process.env.CHROMIUM_PATH;
  if (wanted && wanted !== 'npm') return { source: 'CHROMIUM_PATH', path: wanted };
  if (wanted !== 'npm' && (await access(SYSTEM_CHROMIUM).then(() => true, () => false))) return { source: 'system', path: SYSTEM_CHROMIUM };
  // Unpacks (once, into the temporary folder) the brotli-compressed build the package carries.
  const { default: packaged } = await import('@sparticuz/chromium');
  return { source: 'npm', path: await packaged.executablePath() };
}

/** Playwright gives every launch a fresh temporary profile (its own --user-data-dir). */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: (await chromiumExecutable()).path,
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
