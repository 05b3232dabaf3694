/**
 * The Transport contract: what every transport (websocket, long-polling, polling, webtransport, webrtc)
 * offers, on the client and on the server, so the router and the client core never know which
 * wire they run on. Semantics are in PRODUCT.md §2; this file is the single source of truth for
 * names. Runs in Node and in the browser (no Node imports here: the HTTP server side of the
 * contract is in http-transport-server.ts).
 */
import type { PreparedMessage } from './prepared-message.ts';

/** Registry names of the transports. */
export type TransportName = 'websocket' | 'long-polling' | 'polling' | 'webtransport' | 'webrtc';

/** Lifecycle. Changed in one place per implementation; only moves forward. */
export type ConnectionState = 'connecting' | 'open' | 'closing' | 'closed';

/**
 * What a message needs from the wire:
 * - `reliable`: ordered and reliable, one ordered lane per connection (the default);
 * - `channel:<name>`: reliable and ordered within the named channel, independent of other channels
 *   (on WebTransport: one QUIC stream per channel, so a loss on one never stalls another);
 * - `unreliable`: may be lost, never retransmitted, never waits (WebTransport datagrams).
 */
export type Lane = 'reliable' | 'unreliable' | `channel:${string}`;

/**
 * What a transport can do. A sender asking for a lane the transport cannot honour gets a
 * LaneUnsupportedError, unless the connection was opened with `laneFallback: 'reliable'`: then the
 * message goes on the reliable lane and `stats.laneDowngrades` counts it (documented, never silent).
 */
export interface TransportCapabilities {
  /** Datagram-like delivery that may lose messages but never waits for retransmission. */
  readonly unreliable: boolean;
  /** Named channels that do not block each other on loss. */
  readonly independentChannels: boolean;
  /** Server can send without a pending client request (false for polling). */
  readonly serverPush: boolean;
  /** Binary payloads travel as bytes, not base64. */
  readonly binary: boolean;
  /** Largest message in bytes this connection accepts on the reliable lane. */
  readonly maxMessageSize: number;
  /** Largest message on the unreliable lane (0 when there is none). */
  readonly maxUnreliableSize: number;
}

/** A message as the transport carries it: its boundaries are kept; text stays text. */
export type Message = string | Uint8Array;

/** How a connection ended, as seen by this side. */
export interface CloseInfo {
  /** WebSocket-style close code (1000 normal, 1001 going away, 1006 abnormal, 1008 policy, 1009 too big, 4000+ application). */
  readonly code: number;
  readonly reason: string;
  /** True when the close handshake completed (the peer's code and reason are known). */
  readonly wasClean: boolean;
}

/** Standard close codes used across transports (WebSocket numbering, RFC 6455 §7.4). */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  protocolError: 1002,
  unsupportedData: 1003,
  abnormal: 1006,
  invalidPayload: 1007,
  policyViolation: 1008,
  messageTooBig: 1009,
  internalError: 1011,
  /** The slow-consumer policy `disconnect` closed this connection. */
  slowConsumer: 4008,
  /** No traffic (not even heartbeats) within the liveness timeout. */
  livenessTimeout: 4009,
  /** A cluster node fell behind a room's stream (messages trimmed unread): resume to learn what was lost. */
  fellBehind: 4011,
} as const;

/** What to do when a connection's outbound queue reaches its hard limit. */
export type SlowConsumerPolicy = 'wait' | 'drop-oldest' | 'drop-newest' | 'disconnect';

/** Outbound queue limits (per connection). */
export interface BackpressureOptions {
  /** Above this many queued bytes `writable` turns false and `drained()` waits. Default 1 MiB. */
  highWaterMark?: number;
  /**
   * Hard limit on queued bytes. Default 16 MiB. Past it the policy applies:
   * `wait` refuses the message (send returns 'refused', the producer must await drained()),
   * `drop-oldest` / `drop-newest` drop and count, `disconnect` closes with CloseCode.slowConsumer.
   * `Infinity` gives an explicitly unbounded queue (for experiments only).
   */
  maxQueuedBytes?: number;
  /** Default 'disconnect' on the server (protects it), 'wait' on clients. */
  policy?: SlowConsumerPolicy;
}

/** Result of one send. */
export type SendOutcome = 'queued' | 'dropped' | 'refused' | 'disconnected';

