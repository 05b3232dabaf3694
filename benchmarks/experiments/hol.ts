/**
 * The head-of-line blocking experiment (PRODUCT.md §8): `flows` independent flows of numbered
 * messages at a fixed rate share one connection, per transport variant, across a lossy path.
 *
 * Path: on Linux as root, a network namespace pair joined by the TUN forwarder
 * (../impairment/tun-path.ts): delay, loss and a rate limit on every IP packet, TCP and UDP alike.
 * Fallbacks, each saying what it cannot impair: without gcc or /dev/net/tun, the namespace pair with
 * nftables random drop (no delay: no netem on this kernel); without root, a userspace UDP relay
 * that impairs WebTransport only (the TCP transports run unimpaired).
 *
 * `runHol()` is importable (the lab can call it): it returns a JSON-serialisable HolResult and
 * reports progress through `onProgress`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { canImpair, createImpairedPath } from '../impairment/netns.ts';
import { canForward, createTunPath } from '../impairment/tun-path.ts';
import { startUdpRelay, TCP_LIMITATION, type UdpRelay } from '../impairment/udp-relay.ts';
import type { Lane, TransportName } from '../../transports/transport.ts';
import { analyzeFlows, type FlowAnalysis, type LossStalls, type SharedStalls } from './analysis.ts';
import { HOL_VARIANTS, isUnreliable, VARIANT_LAYOUT, type HolVariant, type WorkerCommand, type WorkerReply } from './hol-variants.ts';
import { LineReader, raisePriority, ROOT, stopChild, tsArgs } from './processes.ts';
import type { ServerReady } from './server-process-protocol.ts';

export { HOL_VARIANTS, type HolVariant } from './hol-variants.ts';

/**
 * Defaults, chosen from runs on this machine (2 cores):
 * - 4 flows × 50 msg/s, staggered 5 ms apart: one message on the wire every 5 ms, so each
 *   message is its own packet and a loss hits one flow's message; slow enough that long-polling
 *   keeps up, fast enough that a stall of one round trip holds back messages of every flow;
 * - 200 B messages: well inside one datagram (the unreliable lane never splits);
 * - 10 s with 1 s warm-up: at 2 % loss ~80 packets dropped per direction, enough stall episodes
 *   to compare "shared" with "shared by chance";
 * - 20 ms each way (40 ms RTT, a nearby server over the Internet): repairing a loss costs at
 *   least one RTT, so a lost packet stalls what waits behind it visibly, far above scheduling noise;
 * - stall threshold = median latency + 20 ms (half the default RTT): a repaired loss costs ≥ 40 ms,
 *   while a loaded 2-core box shows 5–15 ms scheduling hiccups at 0 % loss (they stall every flow at
 *   once on any transport: compare with a --loss 0 run);
 * - seed 1: the forwarder's loss dice (the traffic's timing still varies a little run to run).
 */
export const HOL_DEFAULTS = {
  lossPercent: 2,
  delayMs: 20,
  seed: 1,
  flows: 4,
  ratePerFlow: 50,
  messageSize: 200,
  durationMs: 10_000,
  warmupMs: 1_000,
  stallExtraMs: 20,
};

export interface HolOptions {
  /** Packets dropped in each direction, 0–10 %. */
  lossPercent?: number;
  /** Rate limit in Mbit/s each way (TUN path; tc tbf on the nftables path; not on the relay). */
  rateMbit?: number;
  /** One-way delay in ms (TUN path and UDP relay; the nftables path cannot delay). Default 20. */
  delayMs?: number;
  /** Seed of the TUN forwarder's loss dice. Default 1. */
  seed?: number;
  variants?: readonly HolVariant[];
  flows?: number;
  /** Messages per second per flow. */
  ratePerFlow?: number;
  messageSize?: number;
  /** Sending time per variant (ms), warm-up included. */
  durationMs?: number;
  /** Messages sent before this (ms) are not analysed. */
  warmupMs?: number;
  /** Fixed stall threshold (ms); default: median latency + stallExtraMs. */
  stallThresholdMs?: number;
  stallExtraMs?: number;
  /** 'auto': the TUN path when it can be built, else the nftables path, else the UDP relay. */
  impairment?: 'auto' | HolImpairment['kind'];
  /** Stops the run: the current variant is cut short, the path torn down, and runHol rejects with the signal's reason. */
  signal?: AbortSignal;
  onProgress?: (event: HolProgress) => void;
}

export type HolProgress =
  | { type: 'path'; impairment: HolImpairment }
  | { type: 'variant-start'; variant: HolVariant; index: number; of: number }
  | { type: 'variant-done'; result: HolVariantResult; index: number; of: number };

