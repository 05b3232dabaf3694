/**
 * `npm run bench`: identical workloads over every Switchyard transport and the peers (raw ws naive
 * and tuned, Socket.IO), server in a child process, this process as load generator. Writes JSON and
 * a self-contained HTML report, prints one table per workload and the target lines of this run.
 * `npm run bench -- --help` for the options. Exit status: 0, 1 when a cell failed (it threw, or
 * lost or misrouted a reliable delivery), 2 for a usage error.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { ServerKind } from './raw-protocol.ts';
import { describeParams, goalLines, markdownTables, renderHtml, summarizeRuns, textTables, type BenchReport, type Cell, type Goal, type Workload } from './report.ts';
import { CLIENT_WRITE_POLICY, TARGETS, type Target } from './targets.ts';
import { REDIS_MISSING, startRedis } from '../test-support/redis.ts';
import { ackedDelivery, connectionSetup, echoAtRate, echoRtt, fanOut, fanOutMaxRate, idleMemory, pubSub, recoveryTime, throughput, wireBytes, type CellResult, type Endpoint, type ServerProbe } from './workloads.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const WORKLOADS: readonly Workload[] = ['echo', 'echo-rate', 'throughput', 'fanout', 'fanout-max', 'setup', 'memory', 'pubsub', 'acked', 'wire-bytes', 'recovery'];
const SERVER_KINDS: readonly ServerKind[] = ['switchyard', 'switchyard-cluster', 'ws', 'ws-tuned', 'socketio'];
/** Messages a client misses in the recovery workload. */
const RECOVERY_MISSED = 10_000;
/** --quick's workloads unless --workloads names others: the headline cells and the cheap ones. */
const QUICK_WORKLOADS: readonly Workload[] = ['echo', 'echo-rate', 'throughput', 'fanout-max', 'setup', 'wire-bytes'];
/** Echo throughput run per row before the measured rounds (--quick: a fifth of it). */
const WARM_UP_MS = 500;

const USAGE = `Usage: npm run bench -- [options]

Runs the same workloads on every Switchyard transport and on the peers (raw ws naive and tuned,
Socket.IO), the server in its own process. Prints a table per workload and the target lines;
writes JSON and HTML. Exit status 1 when a cell failed (lost or misrouted a reliable delivery).

Options:
  --quick               short cells, one run each, fewer cells (about 2 minutes on a quiet 2-core machine)
  --targets a,b         rows to run (default: all): ${TARGETS.map((t) => t.name).join(', ')}
  --workloads a,b       workloads (default: all; --quick ${QUICK_WORKLOADS.join(',')}): ${WORKLOADS.join(', ')}
  --sizes 64,1048576    echo sizes in bytes (default 64,1024,65536,1048576; --quick 64)
  --duration ms         length of a cell's run (default 3000; --quick 200)
  --runs n              runs per cell; tables quote each figure's median (default 3; --quick 1)
  --pin g:s             pin the load generator to CPUs g and the server to CPUs s with taskset, e.g. 0:1
  --out dir             where JSON and HTML go (default bench-results/)
  --markdown file.json  print a saved report's tables and targets as Markdown, and exit
  --help                this text

Client write policy: ${CLIENT_WRITE_POLICY}.
Profile the server: BENCH_SERVER_NODE_ARGS='--cpu-prof --cpu-prof-dir=prof' npm run bench -- ...`;

export interface BenchOptions {
  quick: boolean;
  targets: readonly Target[];
  workloads: ReadonlySet<Workload>;
  sizes: number[];
  durationMs: number;
  runs: number;
  /** CPU lists for taskset, or null to leave scheduling to the kernel. */
  pin: { loadGenerator: string; server: string } | null;
  command: string;
}

class UsageError extends Error {}