/** Counters every connection keeps. `wire*` are null where the stack hides framing. */
export interface TransportStats {
  messagesIn: number;
  messagesOut: number;
  /** Payload bytes (UTF-8 for text). */
  bytesIn: number;
  bytesOut: number;
  /** Bytes on the wire including framing and HTTP headers, where measurable. */
  wireBytesIn: number | null;
  wireBytesOut: number | null;
  /** Latest smoothed RTT estimate in ms (transport-level or from heartbeats), null until known. */
  rttMs: number | null;
  /** Messages dropped by the slow-consumer policy or a full datagram queue. */
  dropped: number;
  /** Messages sent on the reliable lane because their lane was not available (laneFallback). */
  laneDowngrades: number;
  /** Packets lost / retransmitted where the stack reports them (QUIC); null otherwise. */
  packetsLost: number | null;
  packetsRetransmitted: number | null;
}

/** Events of a connection. Listeners run synchronously in arrival order. */
export interface ConnectionEvents {
  open: () => void;
  message: (message: Message, lane: Lane) => void;
  /** Queued bytes fell below the high-water mark after having been above it. */
  drain: () => void;
  close: (info: CloseInfo) => void;
  /** A non-fatal protocol problem on this connection (fatal ones close it with a reason). */
  error: (error: Error) => void;
}

/**
 * One end of a message connection: the server's view of a client, or the client's view of the
 * server. Both sides of every transport implement this.
 */
export interface Connection {
  readonly transport: TransportName;
  readonly state: ConnectionState;
  readonly capabilities: TransportCapabilities;
  /** Resolves when open; rejects if the connection closes before opening. */
  readonly opened: Promise<void>;
  /** Resolves once, when closed (never rejects). */
  readonly closed: Promise<CloseInfo>;
  /**
   * Queues one message. Throws synchronously on misuse (closed connection, unsupported lane
   * without fallback, message over maxMessageSize); the outcome says what the queue did. A
   * PreparedMessage (the router's fan-out) is shared, never copied: every recipient reads its
   * size, bytes and framing from the one object.
   */
  send(message: Message | PreparedMessage, lane?: Lane): SendOutcome;
  /** Bytes and messages queued in this connection and not yet handed to the OS / QUIC stack. */
  readonly queued: { readonly bytes: number; readonly messages: number };
  /** False while queued bytes are at or above the high-water mark. */
  readonly writable: boolean;
  /** Resolves when queued bytes are below the high-water mark (at once if already). Rejects if closed. */
  drained(): Promise<void>;
  /**
   * Stops taking messages from the peer until `resumeReading()`: the transport's own flow control
   * (TCP, an unanswered POST) then slows the peer down. Transports that cannot do so ignore it.
   */
  pauseReading(): void;
  resumeReading(): void;
  /** Starts the close handshake; idempotent. */
  close(code?: number, reason?: string): void;
  stats(): TransportStats;
  on<E extends keyof ConnectionEvents>(event: E, listener: ConnectionEvents[E]): () => void;
}

/** Options every client transport accepts. */
export interface ClientTransportOptions {
  /** Server base URL, e.g. `http://127.0.0.1:8080` (https for TLS). WebTransport derives its own URL. */
  url: string;
  backpressure?: BackpressureOptions;
  /** What to do with a lane the transport cannot honour. Default 'error'. */
  laneFallback?: 'error' | 'reliable';
  /** Milliseconds to wait for the connection to open. Default 10 000. */
  connectTimeoutMs?: number;
}

/** Opens a client connection of one transport. One per transport, in its registry. */
export type ClientTransportFactory = (options: ClientTransportOptions) => Connection;

/** Server-side transport: accepts connections and hands them over as uniform Connections. */
export interface TransportServer {
  readonly name: TransportName;
  /**
   * Registers the handler for new connections, called once the connection is open — except
   * WebTransport's, handed over at session start, still 'connecting' until the client's reliable
   * stream arrives (see webtransport/server.ts).
   */
  onConnection(handler: (connection: Connection) => void): void;
  /** Number of live connections of this transport. */
  readonly connectionCount: number;
  /** Closes every connection (code 1001) and stops accepting. */
  close(): Promise<void>;
}

/** Options every server transport accepts. */
export interface ServerTransportOptions {
  /** Largest inbound message (bytes). Larger ones close the connection with 1009. Default 2 MiB. */
  maxMessageSize?: number;
  backpressure?: BackpressureOptions;
  laneFallback?: 'error' | 'reliable';
}
