/**
 * A live impaired network for the lab: a second Switchyard server (with the lab) in a network
 * namespace behind the TUN forwarder, so a browser on this machine runs the lab's pages through
 * delay, loss or a rate limit, TCP and QUIC alike.
 *
 * How Chromium reaches it, and why so:
 * - The forwarder's client end sits in the host's namespace (tun-path.ts, `client: 'host'`), so
 *   the server's address (10.214.x.y) is routed through the impaired path.
 * - The page itself must be a secure context for the WebTransport API, and long-polling must be
 *   same-origin (the server sends no CORS headers). So the page is opened from a loopback port
 *   (`http://127.0.0.1:P/`, secure by being localhost) that a TCP port forward here relays to the
 *   namespaced server: the page, WebSocket and long-polling ride TCP connections whose server leg
 *   crosses the impaired path (a segment lost there is repaired by TCP and holds back what
 *   follows, exactly as end to end).
 * - WebTransport goes straight to the routed address: `/info` of that server names
 *   `https://10.214.x.y:port/wt` and its certificate hash, and Chromium's QUIC packets cross the
 *   forwarder end to end.
 */
import { type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { createTunPath, type ForwarderStats, type LinkImpairment, type TunPath } from '../impairment/tun-path.ts';
import { LineReader, raisePriority, ROOT, stopChild, tsArgs } from './processes.ts';
import type { ServerReady } from './server-process-protocol.ts';

export type NetworkProfile = 'lossy' | 'slow';

/** The profiles the lab offers, both directions alike. */
export const NETWORK_PROFILES: Record<NetworkProfile, { label: string; link: LinkImpairment }> = {
  lossy: { label: '2 % loss + 40 ms RTT', link: { delayMs: 20, lossPercent: 2 } },
  slow: { label: '20 Mbit/s + 40 ms RTT', link: { delayMs: 20, lossPercent: 0, rateMbit: 20 } },
};

export interface LiveNetwork {
  profile: NetworkProfile;
  label: string;
  /** Where the browser opens the lab through this network (a loopback port forward). */
  labUrl: string;
  /** The namespaced server's own address (WebTransport goes there directly). */
  serverUrl: string;
  note: string;
  stats(): Promise<ForwarderStats>;
  close(): Promise<void>;
}

/** `labStaticDir`: the built lab the namespaced server serves (the same build as the server the page came from). */
export async function startLiveNetwork(profile: NetworkProfile, seed = 1, labStaticDir?: string): Promise<LiveNetwork> {
  const { label, link } = NETWORK_PROFILES[profile];
  const path: TunPath = await createTunPath({ clientToServer: link, serverToClient: link, seed, client: 'host' });
  let server: ChildProcess | undefined;
  const sockets = new Set<net.Socket>();
  const forward = net.createServer((browser) => {
    const upstream = net.connect(ready.port, path.serverAddress);
    sockets.add(browser).add(upstream);
    const end = () => {
      browser.destroy();
      upstream.destroy();
      sockets.delete(browser);
      sockets.delete(upstream);
    };
    browser.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    browser.pipe(upstream).pipe(browser);
  });
  let ready: ServerReady;
  try {
    // The forward listens first: its origin is the page's, which the server must allow for WebTransport.
    await new Promise<void>((resolve, reject) => forward.once('error', reject).listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${(forward.address() as net.AddressInfo).port}`;
    server = raisePriority(path.spawn('server', process.execPath, tsArgs('server-process.ts', JSON.stringify({ host: path.serverAddress, lab: { allowedOrigins: [origin], ...(labStaticDir ? { staticDir: labStaticDir } : {}) } })), { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] }));
    ready = await new LineReader(server).json<ServerReady>(30_000, 'the namespaced server to listen');
  } catch (error) {
    server?.kill('SIGKILL');
    forward.close();
    await path.destroy();
    throw error;
  }
  const port = (forward.address() as net.AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    profile,
    label,
    labUrl: `http://127.0.0.1:${port}/?network=${encodeURIComponent(label)}`,
    serverUrl: ready.url,
    note: `a second server in namespace ${path.serverNamespace} at ${path.serverAddress}, behind the TUN forwarder: ${label} (${link.delayMs} ms each way${link.lossPercent ? `, ${link.lossPercent} % loss each way` : ''}${link.rateMbit ? `, ${link.rateMbit} Mbit/s each way` : ''}, seed ${seed}). The page, WebSocket and long-polling reach it through a TCP port forward on 127.0.0.1:${port} whose server leg crosses the path; WebTransport goes to ${path.serverAddress} directly.`,
    stats: () => path.stats(),
    close: () =>
      (closing ??= (async () => {
        forward.close();
        for (const socket of sockets) socket.destroy();
        if (server) await stopChild(server);
        await path.destroy();
      })()),
  };
}

/** What `GET /lab/experiments/network` answers. */
export interface NetworkStatus {
  /** Whether this server can build the path; if not, why (the pages say so and offer the recorded result). */
  available: boolean;
  reason: string | null;
  profiles: { id: NetworkProfile; label: string }[];
  active: { profile: NetworkProfile; label: string; labUrl: string; note: string } | null;
}

/** At most one live network at a time, replaced on request, stopped `lifetimeMs` after it started or on close. */
export function liveNetworks(lifetimeMs = 15 * 60_000, labStaticDir?: string): { status(): Promise<NetworkStatus>; start(profile: NetworkProfile): Promise<NetworkStatus>; stop(): Promise<NetworkStatus>; close(): Promise<void> } {
  let active: LiveNetwork | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let pending: Promise<unknown> = Promise.resolve();
  const profiles = (Object.keys(NETWORK_PROFILES) as NetworkProfile[]).map((id) => ({ id, label: NETWORK_PROFILES[id].label }));
  const status = async (): Promise<NetworkStatus> => {
    const { canForward } = await import('../impairment/tun-path.ts');
    const capability = await canForward();
    return {
      available: capability.ok,
      reason: capability.ok ? null : capability.reason,
      profiles,
      active: active ? { profile: active.profile, label: active.label, labUrl: active.labUrl, note: active.note } : null,
    };
  };
  const stopActive = async () => {
    clearTimeout(timer);
    const closing = active;
    active = undefined;
    await closing?.close();
  };
  // One change at a time: a second request waits for the first.
  const serial = <T>(work: () => Promise<T>): Promise<T> => {
    const next = pending.then(work);
    pending = next.catch(() => undefined);
    return next;
  };
  return {
    status,
    start: (profile) =>
      serial(async () => {
        await stopActive();
        active = await startLiveNetwork(profile, 1, labStaticDir);
        timer = setTimeout(() => void serial(stopActive), lifetimeMs);
        timer.unref();
        return status();
      }),
    stop: () => serial(async () => (await stopActive(), status())),
    close: () => serial(stopActive),
  };
}
