/**
 * The npm-shipped Chromium (`@sparticuz/chromium`), used where no system Chromium is installed:
 * forced here with CHROMIUM_PATH=npm (the system one hidden), it must run the browser client over
 * native WebTransport and WebSocket against our server, as the system one does.
 */
import path from 'node:path';
import { build } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { startServer, type SwitchyardServer } from '../server/index.ts';
import { chromiumExecutable, launchChromium } from './chromium.ts';

const previous = process.env.CHROMIUM_PATH;
let server: SwitchyardServer | undefined;

afterAll(async () => {
  if (previous === undefined) delete process.env.CHROMIUM_PATH;
  else process.env.CHROMIUM_PATH = previous;
  await server?.close();
});

describe('Chromium from npm (no system Chromium)', () => {
  it('is found without /usr/bin/chromium and runs the browser client over WebTransport and WebSocket', async () => {
    process.env.CHROMIUM_PATH = 'npm';
    const executable = await chromiumExecutable();
    expect(executable.source).toBe('npm');
    expect(executable.path).not.toBe('/usr/bin/chromium');

    const bundle = await build({ entryPoints: [path.resolve(import.meta.dirname, '../transports/browser-client.ts')], bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false });
    const script = bundle.outputFiles[0]!.text;
    server = await startServer({
      port: 0,
      certificate: 'ephemeral',
      plugins: [
        {
          handleRequest(request, response) {
            if (request.url === '/client.js') response.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
            else if (request.url === '/') response.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><script type="module">import * as s from "/client.js"; window.switchyard = s;</script>');
            else return false;
            return true;
          },
        },
      ],
    });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`${server.urls.http}/`);
      await page.waitForFunction(() => 'switchyard' in window);
      const result = await page.evaluate(async () => {
        const { createClient } = (window as unknown as { switchyard: typeof import('../transports/browser-client.ts') }).switchyard;
        const seen: string[] = [];
        for (const transport of ['webtransport', 'websocket'] as const) {
          const client = createClient({ transports: transport, reconnect: false });
          const echoed = new Promise<unknown>((resolve) => client.on('message', (m) => resolve(m.data)));
          await client.connect();
          await client.send(client.id!, transport, { ack: true });
          seen.push(`${client.transport}:${String(await echoed)}`);
          client.close();
        }
        return { seen, native: typeof (globalThis as { WebTransport?: unknown }).WebTransport };
      });
      expect(result).toEqual({ seen: ['webtransport:webtransport', 'websocket:websocket'], native: 'function' });
      expect(browser.version()).toMatch(/^\d+\./);
    } finally {
      await browser.close();
    }
  }, 120_000);
});
