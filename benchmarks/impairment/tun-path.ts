/**
 * An impaired path that treats TCP and UDP alike, with delay: two TUN devices joined by a small C
 * forwarder (tun-forwarder.c) that applies, per direction, a rate limit, a fixed delay (+ jitter)
 * and random loss (optionally bursty) to every IP packet. The server side's device lives in its own
 * network namespace; the client side's in another namespace, or in the host's own namespace
 * (`client: 'host'`), so a browser on this machine reaches the server namespace through the path.
 *
 * Why a TUN forwarder: this kernel has no netem, so the kernel cannot delay packets; a userspace
 * relay of sockets (udp-relay.ts) cannot impair TCP. A TUN device hands the forwarder whole IP
 * packets, so a dropped TCP segment is a real loss the sender's TCP must repair, exactly as for
 * QUIC. Why C: Node cannot make the TUNSETIFF ioctl; the forwarder is compiled with gcc on first use
 * into a cache directory keyed by the source's hash.
 *
 * Needs Linux, root, /dev/net/tun, `ip` and gcc. Devices are point-to-point (no ARP, IPv6 off), so
 * the forwarder's counters are exactly the traffic of the experiment. The devices vanish with the
 * forwarder process, which exits when its stdin closes (our process ends), so nothing outlives us.
 */
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { LineReader } from '../experiments/processes.ts';
import { pathNamePrefix } from './netns.ts';

const run = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const SOURCE = path.join(HERE, 'tun-forwarder.c');
const CACHE = path.resolve(HERE, '../../node_modules/.cache/switchyard-tun-forwarder');

/** What the forwarder does to the packets of one direction. */
export interface LinkImpairment {
  /** Fixed one-way delay, ms. */
  delayMs: number;
  /** Extra delay, uniform in [0, jitterMs]; never reorders. Default 0. */
  jitterMs?: number;
  /** Packets dropped, 0–100 %. */
  lossPercent: number;
  /** Mean length of a loss burst in packets (Gilbert–Elliott); 1 (default): independent losses. */
  burst?: number;
  /** Rate limit, Mbit/s; 0 or absent: none. */
  rateMbit?: number;
  /** Packets that may wait for the rate limit before tail drop. Default 1000. */
  queuePackets?: number;
}

/** The forwarder's counters for one direction. */
export interface LinkCounters {
  received: number;
  forwarded: number;
  /** Dropped by the loss model. */
  dropped: number;
  /** Runs of consecutive losses (dropped / lossBursts = mean burst length). */
  lossBursts: number;
  /** Dropped because the rate limit's queue was full. */
  queueDrops: number;
  /** Packets held back (delay or rate limit). */
  delayed: number;
  queued: number;
  bytes: number;
  writeErrors: number;
  meanDelayMs: number;
  config: { delayMs: number; jitterMs: number; lossPercent: number; burst: number; rateMbit: number; queue: number };
}

export interface ForwarderStats {
  clientToServer: LinkCounters;
  serverToClient: LinkCounters;
}

export interface TunPathOptions {
  clientToServer: LinkImpairment;
  serverToClient: LinkImpairment;
  /** Seed of the forwarder's PRNG (loss draws, jitter): the same seed, the same dice. Default 1. */
  seed?: number;
  /** Where the client end lives: its own namespace (default) or this host's namespace (a local browser). */
  client?: 'namespace' | 'host';
}

export interface TunPath {
  readonly serverNamespace: string;
  /** Null when the client end is in the host's namespace. */
  readonly clientNamespace: string | null;
  readonly serverAddress: string;
  readonly clientAddress: string;
  /** Starts a process inside the server's or client's namespace (client: the host, when the client end is there). */
  spawn(side: 'server' | 'client', command: string, args: readonly string[], options?: SpawnOptions): ChildProcess;
  /** Changes the impairment of one or both directions on the live path. */
  configure(change: { clientToServer?: LinkImpairment; serverToClient?: LinkImpairment }): Promise<void>;
  stats(): Promise<ForwarderStats>;
  /** Packets the loss model and the queue dropped so far, per direction. */
  dropped(): Promise<{ clientToServer: number; serverToClient: number }>;
  /**
   * When the loss model dropped packets since the last call, per direction: ms on CLOCK_MONOTONIC,
   * the clock of `process.hrtime` in every process of this machine (at most the last 4096 each).
   */
  takeDrops(): Promise<{ clientToServer: number[]; serverToClient: number[] }>;
  /** Ends the forwarder (its devices go with it) and removes the namespaces; resolves with the final counters. Idempotent. */
  destroy(): Promise<ForwarderStats | null>;
}