export interface HolImpairment {
  /** tun: delay, loss and rate on every packet; netns: loss (and rate) only, no delay; relay: UDP only. */
  kind: 'tun' | 'netns' | 'relay';
  lossPercent: number;
  rateMbit: number | null;
  delayMs: number | null;
  /** The TUN forwarder's seed (that path only). */
  seed?: number;
  /** What this path does and does not impair. */
  note: string;
  /** Why a better path could not be built, when 'auto' fell back. */
  unavailable?: string;
}

export interface HolFlowResult extends FlowAnalysis {
  lane: Lane;
}

export interface HolVariantResult {
  variant: HolVariant;
  transport: TransportName;
  /** Whether this variant's packets crossed the lossy path (false: TCP in relay mode). */
  impaired: boolean;
  error?: string;
  /** Latency above this is a stall (ms). */
  thresholdMs: number;
  flows: HolFlowResult[];
  /** How often a stall of one flow coincided with a stall of another (the head-of-line effect). */
  stalls: SharedStalls;
  /** How many flows each of the path's drops stalled (TUN path only: it logs when it drops; null elsewhere). */
  afterLoss?: LossStalls | null;
  /** Messages never delivered / sent, all flows (0 expected on reliable lanes). */
  lossRate: number;
  /** The same for the datagram variants (WebTransport datagrams, WebRTC's unreliable channel), null for the others. */
  datagramLossRate: number | null;
  /** Packets the path dropped while this variant ran, per direction. */
  packetsDropped: { clientToServer: number; serverToClient: number } | null;
  /** The client connection's own counters (QUIC loss/retransmits; `dropped`: its datagram queue). */
  transportStats: WorkerReply['stats'];
}

export interface HolResult {
  experiment: 'head-of-line';
  startedAt: string;
  settings: Required<Omit<HolOptions, 'onProgress' | 'signal' | 'rateMbit' | 'delayMs' | 'seed' | 'stallThresholdMs' | 'impairment'>> & { stallThresholdMs: number | null };
  impairment: HolImpairment;
  variants: HolVariantResult[];
}

/** Server, client worker and the path between them. */
interface Setup {
  impairment: HolImpairment;
  base: Pick<WorkerCommand, 'url' | 'webTransportUrl' | 'certificateSha256'>;
  impaired: (transport: TransportName) => boolean;
  dropped: () => Promise<{ clientToServer: number; serverToClient: number }>;
  /** Drop times since the last call (CLOCK_MONOTONIC ms), when the path logs them. */
  takeDrops?: () => Promise<number[]>;
  worker: LineReader;
  close: () => Promise<void>;
}

const STARTUP_MS = 30_000;

async function serverReady(server: ChildProcess): Promise<ServerReady> {
  return new LineReader(server).json<ServerReady>(STARTUP_MS, 'the server to listen');
}

/** A path between a server and a client namespace: the TUN path or the nftables one. */
interface NamespacePath {
  spawn(side: 'server' | 'client', command: string, args: readonly string[], options: { cwd: string; stdio: ['pipe', 'pipe', 'inherit'] }): ChildProcess;
  serverAddress: string;
  dropped(): Promise<{ clientToServer: number; serverToClient: number }>;
  takeDrops?: () => Promise<{ clientToServer: number[]; serverToClient: number[] }>;
  destroy(): Promise<unknown>;
}

async function namespaceSetup(path: NamespacePath, impairment: HolImpairment, transports: TransportName[]): Promise<Setup> {
  const children: ChildProcess[] = [];
  try {
    const server = raisePriority(path.spawn('server', process.execPath, tsArgs('server-process.ts', JSON.stringify({ host: path.serverAddress, transports })), { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] }));
    children.push(server);
    const ready = await serverReady(server);
    const worker = raisePriority(path.spawn('client', process.execPath, tsArgs('hol-worker.ts'), { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] }));
    children.push(worker);
    return {
      impairment,
      base: { url: ready.url },
      impaired: () => true,
      dropped: () => path.dropped(),
      ...(path.takeDrops
        ? {
            takeDrops: async () => {
              const drops = await path.takeDrops!();
              return [...drops.clientToServer, ...drops.serverToClient].sort((a, b) => a - b);
            },
          }
        : {}),
      worker: new LineReader(worker),
      close: async () => {
        await Promise.all(children.map((child) => stopChild(child)));
        await path.destroy();
      },
    };
  } catch (error) {
    for (const child of children) child.kill('SIGKILL');
    await path.destroy();
    throw error;
  }
}

