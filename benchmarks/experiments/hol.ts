/**
 * The head-of-line blocking experiment (PRODUCT.md §8): `flows` independent flows of numbered
 * messages at a fixed rate share one connection, per transport variant, across a lossy path.
 *
 * Path: on Linux as root, a network namespace pair with nftables random drop in both directions
 * (and tc tbf for a rate limit), server and client each in their own namespace, TCP and UDP
 * impaired alike. Elsewhere, a userspace UDP relay impairs WebTransport only and the TCP
 * transports run unimpaired, which the result states.
 *
 * `runHol()` is importable (the lab can call it): it returns a JSON-serialisable HolResult and
 * reports progress through `onProgress`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { canImpair, createImpairedPath } from '../impairment/netns.ts';
import { startUdpRelay, TCP_LIMITATION, type UdpRelay } from '../impairment/udp-relay.ts';
import type { Lane, TransportName } from '../../transports/transport.ts';
import { analyzeFlows, type FlowAnalysis, type SharedStalls } from './analysis.ts';
import { HOL_VARIANTS, VARIANT_LAYOUT, type HolVariant, type WorkerCommand, type WorkerReply } from './hol-variants.ts';
import { LineReader, ROOT, stopChild, tsArgs } from './processes.ts';
import type { ServerReady } from './server-process.ts';

export { HOL_VARIANTS, type HolVariant } from './hol-variants.ts';

/**
 * Defaults, chosen from runs on this machine (2 cores, no netem so the veth RTT is ~0.1 ms):
 * - 4 flows × 50 msg/s, staggered 5 ms apart: one message on the wire every 5 ms, so each
 *   message is its own packet and a loss hits one flow's message; slow enough that long-polling
 *   keeps up, fast enough that a stall of tens of ms holds back messages of every flow;
 * - 200 B messages: well inside one datagram (the unreliable lane never splits);
 * - 10 s with 1 s warm-up: at 2 % loss ~80 packets dropped per direction, enough stall episodes
 *   to compare "shared" with "shared by chance";
 * - stall threshold = median latency + 10 ms: a lost packet costs TCP tens of ms here (WebSocket
 *   p99 ~60 ms at 2 %), while a loaded 2-core box already shows 5–15 ms scheduling hiccups at 0 %
 *   loss (they stall every flow at once on any transport: compare with a --loss 0 run).
 * With ~0.1 ms RTT, repairs are fast: --rate-mbit adds tbf queueing, the UDP relay's --delay-ms
 * adds RTT for WebTransport only;
 * - relay delay 20 ms each way: a 40 ms RTT, where one QUIC stream visibly stalls every flow on
 *   each loss and channels stall only their own (measured: p99 155 vs 89 ms at 2 %).
 */
export const HOL_DEFAULTS = {
  lossPercent: 2,
  flows: 4,
  ratePerFlow: 50,
  messageSize: 200,
  durationMs: 10_000,
  warmupMs: 1_000,
  stallExtraMs: 10,
  relayDelayMs: 20,
};

export interface HolOptions {
  /** Packets dropped in each direction, 0–10 %. */
  lossPercent?: number;
  /** Rate limit in Mbit/s (kernel path only: tc tbf). */
  rateMbit?: number;
  /** One-way delay in ms (userspace relay only: this kernel has no netem). Default 20 on the relay. */
  delayMs?: number;
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
  /** 'auto': the kernel path when it can be built, else the UDP relay. */
  impairment?: 'auto' | 'netns' | 'relay';
  /** Stops the run: the current variant is cut short, the path torn down, and runHol rejects with the signal's reason. */
  signal?: AbortSignal;
  onProgress?: (event: HolProgress) => void;
}

export type HolProgress =
  | { type: 'path'; impairment: HolImpairment }
  | { type: 'variant-start'; variant: HolVariant; index: number; of: number }
  | { type: 'variant-done'; result: HolVariantResult; index: number; of: number };

export interface HolImpairment {
  kind: 'netns' | 'relay';
  lossPercent: number;
  rateMbit: number | null;
  delayMs: number | null;
  /** What this path does and does not impair. */
  note: string;
  /** Why the namespace path could not be built, when 'auto' fell back to the relay. */
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
  /** Messages never delivered / sent, all flows (0 expected on reliable lanes). */
  lossRate: number;
  /** The same for the datagram variant, null for the others. */
  datagramLossRate: number | null;
  /** Packets the path dropped while this variant ran, per direction. */
  packetsDropped: { clientToServer: number; serverToClient: number } | null;
  /** The client connection's own counters (QUIC loss/retransmits; `dropped`: its datagram queue). */
  transportStats: WorkerReply['stats'];
}

