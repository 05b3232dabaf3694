/**
 * The browser client in headless Chromium: the bundle (as `npm run build:lib` builds
 * dist/browser/client.js, plus whatever else a test needs on the page) and a page served by a
 * Switchyard server from the same origin, with the bundle's exports on `window.switchyard`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { startServer, staticFiles, type SwitchyardServer, type SwitchyardServerOptions } from '../server/index.ts';
import { launchChromium } from './chromium.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

/**
 * The browser client bundled for the page. `alsoExport` adds export statements (paths from the
 * repository root) for modules the page needs beyond the package entry, e.g. a transport's
 * connector; without it the bundle is the package's entry alone.
 */
export async function bundleBrowserClient(alsoExport = ''): Promise<string> {
  const entry = alsoExport
    ? { stdin: { contents: `export * from './transports/browser-client.ts'; ${alsoExport}`, resolveDir: ROOT, loader: 'ts' as const } }
    : { entryPoints: [path.join(ROOT, 'transports/browser-client.ts')] };
  const bundle = await build({ ...entry, bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false });
  return bundle.outputFiles[0]!.text;
}

/** A page that imports the bundle; the page sets `window.ready` once `window.switchyard` is there. */
export const CLIENT_PAGE = '<!doctype html><script type="module">import * as switchyard from "./client.js"; window.switchyard = switchyard; window.ready = true;</script>';

export interface BrowserClientPage {
  server: SwitchyardServer;
  browser: Browser;
  page: Page;
  /** Closes the browser and the server, and removes the page's files. */
  close(): Promise<void>;
}

/**
 * A Switchyard server (ephemeral certificate, any free port, `serverOptions` on top) that also
 * serves the bundled client and CLIENT_PAGE, and Chromium on that page once the bundle loaded.
 */
export async function openBrowserClientPage(alsoExport: string, serverOptions: Partial<SwitchyardServerOptions> = {}): Promise<BrowserClientPage> {
  const files = await mkdtemp(path.join(os.tmpdir(), 'switchyard-page-'));
  let server: SwitchyardServer | undefined;
  let browser: Browser | undefined;
  const close = async () => {
    await browser?.close();
    await server?.close();
    await rm(files, { recursive: true, force: true });
  };
  try {
    await writeFile(path.join(files, 'client.js'), await bundleBrowserClient(alsoExport));
    await writeFile(path.join(files, 'index.html'), CLIENT_PAGE);
    server = await startServer({ port: 0, certificate: 'ephemeral', ...serverOptions, plugins: [{ handleRequest: staticFiles(files) }, ...(serverOptions.plugins ?? [])] });
    browser = await launchChromium();
    const page = await browser.newPage();
    await page.goto(`${server.urls.http}/`);
    await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);
    return { server, browser, page, close };
  } catch (error) {
    await close();
    throw error;
  }
}