async function tunSetup(settings: { lossPercent: number; delayMs: number; seed: number }, rateMbit: number | undefined, transports: TransportName[]): Promise<Setup> {
  const link = { delayMs: settings.delayMs, lossPercent: settings.lossPercent, ...(rateMbit ? { rateMbit } : {}) };
  const path = await createTunPath({ clientToServer: link, serverToClient: link, seed: settings.seed });
  return namespaceSetup(path, {
    kind: 'tun',
    lossPercent: settings.lossPercent,
    rateMbit: rateMbit ?? null,
    delayMs: settings.delayMs,
    seed: settings.seed,
    note: `network namespaces ${path.clientNamespace} → ${path.serverNamespace} joined by the TUN forwarder: ${settings.delayMs} ms delay, ${settings.lossPercent} % random loss${rateMbit ? `, ${rateMbit} Mbit/s` : ''} each way on every IP packet (seed ${settings.seed}); TCP and UDP impaired alike`,
  }, transports);
}

async function kernelPath(lossPercent: number, rateMbit: number | undefined, transports: TransportName[], reason: string | null): Promise<Setup> {
  const path = await createImpairedPath({ lossPercent, ...(rateMbit ? { rateMbit } : {}) });
  return namespaceSetup(path, {
    kind: 'netns',
    lossPercent,
    rateMbit: rateMbit ?? null,
    delayMs: null,
    ...(reason ? { unavailable: reason } : {}),
    note: `${reason ? `TUN path unavailable (${reason}); ` : ''}network namespaces ${path.clientNamespace} → ${path.serverNamespace}, nftables random drop ${lossPercent} % each way${rateMbit ? `, tc tbf ${rateMbit} Mbit/s each way` : ''}; TCP and UDP impaired alike; cannot delay (no netem on this kernel), so losses are repaired within a fraction of a millisecond and head-of-line stalls hide in the noise`,
  }, transports);
}

async function relayPath(lossPercent: number, delayMs: number | undefined, transports: TransportName[], reason: string | null): Promise<Setup> {
  const server = raisePriority(spawn(process.execPath, tsArgs('server-process.ts', JSON.stringify({ host: '127.0.0.1', transports })), { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] }));
  const children: ChildProcess[] = [server];
  let relay: UdpRelay | undefined;
  try {
    const ready = await serverReady(server);
    const started = await startUdpRelay({ targetHost: '127.0.0.1', targetPort: ready.port, lossPercent, ...(delayMs ? { delayMs } : {}) });
    relay = started;
    const worker = raisePriority(spawn(process.execPath, tsArgs('hol-worker.ts'), { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] }));
    children.push(worker);
    return {
      impairment: {
        kind: 'relay',
        lossPercent,
        rateMbit: null,
        delayMs: delayMs ?? null,
        ...(reason ? { unavailable: reason } : {}),
        note: `${reason ? `kernel path unavailable (${reason}); ` : ''}userspace UDP relay on 127.0.0.1:${started.port}, ${lossPercent} % drop each way${delayMs ? `, ${delayMs} ms delay each way` : ''}; ${TCP_LIMITATION}`,
      },
      base: { url: ready.url, webTransportUrl: `https://127.0.0.1:${started.port}/wt`, certificateSha256: ready.certificateSha256 },
      impaired: (transport) => transport === 'webtransport',
      dropped: async () => {
        const counts = started.counters();
        return { clientToServer: counts.clientToServer.dropped, serverToClient: counts.serverToClient.dropped };
      },
      worker: new LineReader(worker),
      close: async () => {
        await Promise.all(children.map((child) => stopChild(child)));
        await started.close();
      },
    };
  } catch (error) {
    for (const child of children) child.kill('SIGKILL');
    await relay?.close();
    throw error;
  }
}

/** The best path asked for and available: TUN, else nftables, else the UDP relay ('auto'). */
async function choosePath(wanted: 'auto' | HolImpairment['kind'], settings: { lossPercent: number; delayMs: number; seed: number }, rateMbit: number | undefined, transports: TransportName[]): Promise<Setup> {
  if (wanted === 'tun' || wanted === 'auto') {
    const tun = await canForward();
    if (tun.ok) return tunSetup(settings, rateMbit, transports);
    if (wanted === 'tun') throw new Error(`cannot build the TUN path: ${tun.reason}`);
    const nft = await canImpair();
    if (nft.ok) return kernelPathChecked(settings.lossPercent, rateMbit, transports, tun.reason);
    return relayPath(settings.lossPercent, settings.delayMs, transports, `${tun.reason}; ${nft.reason}`);
  }
  if (wanted === 'netns') {
    const nft = await canImpair();
    if (!nft.ok) throw new Error(`cannot build the kernel path: ${nft.reason}`);
    return kernelPathChecked(settings.lossPercent, rateMbit, transports, null);
  }
  return relayPath(settings.lossPercent, settings.delayMs, transports, null);
}

