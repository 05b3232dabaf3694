/**
 * The router's engine: where what must be shared between server processes lives, and how a
 * message reaches the recipients of every process. The router keeps its own clients' connections
 * and memberships; the engine carries each published message to every node (this one included),
 * which delivers it to its local recipients, encoding it once there. It also keeps each room's and
 * topic's bounded history (for recovery after a reconnect), the sessions a client can resume on any
 * node, and the de-duplication of retried ids.
 *
 * Two implementations: `MemoryEngine` (one process, synchronous; the default) and `RedisEngine`
 * (several processes sharing one Redis). Calls that may wait on a store take a callback, so the
 * in-memory engine answers in the same turn, without a promise per message.
 */
import type { ServerEvent } from '../transports/codec/envelope.ts';
import type { Lane } from '../transports/transport.ts';

/** A delivery as the router hands it to recipients (no offset yet: the engine assigns it). */
export type Delivery = Extract<ServerEvent, { t: 'message' }>;
/** A recipient receipt on its way to the original sender. */
export type ReceiptEvent = { t: 'ack'; id: string; from: string };

/**
 * Where a message goes. Rooms, topics and `all` never deliver back to the sender (`event.from`);
 * `client` (a send) and `ids` (an id-list multicast) do when they name it.
 */
export type Target = { room: string } | { topic: string } | { all: true } | { client: string } | { ids: readonly string[] };

/** A room's or topic's history key. */
export type Channel = `room:${string}` | `topic:${string}`;

export interface Publication {
  target: Target;
  event: Delivery | ReceiptEvent;
  lane: Lane;
  /** Bytes of the command that carried it: what its history entry is counted as. */
  size: number;
  /** Drop it as a duplicate when this client already published this message id (a retry). */
  dedup?: { clientId: string; id: string };
}

export type PublishOutcome =
  | { ok: true }
  | { ok: false; code: 'ERR_DUPLICATE' | 'ERR_UNKNOWN_CLIENT' | 'ERR_CLUSTER_UNAVAILABLE'; message: string };

/** One message of a room's or topic's history. */
export interface HistoryEntry {
  offset: string;
  event: Delivery;
  lane: Lane;
}

/** The messages after an offset; `complete` false when some of them are gone (trimmed, aged out, another epoch). */
export interface HistoryAnswer {
  entries: HistoryEntry[];
  complete: boolean;
}

/** A session as any node can resume it. */
export interface SessionRecord {
  secret: string;
  userId: string | undefined;
  rooms: string[];
  topics: string[];
}

/** What the router offers its engine. */
export interface EngineHost {
  /** Delivers to this node's recipients of `target`; `offset` for a room's or topic's message. */
  deliver(target: Target, event: Delivery | ReceiptEvent, lane: Lane, offset: string | undefined): void;
  /** Whether a client of this node has this id (the in-memory engine's directory). */
  hasClient(clientId: string): boolean;
  /** Another node resumed this client: drop it here quietly (its session lives on there). */
  release(clientId: string): void;
  /** A client joined or left a room, on any node (a dead node's clients leave once it is found dead). */
  presence(room: string, clientId: string, change: 'join' | 'leave'): void;
  /** This node's members of a room. */
  localMembers(room: string): string[];
  /**
   * This node fell so far behind a room's or topic's stream that messages were trimmed before it
   * read them: its members there must not carry on as if nothing was missed (they resume, and are
   * told what could not be recovered).
   */
  fellBehind(channel: Channel): void;
  /** Something the operator should know (the store went away, came back). */
  log(message: string): void;
}

export interface EngineStatus {
  engine: 'memory' | 'redis';
  /** This process's node id. */
  node: string;
  /** Whether the shared store is reachable (always true in memory). */
  connected: boolean;
}

/**
 * What a reconnecting client can recover. Not what live recipients get: every node with a member
 * receives every message however many came at once (the Redis engine keeps a stream's entries past
 * these bounds until every live node reading it has read them).
 */
export interface HistoryOptions {
  /** Messages kept per room and per topic. Default 1000. */
  maxLength?: number;
  /** Messages older than this (ms) are dropped. Default 300 000 (5 minutes). */
  maxAgeMs?: number;
  /** Bytes kept per room and per topic (in-memory engine; Redis is bounded by its own maxmemory). Default 8 MiB. */
  maxBytes?: number;
}

export const HISTORY_DEFAULTS = { maxLength: 1000, maxAgeMs: 300_000, maxBytes: 8 * 1024 * 1024 } as const;

export interface RouterEngine {
  start(host: EngineHost): void;
  status(): EngineStatus;
  /** Routes one message to every node; `done` once it is stored (a receipt may then be sent). */
  publish(publication: Publication, done: (outcome: PublishOutcome) => void): void;
  /** This node has a first member in a room or topic: its messages must reach this node from now on. */
  watch(channel: Channel, done: (error?: string) => void): void;
  /** This node's last member of a room or topic left. */
  unwatch(channel: Channel): void;
  /** The offset a watched channel's messages come here after (a new member's starting point), if known. */
  position(channel: Channel): string | undefined;
  /** The messages of `channel` after `offset`, oldest first. */
  history(channel: Channel, offset: string, done: (answer: HistoryAnswer) => void): void;
  /** A new client session on this node. */
  register(clientId: string, session: SessionRecord, done: () => void): void;
  /**
   * Resumes a session this node does not hold: undefined when unknown or the secret is wrong. The
   * node that held it is told to release it; the session now belongs here, with `newSecret`.
   */
  claim(clientId: string, secret: string, newSecret: string, done: (session: SessionRecord | undefined) => void): void;
  /** A session's new secret (a resume on the node that holds it). */
  renew(clientId: string, secret: string): void;
  /** A membership change of a client of this node (rooms: presence, announced to every node). */
  membership(clientId: string, channel: Channel, member: boolean): void;
  /** Who is in a room, on every node. */
  presence(room: string, done: (clientIds: string[]) => void): void;
  /** A client's connection closed: its session may be resumed within `graceMs`. */
  suspend(clientId: string, graceMs: number): void;
  /** A client's connection is back on this node. */
  reattach(clientId: string): void;
  /** A session ended here (goodbye or grace over). */
  forget(clientId: string): void;
  close(): Promise<void>;
}

/** Orders two offsets (`<number>-<number>`, as Redis stream ids are): negative when `a` is earlier. */
export function compareOffsets(a: string, b: string): number {
  const [aHigh, aLow] = splitOffset(a);
  const [bHigh, bLow] = splitOffset(b);
  if (aHigh !== bHigh) return aHigh < bHigh ? -1 : 1;
  return aLow === bLow ? 0 : aLow < bLow ? -1 : 1;
}

function splitOffset(offset: string): [bigint, bigint] {
  const dash = offset.indexOf('-');
  try {
    return dash < 0 ? [BigInt(offset), 0n] : [BigInt(offset.slice(0, dash)), BigInt(offset.slice(dash + 1))];
  } catch {
    return [-1n, 0n];
  }
}

/** Whether `text` is an offset this protocol can hold (digits, a dash, digits; bounded). */
export function isOffset(text: string): boolean {
  return text.length <= 48 && /^\d{1,20}-\d{1,20}$/.test(text);
}

/** The history key of a target, when it has a history. */
export function channelOf(target: Target): Channel | undefined {
  if ('room' in target) return `room:${target.room}`;
  if ('topic' in target) return `topic:${target.topic}`;
  return undefined;
}