export function validateImpairment(link: LinkImpairment): void {
  const check = (name: string, value: number | undefined, max: number) => {
    if (value !== undefined && !(Number.isFinite(value) && value >= 0 && value <= max)) throw new RangeError(`${name} must be 0–${max}, got ${value}`);
  };
  check('delayMs', link.delayMs, 10_000);
  check('jitterMs', link.jitterMs, 10_000);
  check('lossPercent', link.lossPercent, 100);
  check('rateMbit', link.rateMbit, 100_000);
  if (link.burst !== undefined && !(link.burst >= 1 && link.burst <= 1_000)) throw new RangeError(`burst must be 1–1000 packets, got ${link.burst}`);
  if (link.queuePackets !== undefined && !(Number.isInteger(link.queuePackets) && link.queuePackets >= 1 && link.queuePackets <= 4096)) throw new RangeError(`queuePackets must be 1–4096, got ${link.queuePackets}`);
}

/** The forwarder's spec string for one direction. */
export function forwarderSpec(link: LinkImpairment): string {
  validateImpairment(link);
  return [`delay=${link.delayMs}`, `jitter=${link.jitterMs ?? 0}`, `loss=${link.lossPercent}`, `burst=${link.burst ?? 1}`, `rate=${link.rateMbit ?? 0}`, `queue=${link.queuePackets ?? 1000}`].join(',');
}

let compiling: Promise<string> | undefined;

/** The forwarder's binary, compiled on first use into the cache (keyed by the source's hash). */
export function forwarderBinary(): Promise<string> {
  compiling ??= (async () => {
    const source = await readFile(SOURCE);
    const binary = path.join(CACHE, `tun-forwarder-${createHash('sha256').update(source).digest('hex').slice(0, 16)}`);
    try {
      await access(binary);
      return binary;
    } catch {
      // Not built yet.
    }
    await mkdir(CACHE, { recursive: true });
    // Parallel test workers may compile at once: each into its own file, renamed into place atomically.
    const partial = `${binary}.${process.pid}.tmp`;
    await run('gcc', ['-O2', '-Wall', '-o', partial, SOURCE]);
    await rename(partial, binary);
    return binary;
  })();
  compiling.catch(() => {
    compiling = undefined;
  });
  return compiling;
}

let capability: Promise<{ ok: true } | { ok: false; reason: string }> | undefined;

/**
 * Whether this machine can build a TUN path, and if not why. Checked once per process: concurrent
 * callers (two lab pages asking at once) would otherwise race on the probe namespace's name.
 */
export function canForward(): Promise<{ ok: true } | { ok: false; reason: string }> {
  capability ??= probeForwarding();
  return capability;
}

async function probeForwarding(): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (process.platform !== 'linux') return { ok: false, reason: `TUN devices and network namespaces need Linux (this is ${process.platform})` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'TUN devices and network namespaces need root' };
  try {
    await access('/dev/net/tun');
  } catch {
    return { ok: false, reason: '/dev/net/tun is missing (kernel without CONFIG_TUN, or a container without the device)' };
  }
  try {
    await run('ip', ['-V']);
  } catch {
    return { ok: false, reason: `'ip' is not installed (apt-get install iproute2)` };
  }
  try {
    await run('gcc', ['--version']);
  } catch {
    return { ok: false, reason: 'gcc is not installed (apt-get install gcc): the TUN forwarder is compiled on first use' };
  }
  try {
    await forwarderBinary();
  } catch (error) {
    return { ok: false, reason: `the TUN forwarder does not compile: ${(error as Error).message.split('\n')[0]}` };
  }
  // Root is not always enough (a container may lack CAP_NET_ADMIN): try a namespace once.
  const probe = `${pathNamePrefix()}t`;
  try {
    await run('ip', ['netns', 'add', probe]);
  } catch (error) {
    return { ok: false, reason: `cannot create a network namespace here: ${(error as Error).message.split('\n')[0]}` };
  } finally {
    await run('ip', ['netns', 'delete', probe]).catch(() => undefined);
  }
  return { ok: true };
}

let sequence = 0;

/** Parses the forwarder's stats line into our direction names (a: client end, b: server end). */
function toStats(line: { ab: LinkCounters; ba: LinkCounters }): ForwarderStats {
  return { clientToServer: line.ab, serverToClient: line.ba };
}

