/**
 * `npm run bench:profile`: where the server's CPU goes per echoed message, for webtransport+tls
 * beside websocket+tls (or the given targets), split by where in the stack each sample falls: the
 * quiche binding (and the V8/napi work it calls), the send and receive syscalls (on loopback the
 * send also delivers to the peer), waiting in and waking from epoll, TLS record crypto, and our
 * JavaScript with Node and V8 under it. It samples the bench's server process with `perf record`
 * during a closed-loop 64 B echo (one message in flight), so the split is of the same work the
 * `echo` cells time. Needs `perf` (Debian: linux-perf) and root or kernel.perf_event_paranoid ≤ 1.
 *
 *   npm run bench:profile -- [--targets webtransport+tls,websocket+tls] [--seconds 4] [--out benchmarks/results]
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startServerProcess } from './run.ts';
import { TARGETS } from './targets.ts';
import { echoRtt } from './workloads.ts';

const FREQUENCY = 4999;
const WARM_UP_MS = 1_500;
const SIZE = 64;

/** First match wins: a sample is charged to the outermost reason it is in the stack for. */
const CATEGORIES: readonly { name: string; test: (stack: string) => boolean }[] = [
  { name: 'quiche binding', test: (stack) => stack.includes('node.napi.node') },
  { name: 'epoll wait and wake-up', test: (stack) => /epoll_(p)?wait/.test(stack) },
  { name: 'send syscall (with loopback delivery)', test: (stack) => /sendmsg|sys_write|ksys_writev|do_writev/.test(stack) },
  { name: 'receive syscall', test: (stack) => /recvmsg|sys_read|ksys_readv/.test(stack) },
  { name: 'TLS record crypto', test: (stack) => /aes|gcm|EVP_|ssl3_|tls13_|SSL_/.test(stack) },
  { name: 'JavaScript (ours, Node, V8)', test: (stack) => /\[JIT\]|Builtins_|v8::|node::/.test(stack) },
];
const OTHER = 'other (libc allocator, libuv)';

interface Profile {
  target: string;
  messages: number;
  echoP50Micros: number;
  cpuMicrosPerMessage: number;
  /** µs of server CPU per echoed message, by category. */
  perMessage: Record<string, number>;
}

async function profile(targetName: string, seconds: number): Promise<Profile> {
  const target = TARGETS.find((candidate) => candidate.name === targetName);
  if (!target) throw new Error(`no target ${targetName}`);
  const server = await startServerProcess(target.server, null);
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'switchyard-profile-'));
  try {
    const data = path.join(scratch, 'perf.data');
    const echo = echoRtt(target, server.endpoint, SIZE, WARM_UP_MS + seconds * 1000 + 500);
    await new Promise((resolve) => setTimeout(resolve, WARM_UP_MS));
    const perf = spawn('perf', ['record', '-q', '-F', String(FREQUENCY), '-g', '-p', String(server.pid), '-o', data, '--', 'sleep', String(seconds)], { stdio: 'ignore' });
    await new Promise((resolve, reject) => perf.once('exit', resolve).once('error', reject));
    const result = await echo;
    const messages = Math.round((result.msgsPerSec ?? 0) * seconds);
    const script = execFileSync('perf', ['script', '-i', data, '-F', 'ip,sym,dso'], { maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    const samples = new Map<string, number>();
    let total = 0;
    for (const stack of script.split('\n\n')) {
      if (stack.trim() === '') continue;
      total++;
      const name = CATEGORIES.find((category) => category.test(stack))?.name ?? OTHER;
      samples.set(name, (samples.get(name) ?? 0) + 1);
    }
    const micros = (count: number) => Math.round(((count / FREQUENCY) * 1e6 * 10) / messages) / 10;
    const perMessage = Object.fromEntries([...CATEGORIES.map((category) => category.name), OTHER].map((name) => [name, micros(samples.get(name) ?? 0)]));
    return { target: targetName, messages, echoP50Micros: Math.round(result.latency?.p50 ?? 0), cpuMicrosPerMessage: micros(total), perMessage };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    await server.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { targets: { type: 'string', default: 'webtransport+tls,websocket+tls' }, seconds: { type: 'string', default: '4' }, out: { type: 'string' } } });
  try {
    execFileSync('perf', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('bench:profile needs perf (Debian: apt-get install linux-perf)');
  }
  const profiles: Profile[] = [];
  for (const target of values.targets.split(',')) profiles.push(await profile(target, Number(values.seconds)));
  const rows = Object.keys(profiles[0]!.perMessage);
  console.log(`server CPU per echoed ${SIZE} B message, µs (perf record -F ${FREQUENCY} of the bench server, ${values.seconds} s of closed-loop echo; Node ${process.version})`);
  console.table(Object.fromEntries([...rows.map((row) => [row, Object.fromEntries(profiles.map((p) => [p.target, p.perMessage[row]]))]), ['total', Object.fromEntries(profiles.map((p) => [p.target, p.cpuMicrosPerMessage]))], ['echo p50 µs', Object.fromEntries(profiles.map((p) => [p.target, p.echoP50Micros]))]]));
  if (values.out) {
    mkdirSync(values.out, { recursive: true });
    const file = path.join(values.out, `profile-${new Date().toISOString().slice(0, 19).replaceAll(':', '-')}.json`);
    writeFileSync(file, `${JSON.stringify({ command: `npm run bench:profile -- --targets ${values.targets} --seconds ${values.seconds}`, node: process.version, frequency: FREQUENCY, profiles }, null, 2)}\n`);
    console.log(file);
  }
}

await main();
