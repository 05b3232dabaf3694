/**
 * `npm run bench`: identical workloads over every Switchyard transport and the peers (raw ws,
 * Socket.IO), server in a child process, this process as load generator. Writes JSON and a
 * self-contained HTML report to bench-results/, prints a table and the target ratios.
 *
 *   npm run bench -- --quick                  under 2 minutes, one run per cell
 *   npm run bench -- --targets websocket,ws --workloads echo,throughput --duration 3000 --runs 5
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ServerKind } from './raw-protocol.ts';
import { describeParams, formatCell, headline, renderHtml, type BenchReport, type Cell } from './report.ts';
import { TARGETS, type Target } from './targets.ts';
import { ackedDelivery, connectionSetup, echoAtRate, echoRtt, fanOut, fanOutMaxRate, idleMemory, pubSub, throughput, wireBytes, type CellResult, type Endpoint, type ServerProbe } from './workloads.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    targets: { type: 'string' },
    workloads: { type: 'string' },
    sizes: { type: 'string' },
    duration: { type: 'string' },
    runs: { type: 'string' },
    out: { type: 'string', default: path.join(ROOT, 'bench-results') },
  },
});
const quick = args.quick!;
const durationMs = Number(args.duration ?? (quick ? 200 : 3_000));
const runs = Number(args.runs ?? (quick ? 1 : 3));
const sizes = (args.sizes ?? '64,1024,65536,1048576').split(',').map(Number);
const workloads = new Set((args.workloads ?? 'echo,echo-rate,throughput,fanout,fanout-max,setup,memory,pubsub,acked,wire-bytes').split(','));
const targets = args.targets ? TARGETS.filter((t) => args.targets!.split(',').includes(t.name)) : TARGETS;
const POLLING = new Set(['polling', 'polling+tls', 'long-polling', 'long-polling+tls', 'socket.io-polling', 'socket.io-polling+tls']);

interface Plan {
  target: Target;
  workload: Cell['workload'];
  params: Record<string, number>;
  skip?: string;
  run?: (endpoint: Endpoint, probe: ServerProbe) => Promise<CellResult>;
}

/** --quick keeps 1000-subscriber cells to the plaintext push transports (time), saying so. */
function quickSkipsThousand(target: Target): string | undefined {
  return POLLING.has(target.name) || target.tls ? '--quick runs 1000 subscribers only on the plaintext push transports; run without --quick' : undefined;
}

function plan(): Plan[] {
  const plans: Plan[] = [];
  for (const target of targets) {
    if (workloads.has('echo')) for (const size of sizes) plans.push({ target, workload: 'echo', params: { size }, run: (e) => echoRtt(target, e, size, durationMs) });
    if (workloads.has('echo-rate')) {
      const rate = POLLING.has(target.name) ? 200 : 2_000;
      plans.push({ target, workload: 'echo-rate', params: { size: 64, rate }, run: (e) => echoAtRate(target, e, 64, rate, durationMs) });
    }
    if (workloads.has('throughput')) {
      // The headline comparison: even --quick gives it 750 ms, so the JIT has warmed up before the window.
      const ms = Math.max(durationMs, 750);
      plans.push({ target, workload: 'throughput', params: { size: 64, window: 32 }, run: (e, p) => throughput(target, e, p, 64, ms) });
    }
    if (workloads.has('fanout')) {
      for (const subscribers of [1, 10, 100, 1000]) {
        const rate = quick ? 50 : 100;
        const skip = quick && subscribers === 1000 ? quickSkipsThousand(target) : undefined;
        plans.push({ target, workload: 'fanout', params: { subscribers, rate }, ...(skip ? { skip } : { run: (e, p) => fanOut(target, e, p, subscribers, rate, durationMs) }) });
      }
    }
    if (workloads.has('fanout-max')) {
      for (const subscribers of [10, 1000]) {
        const skip = quick && subscribers === 1000 ? quickSkipsThousand(target) : undefined;
        plans.push({ target, workload: 'fanout-max', params: { subscribers, burst: 64 }, ...(skip ? { skip } : { run: (e, p) => fanOutMaxRate(target, e, p, subscribers, durationMs, 64) }) });
      }
    }
    const connections = quick ? 10 : 20;
    const idle = quick ? 50 : 500;
    if (workloads.has('setup')) plans.push({ target, workload: 'setup', params: { connections }, run: (e) => connectionSetup(target, e, connections) });
    if (workloads.has('memory')) plans.push({ target, workload: 'memory', params: { connections: idle }, run: (e, p) => idleMemory(target, e, p, idle) });
    if (workloads.has('pubsub')) plans.push({ target, workload: 'pubsub', params: { topics: 100, subscribers: 50, rate: 200 }, run: (e) => pubSub(target, e, 200, durationMs) });
    if (workloads.has('acked')) {
      const skip = target.server === 'ws' ? 'raw ws has no receipts: acknowledged delivery needs a protocol on top, which is what the others add' : undefined;
      plans.push({ target, workload: 'acked', params: { size: 64 }, ...(skip ? { skip } : { run: (e) => ackedDelivery(target, e, durationMs) }) });
    }
    if (workloads.has('wire-bytes')) {
      // Bytes per message are the same every time; polling waits ~100 ms per echo, so count fewer.
      const messages = target.name.startsWith('polling') ? 10 : 200;
      plans.push({ target, workload: 'wire-bytes', params: { size: 64, messages }, run: (e) => wireBytes(target, e, messages) });
    }
  }
  for (const item of plans) {
    const reason = item.skip ?? laneSkips(item.target, item.workload);
    if (reason) {
      item.skip = reason;
      delete item.run;
    }
  }
  return plans;
}