export async function createTunPath(options: TunPathOptions): Promise<TunPath> {
  const specs = { ab: forwarderSpec(options.clientToServer), ba: forwarderSpec(options.serverToClient) };
  const capable = await canForward();
  if (!capable.ok) throw new Error(`cannot build the TUN path: ${capable.reason}`);
  const binary = await forwarderBinary();
  const n = sequence++;
  // Short names: interface names are limited to 15 characters. The prefix carries our pid, so
  // netns.ts's removeStalePaths() clears namespaces a crashed run left behind.
  const name = `${pathNamePrefix()}t${n.toString(36)}`;
  // A /32 pair per path, distinct per process and path: the host end may sit beside other paths.
  const subnet = 10 + (process.pid % 240);
  const host = 1 + ((n * 2) % 252);
  const hostSide = options.client === 'host';
  const side = {
    client: { ns: hostSide ? null : `${name}c`, dev: `${name}c`, address: `10.214.${subnet}.${host + 1}` },
    server: { ns: `${name}s` as string | null, dev: `${name}s`, address: `10.214.${subnet}.${host}` },
  };
  const namespaces = Object.values(side).flatMap(({ ns }) => (ns ? [ns] : []));
  const ip = (...args: string[]) => run('ip', args);
  const forwarder = spawn(binary, [side.client.dev, side.server.dev, String(options.seed ?? 1), specs.ab, specs.ba], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  forwarder.stderr!.on('data', (data: Buffer) => (stderr += data.toString()));
  const lines = new LineReader(forwarder);
  const cleanupSync = () => {
    forwarder.kill('SIGKILL');
    for (const ns of namespaces) {
      try {
        execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
      } catch {
        // Already gone.
      }
    }
  };
  process.once('exit', cleanupSync);
  try {
    const ready = await lines.next(10_000, 'the forwarder to start').catch((error: Error) => {
      throw new Error(`${error.message}${stderr ? `: ${stderr.trim()}` : ''}`);
    });
    if (!ready.includes('"ready"')) throw new Error(`the forwarder said ${ready}`);
    for (const ns of namespaces) {
      await ip('netns', 'add', ns);
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    for (const [which, own] of Object.entries(side)) {
      const peer = which === 'client' ? side.server : side.client;
      const inNs = own.ns ? ['-n', own.ns] : [];
      if (own.ns) await ip('link', 'set', own.dev, 'netns', own.ns);
      // No IPv6 on the devices: no router solicitations or DAD probes in the counters.
      const sysctl = ['sysctl', '-q', '-w', `net.ipv6.conf.${own.dev}.disable_ipv6=1`];
      await (own.ns ? run('ip', ['netns', 'exec', own.ns, ...sysctl]) : run(sysctl[0]!, sysctl.slice(1))).catch(() => undefined);
      await ip(...inNs, 'addr', 'add', own.address, 'peer', peer.address, 'dev', own.dev);
      await ip(...inNs, 'link', 'set', own.dev, 'mtu', '1500', 'up');
    }
  } catch (error) {
    cleanupSync();
    process.off('exit', cleanupSync);
    throw error;
  }

  /** Serialises commands: each answers one line. */
  let queue: Promise<unknown> = Promise.resolve();
  const ask = <T>(command: string): Promise<T> => {
    const answer = queue.then(async () => {
      forwarder.stdin!.write(`${command}\n`);
      return JSON.parse(await lines.next(5_000, `the forwarder's answer to ${command.split(' ')[0]}`)) as T;
    });
    queue = answer.catch(() => undefined);
    return answer;
  };
  const stats = async () => toStats(await ask<{ ab: LinkCounters; ba: LinkCounters }>('stats'));
  let destroyed: Promise<ForwarderStats | null> | undefined;
  return {
    serverNamespace: side.server.ns!,
    clientNamespace: side.client.ns,
    serverAddress: side.server.address,
    clientAddress: side.client.address,
    spawn: (which, command, args, spawnOptions = {}) => {
      const ns = side[which].ns;
      return ns ? spawn('ip', ['netns', 'exec', ns, command, ...args], spawnOptions) : spawn(command, args, spawnOptions);
    },
    configure: async (change) => {
      for (const [direction, link] of [['ab', change.clientToServer], ['ba', change.serverToClient]] as const) {
        if (!link) continue;
        const reply = await ask<{ ok: boolean }>(`set ${direction} ${forwarderSpec(link)}`);
        if (!reply.ok) throw new Error(`the forwarder refused ${forwarderSpec(link)}`);
      }
    },
    stats,
    dropped: async () => {
      const { clientToServer, serverToClient } = await stats();
      return { clientToServer: clientToServer.dropped + clientToServer.queueDrops, serverToClient: serverToClient.dropped + serverToClient.queueDrops };
    },
    takeDrops: async () => {
      const { ab, ba } = await ask<{ ab: number[]; ba: number[] }>('drops');
      return { clientToServer: ab, serverToClient: ba };
    },
    destroy: () =>
      (destroyed ??= (async () => {
        process.off('exit', cleanupSync);
        let final: ForwarderStats | null = null;
        if (forwarder.exitCode === null && forwarder.signalCode === null) {
          // Closing stdin makes it print its final counters and exit.
          await queue;
          const last = lines.next(5_000, 'the final counters').then((line) => toStats(JSON.parse(line) as { ab: LinkCounters; ba: LinkCounters }), () => null);
          forwarder.stdin!.end();
          final = await last;
          if (forwarder.exitCode === null) await new Promise((resolve) => forwarder.once('exit', resolve));
        }
        for (const ns of namespaces) await ip('netns', 'delete', ns).catch(() => undefined);
        return final;
      })()),
  };
}