/** Reads the command line; a UsageError is one line for the user (exit 2). */
export function parseOptions(argv: string[]): (BenchOptions & { out: string; markdown?: string }) | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        quick: { type: 'boolean', default: false },
        targets: { type: 'string' },
        workloads: { type: 'string' },
        sizes: { type: 'string' },
        duration: { type: 'string' },
        runs: { type: 'string' },
        pin: { type: 'string' },
        out: { type: 'string', default: path.join(ROOT, 'bench-results') },
        markdown: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message.split('\n')[0]!);
  }
  if (values.help) return 'help';
  const list = (value: string) => value.split(',').map((s) => s.trim()).filter(Boolean);
  const quick = values.quick!;
  const names = values.targets ? list(values.targets) : TARGETS.map((t) => t.name);
  const unknownTarget = names.filter((n) => !TARGETS.some((t) => t.name === n));
  if (unknownTarget.length) throw new UsageError(`unknown target ${unknownTarget.join(', ')}; known: ${TARGETS.map((t) => t.name).join(', ')}`);
  const workloads = values.workloads ? list(values.workloads) : quick ? [...QUICK_WORKLOADS] : [...WORKLOADS];
  const unknownWorkload = workloads.filter((w) => !WORKLOADS.includes(w as Workload));
  if (unknownWorkload.length) throw new UsageError(`unknown workload ${unknownWorkload.join(', ')}; known: ${WORKLOADS.join(', ')}`);
  const number = (flag: string, value: string | undefined, fallback: number, min: number) => {
    if (value === undefined) return fallback;
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < min) throw new UsageError(`--${flag} wants a whole number ≥ ${min}, got ${value}`);
    return parsed;
  };
  const sizes = list(values.sizes ?? (quick ? '64' : '64,1024,65536,1048576')).map((s) => number('sizes', s, 64, 1));
  let pin: BenchOptions['pin'] = null;
  if (values.pin !== undefined) {
    const match = /^([\d,-]+):([\d,-]+)$/.exec(values.pin);
    if (!match) throw new UsageError(`--pin wants generatorCpus:serverCpus, e.g. 0:1, got ${values.pin}`);
    pin = { loadGenerator: match[1]!, server: match[2]! };
  }
  return {
    quick,
    targets: TARGETS.filter((t) => names.includes(t.name)),
    workloads: new Set(workloads as Workload[]),
    sizes,
    durationMs: number('duration', values.duration, quick ? 200 : 3_000, 50),
    runs: number('runs', values.runs, quick ? 1 : 3, 1),
    pin,
    out: values.out!,
    ...(values.markdown ? { markdown: values.markdown } : {}),
    command: `npm run bench --${argv.length ? ` ${argv.join(' ')}` : ''}`,
  };
}

const isPolling = (target: Target) => target.name.includes('polling');

interface Plan {
  target: Target;
  workload: Workload;
  params: Record<string, number>;
  skip?: string;
  run?: (endpoint: Endpoint, probe: ServerProbe) => Promise<CellResult>;
}

/** --quick keeps 1000-subscriber cells to plain websocket and ws-tuned (time), saying so. */
function quickSkipsThousand(target: Target): string | undefined {
  return target.name === 'websocket' || target.name === 'ws-tuned' ? undefined : '--quick runs 1000 subscribers only on websocket and ws-tuned; run without --quick';
}

const isWebRtc = (target: Target) => target.name.startsWith('webrtc');
/**
 * wrtc (libwebrtc) holds about 63 descriptors (UDP and TCP sockets per interface address) and 2
 * native threads per peer connection, measured here with 40 connections: 1000 subscribers would
 * need ~63 000 descriptors in the server and as many in the load generator, over this machine's
 * limit (ulimit -n 20 000, hard limit too).
 */
const WEBRTC_THOUSAND = 'wrtc holds ~63 descriptors and 2 native threads per peer connection: 1000 connections need ~63 000 descriptors per process, over the 20 000 limit here';
/** Idle connections a webrtc memory cell opens at most (descriptors, as above: 100 is ~6 300 per process). */
const WEBRTC_IDLE = 100;