/** Cells a lane row cannot run, or runs the same as its reliable row, and why. */
function laneSkips(target: Target, workload: Cell['workload']): string | undefined {
  if (!target.lane || target.lane === 'reliable') return undefined;
  if (workload === 'setup' || workload === 'memory') return 'a lane is chosen per message: connection setup and idle memory are those of the reliable row';
  if (target.lane === 'unreliable' && !['fanout', 'pubsub'].includes(workload)) {
    return 'datagrams may be lost or reordered, and this workload pairs replies in order and waits for each; the unreliable lane runs the workloads that count losses (fan-out, pub/sub) and the head-of-line experiment';
  }
  return undefined;
}

/** Starts the server process for one kind and reads its port. */
async function startServerProcess(kind: ServerKind): Promise<{ child: ChildProcess; endpoint: Endpoint; probe: ServerProbe }> {
  // BENCH_SERVER_NODE_ARGS adds Node flags to the server process, e.g. '--cpu-prof' to profile it.
  const extra = process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const child = fork(path.join(ROOT, 'benchmarks', 'bench-server.ts'), [kind], { execArgv: ['--import', 'tsx', '--expose-gc', ...extra], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const endpoint = await new Promise<Endpoint>((resolve, reject) => {
    let buffer = '';
    child.stdout!.on('data', (data: Buffer) => {
      buffer += data.toString();
      const line = buffer.split('\n')[0];
      if (buffer.includes('\n')) resolve(JSON.parse(line!) as Endpoint);
    });
    child.once('exit', (code) => reject(new Error(`${kind} server exited with ${code}`)));
  });
  const ask = <T>(question: 'cpu' | 'memory') =>
    new Promise<T>((resolve, reject) => {
      if (child.exitCode !== null) return reject(new Error(`${kind} server process has exited`));
      child.once('message', (answer) => resolve(answer as T));
      child.send(question);
    });
  const probe: ServerProbe = {
    cpuMicros: async () => (await ask<{ cpuMicros: number }>('cpu')).cpuMicros,
    memoryAfterGc: async () => (await ask<{ memoryBytes: number }>('memory')).memoryBytes,
  };
  return { child, endpoint, probe };
}

/** Lets the server exit by itself (so a --cpu-prof profile gets written), killing it after 5 s. */
async function stopServerProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.disconnect();
  const timer = setTimeout(() => child.kill(), 5_000);
  await exited;
  clearTimeout(timer);
}

function progress(done: number, total: number, label: string): void {
  const width = 30;
  const filled = Math.round((done / total) * width);
  process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${label.padEnd(60).slice(0, 60)}`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const plans = plan();
  const cells: Cell[] = [];
  const started = Date.now();
  let done = 0;
  for (const kind of ['switchyard', 'ws', 'socketio'] as const) {
    // Idle memory first, while the server process is fresh: connections that earlier cells left
    // closing (slow close handshakes, retired polling sessions) would otherwise be freed mid-measurement.
    const mine = plans.filter((p) => p.target.server === kind).sort((a, b) => Number(b.workload === 'memory') - Number(a.workload === 'memory'));
    if (mine.length === 0) continue;
    const server = await startServerProcess(kind);
    try {
      for (const item of mine) {
        progress(done, plans.length, `${item.target.name} ${item.workload} ${describeParams(item.params)}`);
        const cell: Cell = { target: item.target.name, tls: item.target.tls, workload: item.workload, params: item.params, status: 'skipped', runs: [] };
        const cellStarted = performance.now();
        if (item.skip || !item.run) cell.reason = item.skip;
        else {
          try {
            for (let i = 0; i < runs; i++) cell.runs.push(await item.run(server.endpoint, server.probe));
            const figures = cell.runs.map((r) => headline(cell, r) ?? 0);
            const middle = median(figures);
            cell.result = cell.runs[figures.indexOf(middle)];
            cell.spread = middle ? Math.round(((Math.max(...figures) - Math.min(...figures)) / middle) * 1000) / 1000 : 0;
            cell.status = 'ok';
          } catch (error) {
            cell.status = 'failed';
            cell.reason = (error as Error).message;
          }
        }
        cell.elapsedMs = Math.round(performance.now() - cellStarted);
        cells.push(cell);
        done++;
      }
    } finally {
      await stopServerProcess(server.child);
    }
  }
  progress(done, plans.length, `done in ${Math.round((Date.now() - started) / 1000)} s`);
  process.stderr.write('\n');

  const find = (target: string, workload: Cell['workload'], params?: Record<string, number>) =>
    cells.find((c) => c.target === target && c.workload === workload && c.status === 'ok' && (!params || Object.entries(params).every(([k, v]) => c.params[k] === v)))?.result;
  const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b ? Math.round((a / b) * 100) / 100 : null);
  const wsThroughput = find('websocket', 'throughput')?.msgsPerSec;
  const goals: BenchReport['targets'] = [
    { name: 'websocket / raw ws echo throughput (64 B)', value: ratio(wsThroughput, find('ws', 'throughput')?.msgsPerSec), goal: '≥ 0.9', met: null },
    { name: 'websocket / socket.io-websocket echo throughput (64 B)', value: ratio(wsThroughput, find('socket.io-websocket', 'throughput')?.msgsPerSec), goal: '≥ 2', met: null },
    { name: 'long-polling / socket.io-polling p50 echo RTT (64 B)', value: ratio(find('long-polling', 'echo', { size: 64 })?.latency?.p50, find('socket.io-polling', 'echo', { size: 64 })?.latency?.p50), goal: '≤ 0.25', met: null },
    { name: 'fan-out to 1000 websocket subscribers (max rate): deliveries per server CPU-second', value: find('websocket', 'fanout-max', { subscribers: 1000 })?.deliveriesPerCpuSecond ?? null, goal: '≥ 1000000', met: null },
  ];
  for (const goal of goals) {
    if (goal.value === null) continue;
    const [op, bound] = goal.goal.split(' ');
    goal.met = op === '≥' ? goal.value >= Number(bound) : goal.value <= Number(bound);
  }

  const commit = (() => {
    try {
      return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim();
    } catch {
      return 'unknown';
    }
  })();
  const report: BenchReport = {
    schemaVersion: 1,
    meta: {
      date: new Date().toISOString(),
      commit,
      node: process.version,
      os: `${os.type()} ${os.release()}`,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      options: { quick, durationMs, runs, sizes, workloads: [...workloads], targets: targets.map((t) => t.name) },
    },
    cells,
    targets: goals,
  };
  await mkdir(args.out!, { recursive: true });
  const stamp = report.meta.date.replaceAll(':', '-').slice(0, 19);
  const jsonFile = path.join(args.out!, `bench-${stamp}.json`);
  const htmlFile = path.join(args.out!, `bench-${stamp}.html`);
  await writeFile(jsonFile, JSON.stringify(report, null, 2));
  await writeFile(htmlFile, await renderHtml(report));

  const rows: Record<string, Record<string, string>> = {};
  for (const cell of cells) {
    if (cell.status === 'skipped' && cell.reason?.startsWith('not implemented')) continue;
    const column = `${cell.workload} ${describeParams(cell.params)}`;
    (rows[column] ??= {})[cell.target] = cell.status === 'ok' ? shortFigure(cell) : cell.status;
  }
  console.table(rows);
  console.log('\nTargets (ratios measured in this run):');
  for (const goal of goals) console.log(`  ${goal.met === null ? '?' : goal.met ? '✓' : '✗'} ${goal.name}: ${goal.value ?? 'n/a'} (goal ${goal.goal})`);
  console.log(`\nPer-cell detail: ${cells.filter((c) => c.status !== 'ok').length} cells not run (see reasons in JSON).\n${jsonFile}\n${htmlFile}`);
  void formatCell; // detail formatting is used by the lab
}

function shortFigure(cell: Cell): string {
  const r = cell.result!;
  switch (cell.workload) {
    case 'echo':
      return `${r.latency!.p50}/${r.latency!.p99} µs`;
    case 'throughput':
      return `${r.msgsPerSec}/s ${r.serverCpuMicrosPerMsg ?? '?'}/${r.clientCpuMicrosPerMsg ?? '?'}µs`;
    case 'fanout':
      return `${r.msgsPerSec}/s p99 ${Math.round(r.latency!.p99 / 1000)}ms`;
    case 'fanout-max':
      return `${r.msgsPerSec}/s ${r.serverCpuMicrosPerMsg ?? '?'}µs`;
    case 'setup':
      return `${r.setupMs} ms`;
    case 'memory':
      return `${Math.round((r.bytesPerIdleConnection ?? 0) / 1024)} KiB`;
    case 'pubsub':
      return `p99 ${Math.round(r.latency!.p99 / 1000)}ms lost ${r.lost} wrong ${r.misrouted}`;
    case 'acked':
    case 'echo-rate':
      return `${r.latency!.p50}/${r.latency!.p99} µs`;
    case 'wire-bytes':
      return `${r.wireBytesPerMessage} B`;
  }
}

await main();