export interface HolResult {
  experiment: 'head-of-line';
  startedAt: string;
  settings: Required<Omit<HolOptions, 'onProgress' | 'signal' | 'rateMbit' | 'delayMs' | 'stallThresholdMs' | 'impairment'>> & { stallThresholdMs: number | null };
  impairment: HolImpairment;
  variants: HolVariantResult[];
}

/** Server, client worker and the path between them. */
interface Setup {
  impairment: HolImpairment;
  base: Pick<WorkerCommand, 'url' | 'webTransportUrl' | 'certificateSha256'>;
  impaired: (transport: TransportName) => boolean;
  dropped: () => Promise<{ clientToServer: number; serverToClient: number }>;
  worker: LineReader;
  close: () => Promise<void>;
}

const STARTUP_MS = 30_000;

async function serverReady(server: ChildProcess): Promise<ServerReady> {
  return new LineReader(server).json<ServerReady>(STARTUP_MS, 'the server to listen');
}

async function kernelPath(lossPercent: number, rateMbit: number | undefined, transports: TransportName[]): Promise<Setup> {
  const path = await createImpairedPath({ lossPercent, ...(rateMbit ? { rateMbit } : {}) });
  const children: ChildProcess[] = [];
  try {
    const server = path.spawn('server', process.execPath, tsArgs('server-process.ts', JSON.stringify({ host: path.serverAddress, transports })), { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(server);
    const ready = await serverReady(server);
    const worker = path.spawn('client', process.execPath, tsArgs('hol-worker.ts'), { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(worker);
    return {
      impairment: {
        kind: 'netns',
        lossPercent,
        rateMbit: rateMbit ?? null,
        delayMs: null,
        note: `network namespaces ${path.clientNamespace} → ${path.serverNamespace}, nftables random drop ${lossPercent} % each way${rateMbit ? `, tc tbf ${rateMbit} Mbit/s each way` : ''}; TCP and UDP impaired alike; no added delay (no netem on this kernel)`,
      },
      base: { url: ready.url },
      impaired: () => true,
      dropped: () => path.dropped(),
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

async function relayPath(lossPercent: number, delayMs: number | undefined, transports: TransportName[], reason: string | null): Promise<Setup> {
  const server = spawn(process.execPath, tsArgs('server-process.ts', JSON.stringify({ host: '127.0.0.1', transports })), { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  const children: ChildProcess[] = [server];
  let relay: UdpRelay | undefined;
  try {
    const ready = await serverReady(server);
    const started = await startUdpRelay({ targetHost: '127.0.0.1', targetPort: ready.port, lossPercent, ...(delayMs ? { delayMs } : {}) });
    relay = started;
    const worker = spawn(process.execPath, tsArgs('hol-worker.ts'), { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
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
  const capability = await canImpair();
  if (wanted === 'netns' && !capability.ok) throw new Error(`cannot build the kernel path: ${capability.reason}`);
  const useKernel = wanted === 'netns' || (wanted === 'auto' && capability.ok);
  // nftables' `numgen random mod 100` drops whole percents.
  if (useKernel && !Number.isInteger(settings.lossPercent)) throw new RangeError(`the kernel path drops whole percents, got ${settings.lossPercent}`);
  const setup = useKernel
    ? await kernelPath(settings.lossPercent, options.rateMbit, transports)
    : await relayPath(settings.lossPercent, options.delayMs ?? HOL_DEFAULTS.relayDelayMs, transports, capability.ok ? null : capability.reason);
  // Say so when an option has no effect on the chosen path, rather than ignoring it silently.
  if (useKernel && options.delayMs) setup.impairment.note += `; delay ${options.delayMs} ms NOT applied (no netem on this kernel)`;
  if (!useKernel && options.rateMbit) setup.impairment.note += `; rate limit ${options.rateMbit} Mbit/s NOT applied (the relay does not shape)`;
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
      setup.worker.child.stdin!.write(`${JSON.stringify(command)}\n`);
      const reply = await Promise.race([setup.worker.json<WorkerReply>(settings.durationMs + STARTUP_MS, `the ${variant} run`), aborted]);
      const after = await setup.dropped();
      const analysis = analyzeFlows(reply.flows, { warmupMs: settings.warmupMs, stallThresholdMs: options.stallThresholdMs, stallExtraMs: settings.stallExtraMs });
      const result: HolVariantResult = {
        variant,
        transport: layout.transport,
        impaired: setup.impaired(layout.transport),
        ...(reply.error ? { error: reply.error } : {}),
        thresholdMs: analysis.thresholdMs,
        flows: analysis.flows.map((flow) => ({ ...flow, lane: layout.lane(flow.flow) })),
        stalls: analysis.stalls,
        lossRate: analysis.lossRate,
        datagramLossRate: variant === 'webtransport-unreliable' ? analysis.lossRate : null,
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
