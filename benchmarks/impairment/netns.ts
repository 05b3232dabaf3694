/**
 * A lossy network path for experiments, made of real kernel parts: two network namespaces joined
 * by a veth pair, an nftables rule in each that drops N % of the TCP and UDP packets it sends
 * (`numgen random mod 100 < N`), and optionally a `tc tbf` rate limit. TCP and UDP cross the same
 * path, so TCP retransmission and QUIC recovery meet the same losses. This kernel has no netem,
 * so there is no added delay. Needs root, `ip`, `nft` and `tc`; never touches the host's own
 * interfaces or nftables tables (everything lives inside the two namespaces and dies with them).
 */
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);
/** Every namespace and veth this module makes starts with this, so stale ones can be found. */
const PREFIX = 'syimp';

/**
 * Names start with the owning process's pid (base 36, so a veth name stays within 15 characters):
 * stale-path cleanup removes only what a process that has exited left behind, never the live
 * paths of another test worker or run.
 */
export function pathNamePrefix(pid: number = process.pid): string {
  return `${PREFIX}${pid.toString(36)}-`;
}

function ownerIsGone(name: string): boolean {
  const pid = /^syimp([0-9a-z]+)-/.exec(name)?.[1];
  if (pid === undefined) return true; // not a name this module makes now: an older run's
  try {
    process.kill(Number.parseInt(pid, 36), 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
const TABLE = 'switchyard_impairment';

export interface ImpairedPathOptions {
  /** Packets dropped in each direction, 0–10 %. */
  lossPercent: number;
  /** Optional rate limit in Mbit/s (tc tbf), both directions. */
  rateMbit?: number;
}

export interface ImpairedPath {
  readonly serverNamespace: string;
  readonly clientNamespace: string;
  readonly serverAddress: string;
  readonly clientAddress: string;
  /** Starts a process inside one of the namespaces. */
  spawn(side: 'server' | 'client', command: string, args: readonly string[], options?: SpawnOptions): ChildProcess;
  /** Changes the loss on the live path. */
  setLoss(lossPercent: number): Promise<void>;
  /** Packets the loss rules dropped so far, per direction. */
  dropped(): Promise<{ serverToClient: number; clientToServer: number }>;
  /** Removes namespaces (and with them the veths, rules and qdiscs). Idempotent. */
  destroy(): Promise<void>;
}

/** Whether this machine can build an impaired path, and if not why. */
export async function canImpair(): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (process.platform !== 'linux') return { ok: false, reason: `network namespaces need Linux (this is ${process.platform})` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'network namespaces and nftables need root' };
  for (const tool of ['ip', 'nft', 'tc']) {
    try {
      await run(tool, ['-V']);
    } catch {
      return { ok: false, reason: `'${tool}' is not installed (apt-get install iproute2 nftables)` };
    }
  }
  // Root is not always enough (a container may lack CAP_NET_ADMIN): try the real thing once.
  const probe = `${pathNamePrefix()}p`;
  try {
    await run('ip', ['netns', 'add', probe]);
    await run('ip', ['netns', 'exec', probe, 'nft', 'add', 'table', 'inet', TABLE]);
  } catch (error) {
    return { ok: false, reason: `cannot create a network namespace with nftables here: ${(error as Error).message.split('\n')[0]}` };
  } finally {
    await run('ip', ['netns', 'delete', probe]).catch(() => undefined);
  }
  return { ok: true };
}

/** Deletes namespaces left behind by a run that crashed (whose process is gone). */
export async function removeStalePaths(): Promise<number> {
  const { stdout } = await run('ip', ['netns', 'list']);
  const stale = stdout
    .split('\n')
    .map((line) => line.split(' ')[0]!)
    .filter((name) => name.startsWith(PREFIX) && ownerIsGone(name));
  for (const name of stale) await run('ip', ['netns', 'delete', name]).catch(() => undefined);
  return stale.length;
}

function validateLoss(lossPercent: number): void {
  if (!(Number.isFinite(lossPercent) && lossPercent >= 0 && lossPercent <= 10)) throw new RangeError(`loss must be 0–10 %, got ${lossPercent}`);
}

let sequence = 0;

export async function createImpairedPath(options: ImpairedPathOptions): Promise<ImpairedPath> {
  validateLoss(options.lossPercent);
  const capable = await canImpair();
  if (!capable.ok) throw new Error(`cannot impair: ${capable.reason}`);
  // Short unique names: interface names are limited to 15 characters.
  const name = `${pathNamePrefix()}${(sequence++).toString(36)}`;
  const subnet = 10 + ((process.pid + sequence) % 240);
  const side = {
    server: { ns: `${name}s`, veth: `${name}s`, address: `10.213.${subnet}.1` },
    client: { ns: `${name}c`, veth: `${name}c`, address: `10.213.${subnet}.2` },
  };
  const ip = (...args: string[]) => run('ip', args);
  const inNs = (ns: string, command: string, ...args: string[]) => run('ip', ['netns', 'exec', ns, command, ...args]);
  const cleanupSync = () => {
    for (const { ns } of Object.values(side)) {
      try {
        execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
      } catch {
        // Already gone.
      }
    }
  };
  process.once('exit', cleanupSync);
  try {
    await ip('netns', 'add', side.server.ns);
    await ip('netns', 'add', side.client.ns);
    await ip('link', 'add', side.server.veth, 'type', 'veth', 'peer', 'name', side.client.veth);
    for (const { ns, veth, address } of Object.values(side)) {
      await ip('link', 'set', veth, 'netns', ns);
      await ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', veth);
      await ip('-n', ns, 'link', 'set', veth, 'up');
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await inNs(ns, 'nft', 'add', 'table', 'inet', TABLE);
      await inNs(ns, 'nft', 'add', 'chain', 'inet', TABLE, 'egress', '{ type filter hook output priority 0; policy accept; }');
      if (options.rateMbit) await inNs(ns, 'tc', 'qdisc', 'add', 'dev', veth, 'root', 'tbf', 'rate', `${options.rateMbit}mbit`, 'burst', '32kbit', 'latency', '100ms');
    }
  } catch (error) {
    cleanupSync();
    process.off('exit', cleanupSync);
    throw error;
  }

  const setLoss = async (lossPercent: number) => {
    validateLoss(lossPercent);
    for (const { ns, veth } of Object.values(side)) {
      await inNs(ns, 'nft', 'flush', 'chain', 'inet', TABLE, 'egress');
      // Each side drops that share of what it sends: loss in both directions, independently.
      // TCP and UDP only: the kernel's own IPv6 neighbour discovery on the veth is neither dropped
      // nor counted, so the counter is exactly the experiment's losses.
      await inNs(ns, 'nft', 'add', 'rule', 'inet', TABLE, 'egress', 'oifname', veth, 'meta', 'l4proto', '{', 'tcp,', 'udp', '}', 'numgen', 'random', 'mod', '100', '<', String(Math.round(lossPercent)), 'counter', 'drop');
    }
  };
  await setLoss(options.lossPercent);

  const droppedBy = async (ns: string) => {
    const { stdout } = await inNs(ns, 'nft', 'list', 'chain', 'inet', TABLE, 'egress');
    return Number(/counter packets (\d+)/.exec(stdout)?.[1] ?? 0);
  };
  let destroyed = false;
  return {
    serverNamespace: side.server.ns,
    clientNamespace: side.client.ns,
    serverAddress: side.server.address,
    clientAddress: side.client.address,
    spawn: (which, command, args, spawnOptions = {}) => spawn('ip', ['netns', 'exec', side[which].ns, command, ...args], spawnOptions),
    setLoss,
    dropped: async () => ({ serverToClient: await droppedBy(side.server.ns), clientToServer: await droppedBy(side.client.ns) }),
    destroy: async () => {
      if (destroyed) return;
      destroyed = true;
      process.off('exit', cleanupSync);
      for (const { ns } of Object.values(side)) await ip('netns', 'delete', ns).catch(() => undefined);
    },
  };
}