async function kernelPathChecked(lossPercent: number, rateMbit: number | undefined, transports: TransportName[], reason: string | null): Promise<Setup> {
  // nftables' `numgen random mod 100` drops whole percents.
  if (!Number.isInteger(lossPercent)) throw new RangeError(`the nftables path drops whole percents, got ${lossPercent}`);
  return kernelPath(lossPercent, rateMbit, transports, reason);
}

/** Runs the experiment over every requested variant in turn, on one path and one server. */
export async function runHol(options: HolOptions = {}): Promise<HolResult> {
  const settings = {
    ...HOL_DEFAULTS,
    variants: HOL_VARIANTS,
    ...Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)),
  } as typeof HOL_DEFAULTS & { variants: readonly HolVariant[] } & HolOptions;
  if (settings.flows < 1 || settings.flows > 255) throw new RangeError(`flows must be 1–255, got ${settings.flows}`);
  if (settings.warmupMs >= settings.durationMs) throw new RangeError('the warm-up must be shorter than the duration');
  const startedAt = new Date().toISOString();
  const transports = [...new Set(settings.variants.map((variant) => VARIANT_LAYOUT[variant].transport))];
  const wanted = options.impairment ?? 'auto';
  const setup = await choosePath(wanted, settings, options.rateMbit, transports);
  // Say so when an option has no effect on the chosen path, rather than ignoring it silently.
  if (setup.impairment.kind === 'netns' && settings.delayMs) setup.impairment.note += `; delay ${settings.delayMs} ms NOT applied`;
  if (setup.impairment.kind === 'relay' && options.rateMbit) setup.impairment.note += `; rate limit ${options.rateMbit} Mbit/s NOT applied (the relay does not shape)`;
  const results: HolVariantResult[] = [];
  // An abort ends the wait for the worker's reply; `finally` then stops the processes and the path.
  const { signal } = options;
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  aborted.catch(() => undefined);
  try {
    signal?.throwIfAborted();
    options.onProgress?.({ type: 'path', impairment: setup.impairment });
    for (const [index, variant] of settings.variants.entries()) {
      signal?.throwIfAborted();
      options.onProgress?.({ type: 'variant-start', variant, index, of: settings.variants.length });
      const layout = VARIANT_LAYOUT[variant];
      const command: WorkerCommand = {
        ...setup.base,
        variant,
        flows: settings.flows,
        ratePerFlow: settings.ratePerFlow,
        messageSize: settings.messageSize,
        durationMs: settings.durationMs,
      };
      const before = await setup.dropped();
      await setup.takeDrops?.();
      setup.worker.child.stdin!.write(`${JSON.stringify(command)}\n`);
      const reply = await Promise.race([setup.worker.json<WorkerReply>(settings.durationMs + STARTUP_MS, `the ${variant} run`), aborted]);
      const after = await setup.dropped();
      const drops = await setup.takeDrops?.();
      const dropsMs = drops && reply.monotonicT0Ms ? drops.map((at) => at - reply.monotonicT0Ms!) : undefined;
      const analysis = analyzeFlows(reply.flows, { warmupMs: settings.warmupMs, stallThresholdMs: options.stallThresholdMs, stallExtraMs: settings.stallExtraMs, dropsMs, oneWayMs: setup.impairment.delayMs ?? 0 });
      const result: HolVariantResult = {
        variant,
        transport: layout.transport,
        impaired: setup.impaired(layout.transport),
        ...(reply.error ? { error: reply.error } : {}),
        thresholdMs: analysis.thresholdMs,
        flows: analysis.flows.map((flow) => ({ ...flow, lane: layout.lane(flow.flow) })),
        stalls: analysis.stalls,
        afterLoss: analysis.afterLoss,
        lossRate: analysis.lossRate,
        datagramLossRate: isUnreliable(variant) ? analysis.lossRate : null,
        packetsDropped: { clientToServer: after.clientToServer - before.clientToServer, serverToClient: after.serverToClient - before.serverToClient },
        transportStats: reply.stats,
      };
      results.push(result);
      options.onProgress?.({ type: 'variant-done', result, index, of: settings.variants.length });
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await setup.close();
  }
  return {
    experiment: 'head-of-line',
    startedAt,
    settings: {
      lossPercent: settings.lossPercent,
      variants: settings.variants,
      flows: settings.flows,
      ratePerFlow: settings.ratePerFlow,
      messageSize: settings.messageSize,
      durationMs: settings.durationMs,
      warmupMs: settings.warmupMs,
      stallExtraMs: settings.stallExtraMs,
      stallThresholdMs: options.stallThresholdMs ?? null,
    },
    impairment: setup.impairment,
    variants: results,
  };
}
