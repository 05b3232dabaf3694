/**
 * What every page shares: the server's `/info`, the transport variants the lab compares (a
 * transport plus the lane its messages take), clients on them, and the `/lab` API
 * (server/lab-api.ts) for server-side counters.
 */
import { browserConnectors, createClient, type Lane, type SwitchyardClient, type TransportName, type TransportStats } from '../../transports/browser-client.ts';

export interface ServerInfo {
  version: string;
  transports: TransportName[];
  urls: { http: string; https: string | null; webtransport: string | null };
  certificateSha256: string | null;
}

let info: Promise<ServerInfo> | undefined;

export function serverInfo(): Promise<ServerInfo> {
  info ??= fetch('/info').then(async (response) => {
    if (!response.ok) throw new Error(`GET /info answered ${response.status}`);
    return (await response.json()) as ServerInfo;
  });
  return info;
}

/**
 * How a variant carries independent flows: all on one ordered lane, each on its own channel, or
 * unreliably (nothing waits, anything may be lost).
 */
export type LaneKind = 'one-lane' | 'channels' | 'unreliable';

/** A transport and the lane a run's messages take on it. */
export interface Variant {
  key: string;
  label: string;
  transport: TransportName;
  kind: LaneKind;
  /** Lane of message `seq` of flow `flow`. */
  lane: (seq: number, flow: number) => Lane;
  /** One line on what the variant shows. */
  about: string;
}

const oneLane = (): Lane => 'reliable';
const channelPerFlow = (_seq: number, flow: number): Lane => `channel:c${flow % 4}`;
const unreliable = (): Lane => 'unreliable';

export const VARIANTS: readonly Variant[] = [
  { key: 'websocket', label: 'WebSocket', transport: 'websocket', kind: 'one-lane', lane: oneLane, about: 'RFC 6455 over one TCP connection; server push; one ordered lane' },
  { key: 'long-polling', label: 'Long-polling', transport: 'long-polling', kind: 'one-lane', lane: oneLane, about: 'a held GET returns batches; POST carries upstream' },
  { key: 'polling', label: 'Polling', transport: 'polling', kind: 'one-lane', lane: oneLane, about: 'GET every 100 ms: the teaching baseline' },
  { key: 'wt-reliable', label: 'WebTransport · reliable', transport: 'webtransport', kind: 'one-lane', lane: oneLane, about: 'HTTP/3 over QUIC, one bidirectional stream' },
  { key: 'wt-channels', label: 'WebTransport · channels', transport: 'webtransport', kind: 'channels', lane: channelPerFlow, about: 'one QUIC stream per channel: flows never wait for each other' },
  { key: 'wt-unreliable', label: 'WebTransport · unreliable', transport: 'webtransport', kind: 'unreliable', lane: unreliable, about: 'QUIC datagrams: never retransmitted, never wait, may be lost' },
  { key: 'rtc-reliable', label: 'WebRTC · reliable', transport: 'webrtc', kind: 'one-lane', lane: oneLane, about: 'one ordered, reliable SCTP data channel (over DTLS over UDP), signalled by one HTTP offer/answer' },
  { key: 'rtc-channels', label: 'WebRTC · channels', transport: 'webrtc', kind: 'channels', lane: channelPerFlow, about: 'one ordered, reliable data channel per channel: SCTP streams do not wait for each other' },
  { key: 'rtc-unreliable', label: 'WebRTC · unreliable', transport: 'webrtc', kind: 'unreliable', lane: unreliable, about: 'an unordered data channel with maxRetransmits 0: never retransmitted, may be lost' },
];

export function variant(key: string): Variant {
  const found = VARIANTS.find((v) => v.key === key);
  if (!found) throw new Error(`unknown variant ${key}`);
  return found;
}

/** Why a variant cannot run here (the browser lacks the API or the server does not offer it), or null. */
export function unavailable(v: Variant, server: ServerInfo): string | null {
  if (!browserConnectors[v.transport]) return v.transport === 'webtransport' ? 'this browser has no WebTransport API' : v.transport === 'webrtc' ? 'this browser has no RTCPeerConnection' : `this browser cannot open ${v.transport}`;
  if (!server.transports.includes(v.transport)) return `the server does not offer ${v.transport}`;
  return null;
}

/** A connected client on one transport (no fallback, no reconnect: a lab run measures one transport). */
export async function connectClient(transport: TransportName, options: { url?: string; connectTimeoutMs?: number } = {}): Promise<SwitchyardClient> {
  const client = createClient({ transports: transport, reconnect: false, connectTimeoutMs: options.connectTimeoutMs ?? 5_000, ...(options.url ? { url: options.url } : {}) });
  await client.connect();
  return client;
}

/** A client's connection as the server sees it (`GET /lab/clients/:id`). */
export interface ServerConnectionView {
  transport: TransportName;
  state: string;
  queued: { bytes: number; messages: number };
  writable: boolean;
  stats: TransportStats;
  at: number;
}

export async function serverView(clientId: string): Promise<ServerConnectionView | null> {
  const response = await fetch(`/lab/clients/${encodeURIComponent(clientId)}`, { cache: 'no-store' });
  return response.ok ? ((await response.json()) as ServerConnectionView) : null;
}

export async function labJson<T>(path: string, body?: unknown, method = body === undefined ? 'GET' : 'POST'): Promise<T> {
  const response = await fetch(path, { method, cache: 'no-store', ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }) });
  const value = (await response.json()) as T & { error?: { message: string } };
  if (!response.ok) throw new Error(value.error?.message ?? `${method} ${path} answered ${response.status}`);
  return value;
}

/**
 * State the pages publish for the browser test and the console (main.ts puts it at `window.__lab`).
 * Pages set their own entries (e.g. `compare: { state, results }`).
 */
export const labState: Record<string, unknown> = {};
