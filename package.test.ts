/**
 * The package as a stranger gets it: `npm pack`, installed from the tarball into a fresh project
 * with no TypeScript tooling, the README's chat example run with plain `node` (its printed output
 * compared with the README's), a WebSocket client that loads no native code, and a consumer .ts
 * file type-checked against the package's .d.ts with `tsc --init`'s settings.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = import.meta.dirname;
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

interface PackInfo {
  filename: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: { path: string }[];
}

let work: string;
let consumer: string;
let pack: PackInfo;

/** The README's first example and the output it shows. */
async function readmeExample(): Promise<{ code: string; output: string }> {
  const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
  const match = /## A chat in[^\n]*\n[\s\S]*?```js\n([\s\S]*?)```[\s\S]*?```text\n([\s\S]*?)```/.exec(readme);
  if (!match) throw new Error('README has no chat example followed by its output');
  return { code: match[1]!, output: match[2]! };
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'switchyard-pack-'));
  // prepack builds dist/ first.
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
  pack = (JSON.parse(stdout) as PackInfo[])[0]!;
  consumer = path.join(work, 'consumer');
  await mkdir(consumer);
  await writeFile(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  // Dependencies come from the registry (or npm's cache); nothing of this repository's node_modules.
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', path.join(work, pack.filename)], { cwd: consumer });
}, 300_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('the packed package', () => {
  it('ships built JavaScript, declarations and the browser bundle only', () => {
    const files = pack.files.map((f) => f.path);
    console.log(`tarball ${pack.filename}: ${(pack.size / 1024).toFixed(1)} KiB packed, ${(pack.unpackedSize / 1024).toFixed(1)} KiB unpacked, ${pack.entryCount} files`);
    expect(files.filter((f) => !f.startsWith('dist/') && !['package.json', 'README.md'].includes(f))).toEqual([]);
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    expect(files.filter((f) => /test|benchmarks|lab-ui/.test(f))).toEqual([]);
    for (const entry of ['dist/server/index.js', 'dist/server/index.d.ts', 'dist/transports/node-client.js', 'dist/transports/node-webtransport.js', 'dist/browser/client.js', 'dist/transports/browser-client.d.ts']) {
      expect(files).toContain(entry);
    }
  });

  it('installs with no TypeScript tooling, and the README chat example prints what the README says', async () => {
    expect(existsSync(path.join(consumer, 'node_modules', 'typescript'))).toBe(false);
    expect(existsSync(path.join(consumer, 'node_modules', 'tsx'))).toBe(false);
    const { code, output } = await readmeExample();
    await writeFile(path.join(consumer, 'chat.mjs'), code);
    const { stdout, stderr } = await run(process.execPath, ['chat.mjs'], { cwd: consumer, timeout: 60_000 });
    expect(stderr).toBe('');
    expect(stdout).toBe(output);
  }, 90_000);

  it('a WebSocket-only Node client loads no native code', async () => {
    const script = `
      import { startServer } from 'switchyard/server';
      const before = new Set(process.report.getReport().sharedObjects);
      const { createClient } = await import('switchyard/node');
      const server = await startServer({ port: 0, transports: ['websocket'], certificate: 'none' });
      const client = createClient({ url: server.urls.http, transports: 'websocket' });
      await client.connect();
      client.close();
      await server.close();
      console.log(JSON.stringify(process.report.getReport().sharedObjects.filter((file) => !before.has(file))));`;
    await writeFile(path.join(consumer, 'ws-only.mjs'), script);
    const { stdout } = await run(process.execPath, ['ws-only.mjs'], { cwd: consumer, timeout: 60_000 });
    expect(JSON.parse(stdout)).toEqual([]);
    // The WebTransport entry does load the QUIC binding: the check above can see one.
    await writeFile(path.join(consumer, 'wt.mjs'), `const before = new Set(process.report.getReport().sharedObjects); await import('switchyard/node/webtransport'); await import('@matrixai/quic'); console.log(JSON.stringify(process.report.getReport().sharedObjects.filter((f) => !before.has(f))));`);
    const loaded = JSON.parse((await run(process.execPath, ['wt.mjs'], { cwd: consumer, timeout: 60_000 })).stdout) as string[];
    expect(loaded.some((file) => file.includes('quic'))).toBe(true);
  }, 90_000);

  it("type-checks a consumer against the package's .d.ts with tsc --init's settings", async () => {
    // A TypeScript user has typescript and @types/node; they come after the plain-node runs above.
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--no-save', '@types/node@20'], { cwd: consumer });
    await run(process.execPath, [TSC, '--init'], { cwd: consumer });
    await writeFile(
      path.join(consumer, 'consumer.ts'),
      `import { attach, startServer, type SwitchyardServer } from 'switchyard/server';
import { createClient, type Delivery } from 'switchyard/node';
import { webtransport } from 'switchyard/node/webtransport';
import { createClient as createBrowserClient } from 'switchyard/client';
import http from 'node:http';

const server: SwitchyardServer = await startServer({ port: 0, allowedOrigins: ['https://app.example.com'], publicHost: 'chat.example.com' });
server.on('join', (client, room) => console.log(client.id, client.userId, room));
const deliveries: number = server.publish('prices', { eur: 1.08 }) + server.toRoom('lobby', 'hi') + server.sendTo('id', new Uint8Array(1));
const client = createClient({ url: server.urls.http, transports: ['webtransport', 'websocket'], connectors: { webtransport } });
client.on('message', (m: Delivery) => console.log(m.from, m.kind, m.to, m.user, m.data));
const id: string | undefined = await client.publish('prices', { eur: 1.08 }, { receipt: true });
client.on('receipt', (receiptId: string, from: string) => console.log(receiptId === id, from));
const attached = await attach(http.createServer(), { transports: ['websocket', 'long-polling'] });
await attached.close();
createBrowserClient({ transports: 'websocket' });
// @ts-expect-error: not a transport
createClient({ url: server.urls.http, transports: 'carrier-pigeon' });
console.log(deliveries);
`,
    );
    // tsc --init's settings, with our declarations checked too (it skips library .d.ts by default).
    const result = await run(process.execPath, [TSC, '--noEmit', '-p', '.', '--skipLibCheck', 'false', '--types', 'node'], { cwd: consumer }).then(
      () => ({ ok: true, output: '' }),
      (error: { stdout: string }) => ({ ok: false, output: error.stdout }),
    );
    expect(result.output).toBe('');
    expect(result.ok).toBe(true);
  }, 120_000);
});
