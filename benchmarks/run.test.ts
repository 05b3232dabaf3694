import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { markdownTables, textTables, type BenchReport } from './report.ts';
import { parseOptions, runBench } from './run.ts';
import { TARGETS, type Target } from './targets.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function bench(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', path.join(ROOT, 'benchmarks', 'run.ts'), ...args], { cwd: ROOT }, (error, stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, stdout, stderr }));
  });
}

/** The raw ws row with its client changed: `tamper` sees each echo coming back and may drop or repeat it. */
function tampered(name: string, tamper: (deliver: (payload: Uint8Array) => void, payload: Uint8Array, count: number) => void): Target {
  const ws = TARGETS.find((t) => t.name === 'ws')!;
  return {
    ...ws,
    name,
    description: `ws, with echoes tampered with by the test (${name})`,
    async connect(endpoint) {
      const client = await ws.connect(endpoint);
      let count = 0;
      return { ...client, onEcho: (listener) => client.onEcho((payload) => tamper(listener, payload, ++count)) };
    },
  };
}

describe('npm run bench', () => {
  it('prints its usage for --help, and exits 2 with one line for an unknown target or flag', async () => {
    const wrong = [['--targets', 'websocket,nope'], ['--bogus']];
    const [help, ...answers] = await Promise.all([bench(['--help']), ...wrong.map(bench)]);
    expect(help!.code).toBe(0);
    expect(help!.stdout).toMatch(/^Usage: npm run bench -- \[options\]/);
    expect(help!.stdout).toContain('--targets');

    for (const [i, args] of wrong.entries()) {
      const { code, stdout, stderr } = answers[i]!;
      expect(code).toBe(2);
      expect(stdout).toBe('');
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(stderr).toMatch(args[0] === '--bogus' ? /^bench: Unknown option '--bogus'/ : /^bench: unknown target nope; known: websocket, /);
    }
  }, 120_000);

  it('fails a cell that loses or misroutes a reliable delivery: in its status, the table and the exit code', async () => {
    const lossy = tampered('ws-drops-every-10th', (deliver, payload, n) => (n % 10 === 0 ? undefined : deliver(payload)));
    const repeating = tampered('ws-repeats-every-10th', (deliver, payload, n) => {
      deliver(payload);
      if (n % 10 === 0) deliver(payload);
    });
    const honest = TARGETS.find((t) => t.name === 'ws')!;
    const options = parseOptions(['--workloads', 'echo-rate', '--duration', '300', '--runs', '1']);
    if (options === 'help') throw new Error('unexpected --help');
    const { report, exitCode } = await runBench({ ...options, targets: [honest, lossy, repeating] });

    const cell = (target: string) => report.cells.find((c) => c.target === target)!;
    expect(cell('ws').status).toBe('ok');
    expect(cell('ws').result!.lost).toBe(0);
    expect(cell('ws-drops-every-10th').status).toBe('failed');
    expect(cell('ws-drops-every-10th').reason).toMatch(/run 1: \d+ reliable deliveries lost/);
    expect(cell('ws-repeats-every-10th').status).toBe('failed');
    expect(cell('ws-repeats-every-10th').reason).toMatch(/misrouted/);
    expect(exitCode).toBe(1);
    const table = textTables(report);
    expect(table).toMatch(/ws-drops-every-10th \(naive\)\s+FAILED size=64 rate=2000: run 1: \d+ reliable deliveries lost/);
    expect(table).toMatch(/achieved\/s/);
  }, 180_000);

  it('the README quotes its benchmark tables verbatim from a JSON report committed under benchmarks/results/', async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const quoted = [...readme.matchAll(/<!-- bench-results: (benchmarks\/results\/[\w.-]+\.json) -->\n([\s\S]*?)\n<!-- \/bench-results -->/g)];
    expect(quoted.length).toBeGreaterThan(0);
    for (const [, file, text] of quoted) {
      const report = JSON.parse(await readFile(path.join(ROOT, file!), 'utf8')) as BenchReport;
      expect(text!.trim(), file).toBe(markdownTables(report).trim());
      expect(readme).toContain(report.meta.command!);
    }
  });
});
