/**
 * A userspace UDP impairment relay, for machines where network namespaces and nftables are not
 * available (not root, not Linux). Clients talk to the relay's port; for each client address the
 * relay opens its own socket towards the target, so replies find their way back. Each datagram, in
 * each direction, is dropped with probability `lossPercent` and otherwise forwarded after
 * `delayMs` (plus up to `jitterMs`, which may reorder: real paths do too).
 *
 * UDP only, by design: QUIC sees exactly the loss a lossy path would give it. A TCP relay cannot do
 * the same: it would terminate TCP on each side, so a "dropped" segment would never be a lost
 * packet that the sender's TCP has to recover; it would just be missing bytes. TCP transports need
 * the kernel path (netns.ts) to be impaired.
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';

export interface UdpRelayOptions {
  /** Where datagrams go (the QUIC server). */
  targetHost: string;
  targetPort: number;
  /** Datagrams dropped in each direction, 0–100 %. */
  lossPercent: number;
  /** One-way delay added to every forwarded datagram (ms). Default 0. */
  delayMs?: number;
  /** Extra random delay, uniform in [0, jitterMs] (ms). Default 0. */
  jitterMs?: number;
  /** Address the relay listens on. Default 127.0.0.1. */
  host?: string;
  /** Port the relay listens on; 0 picks one. Default 0. */
  port?: number;
  /** Random source in [0, 1): tests may pass a seeded one. Default Math.random. */
  random?: () => number;
}

/** Datagram counts per direction. */
export interface RelayCounters {
  clientToServer: { forwarded: number; dropped: number };
  serverToClient: { forwarded: number; dropped: number };
}

export interface UdpRelay {
  readonly host: string;
  readonly port: number;
  /** Changes the loss on the live relay. */
  setLoss(lossPercent: number): void;
  counters(): RelayCounters;
  close(): Promise<void>;
}

/** Why TCP cannot be impaired by this relay, for reports. */
export const TCP_LIMITATION =
  'the userspace relay impairs UDP only: a TCP relay terminates TCP on each side, so a dropped segment is never a packet loss the sender must recover; TCP transports ran unimpaired (run as root on Linux for the namespace path)';

function validateLoss(lossPercent: number): void {
  if (!(Number.isFinite(lossPercent) && lossPercent >= 0 && lossPercent <= 100)) throw new RangeError(`loss must be 0–100 %, got ${lossPercent}`);
}

/** Starts a relay; resolves once it listens. */
export async function startUdpRelay(options: UdpRelayOptions): Promise<UdpRelay> {
  validateLoss(options.lossPercent);
  let lossPercent = options.lossPercent;
  const random = options.random ?? Math.random;
  const delayMs = options.delayMs ?? 0;
  const jitterMs = options.jitterMs ?? 0;
  const counts: RelayCounters = { clientToServer: { forwarded: 0, dropped: 0 }, serverToClient: { forwarded: 0, dropped: 0 } };
  const timers = new Set<ReturnType<typeof setTimeout>>();
  /** Upstream socket per client address ("host:port"). */
  const upstreams = new Map<string, dgram.Socket>();
  // Large socket buffers: a burst must be dropped by the relay's dice, not by a full kernel queue.
  const socketOptions = { type: options.targetHost.includes(':') ? ('udp6' as const) : ('udp4' as const), recvBufferSize: 4 * 1024 * 1024, sendBufferSize: 4 * 1024 * 1024 };
  const listener = dgram.createSocket(socketOptions);

  const pass = (direction: keyof RelayCounters, forward: () => void): void => {
    if (random() * 100 < lossPercent) {
      counts[direction].dropped++;
      return;
    }
    counts[direction].forwarded++;
    const wait = delayMs + (jitterMs > 0 ? random() * jitterMs : 0);
    if (wait <= 0) return forward();
    const timer = setTimeout(() => {
      timers.delete(timer);
      forward();
    }, wait);
    timers.add(timer);
  };

  listener.on('message', (datagram, from) => {
    const key = `${from.address}:${from.port}`;
    let upstream = upstreams.get(key);
    if (!upstream) {
      const socket = dgram.createSocket(socketOptions);
      socket.on('message', (reply) => pass('serverToClient', () => listener.send(reply, from.port, from.address)));
      // A send error on one flow (e.g. ICMP unreachable) must not end the relay.
      socket.on('error', () => undefined);
      upstreams.set(key, socket);
      upstream = socket;
    }
    const socket = upstream;
    pass('clientToServer', () => socket.send(datagram, options.targetPort, options.targetHost));
  });
  listener.on('error', () => undefined);
  await new Promise<void>((resolve) => listener.bind(options.port ?? 0, options.host ?? '127.0.0.1', resolve));
  const address = listener.address() as AddressInfo;

  return {
    host: address.address,
    port: address.port,
    setLoss: (percent) => {
      validateLoss(percent);
      lossPercent = percent;
    },
    counters: () => structuredClone(counts),
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await Promise.all([listener, ...upstreams.values()].map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))));
      upstreams.clear();
    },
  };
}