/** The datagram lane's fixed-rate cell, and its websocket+tls reference, run whenever its throughput is asked for. */
const DATAGRAM_LANE = 'webtransport+tls:unreliable';
/** WebRTC's unreliable lane (unordered, maxRetransmits 0): the same fixed-rate cell, beside its reliable `webrtc` row. */
const WEBRTC_UNRELIABLE = 'webrtc:unreliable';

function plan(options: BenchOptions): Plan[] {
  const { targets, workloads, quick, sizes, durationMs } = options;
  const plans: Plan[] = [];
  const datagramRate = workloads.has('throughput') && targets.some((t) => t.name === DATAGRAM_LANE);
  const webRtcDatagramRate = workloads.has('throughput') && targets.some((t) => t.name === WEBRTC_UNRELIABLE);
  for (const target of targets) {
    if (workloads.has('echo')) for (const size of sizes) plans.push({ target, workload: 'echo', params: { size }, run: (e) => echoRtt(target, e, size, durationMs) });
    if (workloads.has('echo-rate') || (datagramRate && (target.name === DATAGRAM_LANE || target.name === 'websocket+tls')) || (webRtcDatagramRate && (target.name === WEBRTC_UNRELIABLE || target.name === 'webrtc'))) {
      const rate = isPolling(target) ? 200 : 2_000;
      plans.push({ target, workload: 'echo-rate', params: { size: 64, rate }, run: (e, p) => echoAtRate(target, e, p, 64, rate, durationMs) });
    }
    if (workloads.has('throughput')) {
      // The headline comparison: even --quick gives it 750 ms, so the JIT has warmed up before the window.
      const ms = Math.max(durationMs, 750);
      plans.push({ target, workload: 'throughput', params: { size: 64, window: 32 }, run: (e, p) => throughput(target, e, p, 64, ms) });
    }
    if (workloads.has('fanout')) {
      // --quick: 10 subscribers only; the 1000-subscriber cost is fanout-max's.
      for (const subscribers of quick ? [10] : [1, 10, 100, 1000]) {
        const rate = quick ? 50 : 100;
        const skip = subscribers === 1000 && isWebRtc(target) ? WEBRTC_THOUSAND : undefined;
        plans.push({ target, workload: 'fanout', params: { subscribers, rate }, ...(skip ? { skip } : { run: (e, p) => fanOut(target, e, p, subscribers, rate, durationMs) }) });
      }
    }
    if (workloads.has('fanout-max')) {
      for (const subscribers of [10, 1000]) {
        const skip = subscribers === 1000 ? (isWebRtc(target) ? WEBRTC_THOUSAND : quick ? quickSkipsThousand(target) : undefined) : undefined;
        // At least 750 ms, like throughput: a 1000-subscriber window needs time to reach steady state.
        const ms = Math.max(durationMs, 750);
        plans.push({ target, workload: 'fanout-max', params: { subscribers, window: 32 }, ...(skip ? { skip } : { run: (e, p) => fanOutMaxRate(target, e, p, subscribers, ms, 32) }) });
      }
    }
    const connections = quick ? 10 : 20;
    const idle = Math.min(quick ? 50 : 500, isWebRtc(target) ? WEBRTC_IDLE : Infinity);
    if (workloads.has('setup')) plans.push({ target, workload: 'setup', params: { connections }, run: (e) => connectionSetup(target, e, connections) });
    if (workloads.has('memory')) plans.push({ target, workload: 'memory', params: { connections: idle }, run: (e, p) => idleMemory(target, e, p, idle) });
    if (workloads.has('pubsub')) plans.push({ target, workload: 'pubsub', params: { topics: 100, subscribers: 50, rate: 200 }, run: (e) => pubSub(target, e, 200, durationMs) });
    if (workloads.has('acked')) {
      const skip = target.server === 'ws' || target.server === 'ws-tuned' ? 'raw ws has no receipts: acknowledged delivery needs a protocol on top, which is what the others add' : undefined;
      plans.push({ target, workload: 'acked', params: { size: 64 }, ...(skip ? { skip } : { run: (e) => ackedDelivery(target, e, durationMs) }) });
    }
    if (workloads.has('recovery')) {
      const skip = target.name === 'websocket' || target.name === 'websocket@cluster' ? undefined : 'runs on the websocket rows (single node and cluster): recovery is a Switchyard feature the peers do not have';
      plans.push({ target, workload: 'recovery', params: { missed: RECOVERY_MISSED }, ...(skip ? { skip } : { run: (e) => recoveryTime(e, RECOVERY_MISSED) }) });
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

/** Cells a row cannot run (a lane row: or runs the same as its reliable row), and why. */
function laneSkips(target: Target, workload: Workload): string | undefined {
  if (target.only && !target.only.workloads.includes(workload)) return target.only.reason;
  if (!target.lane || target.lane === 'reliable') return undefined;
  if (workload === 'setup' || workload === 'memory') return 'a lane is chosen per message: connection setup and idle memory are those of the reliable row';
  if (target.lane === 'unreliable' && !['fanout', 'pubsub', 'echo-rate'].includes(workload)) {
    return 'datagrams may be lost or reordered, and this workload pairs replies in order and waits for each; the unreliable lane runs the workloads that count losses (echo-rate at a fixed rate with server CPU per message, fan-out, pub/sub)';
  }
  return undefined;
}

/** Why a finished run fails its cell: a reliable delivery lost or misrouted (any lane: misrouted). */
export function runFailure(target: Target, result: CellResult): string | undefined {
  const reliable = target.lane !== 'unreliable';
  const lost = reliable ? (result.lost ?? 0) : 0;
  const misrouted = result.misrouted ?? 0;
  if (!lost && !misrouted) return undefined;
  return [lost ? `${lost} reliable deliveries lost` : '', misrouted ? `${misrouted} misrouted (out of order, duplicated or to the wrong client or topic)` : ''].filter(Boolean).join(', ');
}

interface ServerProcess {
  endpoint: Endpoint;
  probe: ServerProbe;
  /** The (first) server process's pid. */
  pid: number;
  stop(): Promise<void>;
}

/**
 * A cluster: a private redis-server and two Switchyard nodes on it. Its CPU is the sum over the
 * nodes and Redis; its memory the nodes'.
 */
async function startCluster(pin: BenchOptions['pin']): Promise<ServerProcess> {
  if (REDIS_MISSING) throw new Error(`the cluster rows need Redis: ${REDIS_MISSING}`);
  const redis = await startRedis();
  const nodes = await Promise.all([0, 1].map(() => startServerProcess('switchyard-cluster', pin, [redis.url])));
  if (pin) execFileSync('taskset', ['-a', '-cp', pin.server, String(redis.pid)], { stdio: 'ignore' });
  const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  const redisCpuMicros = async () => {
    // utime and stime, fields 14 and 15 of /proc/<pid>/stat (after the parenthesised name).
    const fields = (await readFile(`/proc/${redis.pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) / ticksPerSecond) * 1e6;
  };
  return {
    endpoint: { ...nodes[0]!.endpoint, ports: nodes.map((node) => node.endpoint.port) },
    pid: nodes[0]!.pid,
    probe: {
      cpuMicros: async () => (await Promise.all([...nodes.map((node) => node.probe.cpuMicros()), redisCpuMicros()])).reduce((sum, micros) => sum + micros, 0),
      memoryAfterGc: async () =>
        (await Promise.all(nodes.map((node) => node.probe.memoryAfterGc()))).reduce((sum, m) => ({ heapAndExternal: sum.heapAndExternal + m.heapAndExternal, rss: sum.rss + m.rss }), { heapAndExternal: 0, rss: 0 }),
    },
    async stop() {
      await Promise.all(nodes.map((node) => node.stop()));
      await redis.close();
    },
  };
}

/** Starts the server process for one kind and reads its port. */
export async function startServerProcess(kind: ServerKind, pin: BenchOptions['pin'], args: string[] = []): Promise<ServerProcess> {
  if (kind === 'switchyard-cluster' && args.length === 0) return startCluster(pin);
  // BENCH_SERVER_NODE_ARGS adds Node flags to the server process, e.g. '--cpu-prof' to profile it.
  const extra = process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const child = fork(path.join(ROOT, 'benchmarks', 'bench-server.ts'), [kind, ...args], { execArgv: ['--import', 'tsx', '--expose-gc', ...extra], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  // Every thread of the server (libuv pool, V8's GC helpers too) on the server's CPUs.
  if (pin) execFileSync('taskset', ['-a', '-cp', pin.server, String(child.pid)], { stdio: 'ignore' });
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
    memoryAfterGc: async () => {
      const { memoryBytes, rssBytes } = await ask<{ memoryBytes: number; rssBytes: number }>('memory');
      return { heapAndExternal: memoryBytes, rss: rssBytes };
    },
  };
  return { endpoint, probe, pid: child.pid!, stop: () => stopServerProcess(child) };
}

/** Lets the server exit by itself (so a --cpu-prof profile gets written), killing it after 5 s. */
export async function stopServerProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.disconnect();
  const timer = setTimeout(() => child.kill(), 5_000);
  await exited;
  clearTimeout(timer);
}

/** A progress bar on a terminal; one line per step otherwise (a log shows where a run is). */
function progress(done: number, total: number, label: string): void {
  if (!process.stderr.isTTY) return void process.stderr.write(`[${done}/${total}] ${label}\n`);
  const width = 30;
  const filled = Math.round((done / total) * width);
  process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${label.padEnd(60).slice(0, 60)}`);
}

/**
 * Runs every planned cell in rounds: round i runs every cell once, so the runs of two rows being
 * compared are interleaved and a change of load on a shared machine hits both alike. All server
 * processes stay up (idle) for the whole bench. Idle-memory cells go first, while the servers are
 * fresh: connections that earlier cells left closing would otherwise be freed mid-measurement.
 * A cell that fails runs no more rounds; it never stops the others.
 */
export async function runCells(options: BenchOptions): Promise<Cell[]> {
  const plans = plan(options);
  const memoryFirst = [...plans.keys()].sort((a, b) => Number(plans[b]!.workload === 'memory') - Number(plans[a]!.workload === 'memory'));
  const cells = plans.map((item): Cell => ({ target: item.target.name, tls: item.target.tls, workload: item.workload, params: item.params, status: item.run ? 'ok' : 'skipped', runs: [], elapsedMs: 0, ...(item.skip ? { reason: item.skip } : {}) }));
  const servers = new Map<ServerKind, Awaited<ReturnType<typeof startServerProcess>>>();
  const total = plans.filter((p) => p.run).length * options.runs;
  let done = 0;
  try {
    for (const kind of SERVER_KINDS) if (plans.some((p) => p.run && p.target.server === kind)) servers.set(kind, await startServerProcess(kind, options.pin));
    // Warm-up, not recorded: the first cell of a row would otherwise also time the JIT compiling
    // that row's paths in the server and in this process (the first of three runs measured at a
    // fifth of the others' throughput here).
    for (const target of new Set(plans.filter((p) => p.run).map((p) => p.target))) {
      if (target.lane === 'unreliable') continue;
      progress(done, total, `warming up ${target.name}`);
      const server = servers.get(target.server)!;
      await throughput(target, server.endpoint, server.probe, 64, options.quick ? WARM_UP_MS / 5 : WARM_UP_MS).catch(() => undefined);
    }
    for (let round = 0; round < options.runs; round++) {
      for (const i of memoryFirst) {
        const item = plans[i]!;
        const cell = cells[i]!;
        if (!item.run || cell.status !== 'ok') continue;
        progress(done++, total, `round ${round + 1}: ${item.target.name} ${item.workload} ${describeParams(item.params)}`);
        const server = servers.get(item.target.server)!;
        const started = performance.now();
        try {
          const result = await item.run(server.endpoint, server.probe);
          cell.runs.push(result);
          const failure = runFailure(item.target, result);
          if (failure) throw new Error(`run ${round + 1}: ${failure}`);
        } catch (error) {
          cell.status = 'failed';
          cell.reason = (error as Error).message;
        }
        cell.elapsedMs! += Math.round(performance.now() - started);
      }
    }
  } finally {
    for (const server of servers.values()) await server.stop();
  }
  progress(total, total, 'done');
  if (process.stderr.isTTY) process.stderr.write('\n');
  for (const cell of cells) if (cell.status === 'ok') Object.assign(cell, summarizeRuns(cell, cell.runs));
  return cells;
}

/** The goal of a line that only compares two rows. */
const COMPARISON = 'comparison';

type Figure = { target: string; workload: Workload; params?: Record<string, number>; figure: string };

/** The target lines of issues 13 and 14, each computed from cells of this run (each figure its median across runs). */
export function goals(cells: Cell[], targets: readonly Target[]): Goal[] {
  const value = ({ target, workload, params, figure }: Figure): number | undefined => {
    const cell = cells.find((c) => c.target === target && c.workload === workload && c.status === 'ok' && (!params || Object.entries(params).every(([k, v]) => c.params[k] === v)));
    // Zero is no measurement (a cell with no samples), never a ratio's numerator.
    return cell?.medians?.[figure] || undefined;
  };
  const present = new Set(targets.map((t) => t.name));
  const out: Goal[] = [];
  /** A goal `a / b <op> bound` (or the figure `a` alone when b is absent), listed when any of its rows is in this run. */
  const add = (issue: number, name: string, goal: string, a: Figure, b?: Figure) => {
    if (!present.has(a.target) && !(b && present.has(b.target))) return;
    const x = value(a);
    const y = b ? value(b) : 1;
    const describe = (f: Figure, v: number | undefined) => `${f.target} ${f.workload}${f.params?.size ? ` ${f.params.size} B` : ''}${f.params?.subscribers ? ` ${f.params.subscribers} subscribers` : ''} ${f.figure} ${v ?? 'not run'}`;
    const detail = b ? `${describe(a, x)} / ${describe(b, y)}` : describe(a, x);
    const v = x !== undefined && y ? Math.round((x / y) * 1000) / 1000 : null;
    const [op, bound] = goal.split(' ');
    // A comparison (COMPARISON, no bound) is never met or missed.
    const met = v === null || (op !== '≥' && op !== '≤') ? null : op === '≥' ? v >= Number(bound) : v <= Number(bound);
    out.push({ issue, name, value: v === null ? null : b ? v : Math.round(v), goal, met, detail });
  };
  for (const tls of ['', '+tls']) {
    add(13, `websocket${tls} / ws-tuned${tls} echo throughput (64 B, 32 in flight)`, '≥ 0.9', { target: `websocket${tls}`, workload: 'throughput', figure: 'msgsPerSec' }, { target: `ws-tuned${tls}`, workload: 'throughput', figure: 'msgsPerSec' });
    add(13, `ws-tuned${tls} / websocket${tls} server CPU per message (≥ 0.9: ours costs at most 1.11x)`, '≥ 0.9', { target: `ws-tuned${tls}`, workload: 'throughput', figure: 'serverCpuMicrosPerMsg' }, { target: `websocket${tls}`, workload: 'throughput', figure: 'serverCpuMicrosPerMsg' });
    add(13, `websocket${tls} fan-out to 1000, publishes one at a time: deliveries per server CPU-second`, '≥ 1000000', { target: `websocket${tls}`, workload: 'fanout-max', params: { subscribers: 1000 }, figure: 'deliveriesPerCpuSecond' });
    add(13, `websocket${tls} / ws-tuned${tls} fan-out to 1000: deliveries per server CPU-second`, '≥ 1', { target: `websocket${tls}`, workload: 'fanout-max', params: { subscribers: 1000 }, figure: 'deliveriesPerCpuSecond' }, { target: `ws-tuned${tls}`, workload: 'fanout-max', params: { subscribers: 1000 }, figure: 'deliveriesPerCpuSecond' });
    // Against the faster of Socket.IO's keep-alive rows (binary or string payloads), whichever ran.
    const socketIoPolling = [`socket.io-polling-keepalive${tls}`, `socket.io-polling-keepalive-text${tls}`]
      .map((target) => ({ target, workload: 'echo' as const, params: { size: 64 }, figure: 'p50' }))
      .sort((p, q) => (value(p) ?? Infinity) - (value(q) ?? Infinity))[0]!;
    add(13, `long-polling${tls} / Socket.IO polling with keep-alive p50 echo RTT (64 B)`, '≤ 0.25', { target: `long-polling${tls}`, workload: 'echo', params: { size: 64 }, figure: 'p50' }, socketIoPolling);
    add(13, `websocket${tls} / socket.io-websocket${tls} echo throughput`, '≥ 2', { target: `websocket${tls}`, workload: 'throughput', figure: 'msgsPerSec' }, { target: `socket.io-websocket${tls}`, workload: 'throughput', figure: 'msgsPerSec' });
  }
  const wt = 'webtransport+tls';
  const ref = 'websocket+tls';
  add(14, `${wt} / ${ref} server CPU per echoed message (throughput)`, '≤ 2', { target: wt, workload: 'throughput', figure: 'serverCpuMicrosPerMsg' }, { target: ref, workload: 'throughput', figure: 'serverCpuMicrosPerMsg' });
  add(14, `${wt} / ${ref} echo p50 RTT (64 B)`, '≤ 1.5', { target: wt, workload: 'echo', params: { size: 64 }, figure: 'p50' }, { target: ref, workload: 'echo', params: { size: 64 }, figure: 'p50' });
  add(14, `${wt} / ${ref} echo p50 RTT (1 MiB)`, '≤ 2', { target: wt, workload: 'echo', params: { size: 1_048_576 }, figure: 'p50' }, { target: ref, workload: 'echo', params: { size: 1_048_576 }, figure: 'p50' });
  add(14, `${DATAGRAM_LANE} / ${ref} server CPU per message at a fixed rate (echo-rate)`, '≤ 1.5', { target: DATAGRAM_LANE, workload: 'echo-rate', figure: 'serverCpuMicrosPerMsg' }, { target: ref, workload: 'echo-rate', figure: 'serverCpuMicrosPerMsg' });
  // Issue 16 set no goal: WebRTC beside WebTransport, each figure from this run (< 1: webrtc is lower).
  const rtc = 'webrtc';
  const versus = (name: string, workload: Workload, figure: string, params?: Record<string, number>, a = rtc, b = wt) => add(16, name, COMPARISON, { target: a, workload, figure, ...(params ? { params } : {}) }, { target: b, workload, figure, ...(params ? { params } : {}) });
  versus(`${rtc} / ${wt} echo p50 RTT (64 B)`, 'echo', 'p50', { size: 64 });
  versus(`${rtc} / ${wt} echo p99 RTT (64 B)`, 'echo', 'p99', { size: 64 });
  versus(`${rtc} / ${wt} echo throughput (64 B, 32 in flight)`, 'throughput', 'msgsPerSec');
  versus(`${rtc} / ${wt} server CPU per echoed message (throughput)`, 'throughput', 'serverCpuMicrosPerMsg');
  versus(`${WEBRTC_UNRELIABLE} / ${DATAGRAM_LANE} server CPU per message at a fixed rate (echo-rate)`, 'echo-rate', 'serverCpuMicrosPerMsg', undefined, WEBRTC_UNRELIABLE, DATAGRAM_LANE);
  versus(`${rtc} / ${wt} connection setup`, 'setup', 'setupMs');
  versus('webrtc-p2p / webrtc-relayed echo p50 RTT between two clients (64 B)', 'echo', 'p50', { size: 64 }, 'webrtc-p2p', 'webrtc-relayed');
  const webRtcRun = targets.some((t) => t.name.startsWith('webrtc'));
  return out.filter((g) => (g.issue !== 14 || [wt, DATAGRAM_LANE].some((t) => present.has(t))) && (g.issue !== 16 || webRtcRun));
}

function gitCommit(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT }).toString().trim();
    return dirty ? `${commit}+changes` : commit;
  } catch {
    return 'unknown';
  }
}

/** Runs a whole benchmark and builds its report; exit code 1 when a cell failed. */
export async function runBench(options: BenchOptions): Promise<{ report: BenchReport; exitCode: number }> {
  // Read before the run: the code that ran, not what the tree holds when it ends.
  const commit = gitCommit();
  const cells = await runCells(options);
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
      options: { quick: options.quick, durationMs: options.durationMs, runs: options.runs, sizes: options.sizes, workloads: [...options.workloads], targets: options.targets.map((t) => t.name) },
      command: options.command,
      clientWritePolicy: CLIENT_WRITE_POLICY,
      pinning: options.pin,
      rows: options.targets.map((t) => ({ name: t.name, description: t.description, ...(t.variant ? { variant: t.variant } : {}) })),
    },
    cells,
    targets: goals(cells, options.targets),
  };
  return { report, exitCode: cells.some((c) => c.status === 'failed') ? 1 : 0 };
}

