import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { markdownTables, textTables, type BenchReport } from './report.ts';
import { parseOptions, runBench, startServerProcess } from './run.ts';
import { TARGETS, type Target } from './targets.ts';
import { throughput } from './workloads.ts';

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

  it('runs the WebRTC rows: each lane, the unreliable one at a fixed rate counting its losses, the peer-to-peer pair beside the relayed one, and the comparison lines', async () => {
    const options = parseOptions(['--targets', 'webrtc,webrtc:channel,webrtc:unreliable,webrtc-p2p,webrtc-relayed', '--workloads', 'echo,echo-rate,setup,wire-bytes', '--sizes', '64', '--duration', '300', '--runs', '1']);
    if (options === 'help') throw new Error('unexpected --help');
    const { report, exitCode } = await runBench(options);
    const cell = (target: string, workload: string) => report.cells.find((c) => c.target === target && c.workload === workload)!;

    expect(report.cells.filter((c) => c.status === 'failed').map((c) => `${c.target} ${c.workload}: ${c.reason}`)).toEqual([]);
    expect(exitCode).toBe(0);
    for (const target of ['webrtc', 'webrtc:channel', 'webrtc-p2p', 'webrtc-relayed']) {
      expect(cell(target, 'echo').status, target).toBe('ok');
      expect(cell(target, 'echo').result!.latency!.count, target).toBeGreaterThan(0);
    }
    // Reliable lanes at a fixed rate: every echo back (a loss would have failed the cell).
    for (const target of ['webrtc', 'webrtc:channel']) expect(cell(target, 'echo-rate').result!.lost, target).toBe(0);
    // The unreliable lane runs the loss-counting cell only; its losses are counted, not failed.
    const datagrams = cell('webrtc:unreliable', 'echo-rate');
    expect(datagrams.status).toBe('ok');
    expect(datagrams.result!.lost).toBeGreaterThanOrEqual(0);
    expect(datagrams.result!.achievedRate).toBeGreaterThan(0);
    expect(datagrams.result!.serverCpuMicrosPerMsg).toBeGreaterThan(0);
    expect(cell('webrtc:unreliable', 'echo').reason).toMatch(/datagrams may be lost or reordered/);
    expect(cell('webrtc-p2p', 'echo-rate').reason).toMatch(/pair of clients/);
    // A 64 B message in SCTP's DATA chunk inside a DTLS record: more than the payload, less than a packet of padding.
    expect(cell('webrtc', 'wire-bytes').result!.wireBytesPerMessage).toBeGreaterThan(64);
    expect(cell('webrtc', 'wire-bytes').result!.wireBytesPerMessage).toBeLessThan(400);
    expect(cell('webrtc', 'setup').result!.setupMs).toBeGreaterThan(0);

    const table = textTables(report);
    for (const row of ['webrtc ', 'webrtc:channel', 'webrtc:unreliable', 'webrtc-p2p', 'webrtc-relayed']) expect(table).toContain(row);
    const comparisons = report.targets.filter((g) => g.issue === 16);
    expect(comparisons.every((g) => g.goal === 'comparison' && g.met === null)).toBe(true);
    expect(comparisons.find((g) => g.name.startsWith('webrtc-p2p / webrtc-relayed'))!.value).toBeGreaterThan(0);
  }, 240_000);

  // Linux: /proc gives the process's CPU per thread.
  it.skipIf(!existsSync('/proc/self/task'))('charges the server every thread’s CPU time, its wrtc process’s too, not only the JS thread', async () => {
    const server = await startServerProcess('switchyard', null);
    const pid = server.pid;
    /** utime + stime in ms from a /proc stat file (clock ticks of 10 ms). */
    const ticks = async (file: string) => {
      const fields = (await readFile(file, 'utf8')).split(') ')[1]!.split(' ');
      return (Number(fields[11]) + Number(fields[12])) * 10;
    };
    // The server runs wrtc in a child process of its own (transports/webrtc/wrtc-remote.ts), from the first offer on.
    const children = async () => (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).trim().split(' ').filter(Boolean);
    const whole = async () => {
      let ms = await ticks(`/proc/${pid}/stat`);
      for (const child of await children()) ms += await ticks(`/proc/${child}/stat`);
      return ms;
    };
    /** The probe's reading, bracketed by the kernel's count for both processes read just before and just after it. */
    const sample = async () => {
      const js = await ticks(`/proc/${pid}/task/${pid}/stat`);
      const low = await whole();
      const probe = (await server.probe.cpuMicros()) / 1000;
      return { js, low, probe, high: await whole() };
    };
    try {
      const before = await sample();
      await throughput(TARGETS.find((t) => t.name === 'webrtc')!, server.endpoint, server.probe, 64, 1_500);
      const after = await sample();
      expect(await children()).toHaveLength(1);
      // The native threads and the wrtc process worked (SCTP and DTLS run there), so a JS-thread-only probe would miss it.
      expect(after.low - before.high - (after.js - before.js)).toBeGreaterThan(50);
      // The probe's count moved as the kernel's count for both processes did (ticks are 10 ms, two readings each).
      const probe = after.probe - before.probe;
      expect(probe).toBeGreaterThanOrEqual(after.low - before.high - 40);
      expect(probe).toBeLessThanOrEqual(after.high - before.low + 40);
    } finally {
      await server.stop();
    }
  }, 60_000);
});