async function main(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseOptions(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`bench: ${error.message} (see --help)\n`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (options.markdown) {
    process.stdout.write(`${markdownTables(JSON.parse(await readFile(options.markdown, 'utf8')) as BenchReport)}\n`);
    return 0;
  }
  if (options.pin) execFileSync('taskset', ['-a', '-cp', options.pin.loadGenerator, String(process.pid)], { stdio: 'ignore' });
  const started = Date.now();
  const { report, exitCode } = await runBench(options);
  await mkdir(options.out, { recursive: true });
  const stamp = report.meta.date.replaceAll(':', '-').slice(0, 19);
  const jsonFile = path.join(options.out, `bench-${stamp}.json`);
  const htmlFile = path.join(options.out, `bench-${stamp}.html`);
  await writeFile(jsonFile, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(htmlFile, await renderHtml(report));

  console.log(`${options.command}\nclient write policy: ${CLIENT_WRITE_POLICY}; ${options.pin ? `load generator on CPU ${options.pin.loadGenerator}, server on CPU ${options.pin.server}` : 'not pinned'}; each figure the median of ${options.runs} run(s)\n`);
  const variants = report.meta.rows!.filter((r) => r.variant);
  if (variants.length) console.log(`${variants.map((r) => `  ${r.name} (${r.variant}): ${r.description}`).join('\n')}\n`);
  console.log(textTables(report));
  if (report.targets.length) console.log(`\nTargets (ratios measured in this run):\n${goalLines(report.targets)}`);
  const failed = report.cells.filter((c) => c.status === 'failed');
  console.log(`\n${failed.length ? `${failed.length} cell(s) FAILED: ${failed.map((c) => `${c.target} ${c.workload} ${describeParams(c.params)}`).join('; ')}\n` : ''}${Math.round((Date.now() - started) / 1000)} s\n${jsonFile}\n${htmlFile}`);
  return exitCode;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) process.exitCode = await main(process.argv.slice(2));
