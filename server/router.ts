/**
 * The message router: client ids, rooms, topics; broadcast, unicast, multicast, publish/subscribe;
 * server receipts and recipient receipts; de-duplication of retried ids; heartbeats with a liveness
 * timeout; session resume after a reconnect. It sees only `Connection`s, so clients on every
 * transport talk to each other. A fan-out message is encoded once into one PreparedMessage, and
 * that same object goes to every recipient's queue: each transport reads its size and bytes from it
 * and frames it once for all (transports/prepared-message.ts).
 *
 * Deliveries never go back to their sender, except a `send` or an id-list multicast that names the
 * sender itself (so a client can measure its own round trip through the router).
 *
 * What a stranger can make it do is bounded: names, ids and memberships have limits (typed
 * errors); malformed frames are answered once per turn, not once each, and too many of them close
 * the connection; each connection has a token bucket of commands per second; commands that arrive
 * behind a hello still being decided wait for it. An acknowledgement means the command was routed
 * by the engine (in memory: routed; on Redis: stored there): a delivery too large for the
 * recipients' transports is refused, never acknowledged and then dropped.
 *
 * Where messages go between processes, the rooms' and topics' history and the sessions a client may
 * resume anywhere are the engine's (engine.ts); the router keeps this node's clients and delivers
 * what the engine hands it to them. A client resuming with the offsets of the last messages it got
 * receives what came after them (from the history) before any live message.
 */
import { messageSize } from '../transports/base-connection.ts';
import { decodeEnvelope, encodeEnvelope, EnvelopeError, type ClientCommand, type DeliveryKind, type Envelope, type Payload, type ServerEvent } from '../transports/codec/envelope.ts';
import { utf8Length } from '../transports/codec/utf8.ts';
import { Emitter } from '../transports/emitter.ts';
import { PreparedMessage } from '../transports/prepared-message.ts';
import { randomId } from '../transports/random-id.ts';
import { DEFAULT_DEDUP_WINDOW, RecentIds } from '../transports/recent-ids.ts';
import { CloseCode, type CloseInfo, type Connection, type Lane, type Message } from '../transports/transport.ts';
import { compareOffsets, isOffset, type Channel, type Delivery, type EngineHost, type HistoryAnswer, type HistoryOptions, type Publication, type ReceiptEvent, type RouterEngine, type SessionRecord, type Target } from './engine.ts';
import { MemoryEngine } from './memory-engine.ts';

export interface HelloInfo {
  token: string | undefined;
  connection: Connection;
}

/** What a client asks to do, for permission checks (every command that reaches anyone else). */
export type Action =
  | { kind: 'join'; room: string }
  | { kind: 'subscribe'; topic: string }
  | { kind: 'publish'; topic: string }
  | { kind: 'multicast-room'; room: string }
  | { kind: 'multicast-ids'; ids: readonly string[] }
  | { kind: 'send'; to: string }
  | { kind: 'broadcast' };

export interface RouterOptions {
  /** Server pings every client this often (ms). Default 15 000. */
  heartbeatMs?: number;
  /** A client silent for this long (ms) is closed with 4009. Default 2.5 × heartbeatMs. */
  livenessTimeoutMs?: number;
  /** A connection must say hello within this time (ms). Default 10 000. */
  helloTimeoutMs?: number;
  /** A dropped client's id, rooms and topics are kept this long (ms) for a resume. Default 30 000. */
  resumeGraceMs?: number;
  /**
   * How many recent message ids per client are remembered to drop retried duplicates, and how many
   * recipient receipts a client may owe at once. Default 4096.
   */
  dedupWindow?: number;
  /** Longest room or topic name, and longest client id named in a command (UTF-8 bytes); longer: ERR_NAME_TOO_LONG. Default 256. */
  maxNameLength?: number;
  /** Longest message id (UTF-8 bytes); longer: ERR_ID_TOO_LONG. Default 64. */
  maxIdLength?: number;
  /** Rooms plus topics one client may be in; more: ERR_TOO_MANY_MEMBERSHIPS. Default 1024. */
  maxMemberships?: number;
  /** Most client ids in one id-list multicast; more: ERR_TOO_MANY_IDS. Default 1024. */
  maxMulticastIds?: number;
  /** Malformed frames tolerated per connection; one more closes it with 1002. Default 100. */
  maxProtocolErrors?: number;
  /**
   * Commands per second per connection (token bucket, `burst` deep). Past it the connection is not
   * read until the bucket refills a little (TCP then slows the sender); one that still sends
   * `burst` commands more gets ERR_RATE_LIMITED for each. Default 10 000/s, burst 20 000.
   */
  rateLimit?: { perSecond: number; burst: number };
  /**
   * A recipient above its high-water mark slows the senders that fill it: the router stops reading
   * from them until it drains. One whose queue does not shrink at all for this long (ms) is stalled:
   * it holds nobody back and is left to its slow-consumer policy until it drains again. Default 100.
   */
  stalledReaderMs?: number;
  /** Slow senders down for recipients over their high-water mark (above). Default true; false leaves every reader to its policy alone. */
  pacePublishers?: boolean;
  /** Largest accepted connection count; more are closed with 1013. Default 100 000. */
  maxConnections?: number;
  /** Largest message the transports accept, announced in `welcome`. */
  maxMessageSize?: number;
  /** Auth hook at hello: false rejects (close 1008); a string becomes the client's user id. */
  authenticate?: (hello: HelloInfo) => boolean | string | Promise<boolean | string>;
  /** Permission hook, asked about every command that reaches others (see Action); false answers ERR_FORBIDDEN. */
  authorize?: (client: RoutedClient, action: Action) => boolean;
  /** Routing hook, called before every command is routed; 'drop' ignores it (no receipt). */
  beforeRoute?: (command: Exclude<ClientCommand, { t: 'hello' }>, client: RoutedClient) => 'drop' | undefined;
  /** Where messages, history and sessions live. Default: a MemoryEngine (this process alone) with `history`. */
  engine?: RouterEngine;
  /** Each room's and topic's history, for recovery after a reconnect (in-memory engine). */
  history?: HistoryOptions;
  /** Operator messages (the engine's store went away, came back). Default: console.warn. */
  log?: (message: string) => void;
}

/** What the router tells the application (`server.on(...)`). */
export interface RouterEvents {
  /** A client said hello and was accepted (`resumed`: it came back within the resume grace). */
  connect: (client: RoutedClient, resumed: boolean) => void;
  /** A client's session ended: a goodbye, or no resume within the grace period. */
  disconnect: (client: RoutedClient) => void;
  /** A client's connection closed (it may still resume). */
  'connection-closed': (client: RoutedClient, info: CloseInfo) => void;
  join: (client: RoutedClient, room: string) => void;
  leave: (client: RoutedClient, room: string) => void;
  subscribe: (client: RoutedClient, topic: string) => void;
  unsubscribe: (client: RoutedClient, topic: string) => void;
  /**
   * Someone joined or left a room, on any node of a cluster (here too): `join` and `leave` above
   * are this node's clients only. A dead node's clients leave once it is found dead.
   */
  presence: (room: string, clientId: string, change: 'join' | 'leave') => void;
}

/** One logical client: survives a reconnect (same id) within the resume grace period. */
export class RoutedClient {
  connection: Connection | null;
  userId: string | undefined;
  readonly rooms = new Set<string>();
  readonly topics = new Set<string>();
  /** Recent message ids, for de-duplication. */
  readonly seenIds: RecentIds;
  /** Receipts this client may send: `senderId \0 messageId` of deliveries that asked for one. */
  readonly owedReceipts: RecentIds;
  lastSeen = Date.now();
  rttMs: number | null = null;
  graceTimer: ReturnType<typeof setTimeout> | undefined;
  /** Commands handed to the engine and not answered yet. */
  inflight = 0;
  /** While its missed messages are fetched at a resume: live deliveries wait here. */
  recovering: { frame: Message | PreparedMessage; lane: Lane; channel: Channel | undefined; offset: string | undefined }[] | undefined;
  /** After a recovery: per channel, the offset it has everything up to (a node that reads behind must not repeat those). */
  floors: Map<Channel, string> | undefined;

  constructor(
    readonly id: string,
    /** The resume secret; a new one is issued at every resume, so a secret works once. */
    public secret: string,
    connection: Connection,
    dedupWindow: number,
  ) {
    this.connection = connection;
    this.seenIds = new RecentIds(dedupWindow);
    this.owedReceipts = new RecentIds(dedupWindow);
  }
}

export interface RouterStats {
  connections: number;
  clients: number;
  rooms: number;
  topics: number;
  routed: number;
  deliveries: number;
  duplicates: number;
  errors: number;
  /** Deliveries a recipient's connection refused (e.g. a message over its datagram size). */
  undeliverable: number;
  /** Deliveries lost because a recipient's queue was full under the 'wait' policy. */
  refused: number;
}

const DEFAULTS = {
  heartbeatMs: 15_000,
  helloTimeoutMs: 10_000,
  resumeGraceMs: 30_000,
  dedupWindow: DEFAULT_DEDUP_WINDOW,
  maxConnections: 100_000,
  maxMessageSize: 2 * 1024 * 1024,
  maxNameLength: 256,
  maxIdLength: 64,
  maxMemberships: 1024,
  maxMulticastIds: 1024,
  maxProtocolErrors: 100,
  rateLimit: { perSecond: 10_000, burst: 20_000 },
  stalledReaderMs: 100,
  pacePublishers: true,
};

/** Commands held while their connection's hello is being decided; more are refused. */
const MAX_EARLY_COMMANDS = 64;
/** Commands one client may have waiting on the engine; past it the connection is not read until half are answered. */
const MAX_INFLIGHT = 1024;
/** Live deliveries held for a client while its missed messages are fetched; past it the recovery is incomplete. */
const MAX_HELD_WHILE_RECOVERING = 65_536;
/** A delivery is at most this much larger than the command that carried it, besides its sender's id and user id (field names, kind, offset). */
const DELIVERY_OVERHEAD = 160;
/** Envelope types only the server sends. */
const SERVER_ONLY = new Set<string>(['welcome', 'message', 'error']);

type RouteError = { code: string; message: string };
type Done = (error?: RouteError) => void;

/** What the router keeps per connection. */
interface Peer {
  protocolErrors: number;
  /** The error to send at the end of this turn, and how many more it stands for. */
  pendingError: { code: string; message: string; ref: string | undefined; more: number } | undefined;
  tokens: number;
  refilledAt: number;
  /** Why reading from this connection is paused (each reason resumes on its own). */
  pausedFor: Set<unknown>;
}

export class Router {
  readonly clients = new Map<string, RoutedClient>();
  readonly rooms = new Map<string, Set<RoutedClient>>();
  readonly topics = new Map<string, Set<RoutedClient>>();
  readonly #options: RouterOptions & typeof DEFAULTS & { livenessTimeoutMs: number };
  readonly #connections = new Map<Connection, Peer>();
  /** Recipients over their high-water mark whose queue stopped shrinking for stalledReaderMs: they hold nobody back. */
  readonly #stalled = new WeakSet<Connection>();
  /** Recipients over their high-water mark, each with the senders paused until it drains. */
  readonly #awaitingDrain = new Map<Connection, Set<Connection>>();
  readonly #heartbeat: ReturnType<typeof setInterval>;
  readonly #events = new Emitter<RouterEvents>();
  readonly #engine: RouterEngine;
  #counters = { routed: 0, deliveries: 0, duplicates: 0, errors: 0, undeliverable: 0, refused: 0 };

  constructor(options: RouterOptions = {}) {
    const heartbeatMs = options.heartbeatMs ?? DEFAULTS.heartbeatMs;
    // Options given as undefined keep their defaults.
    const given = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as RouterOptions;
    this.#options = { ...DEFAULTS, ...given, livenessTimeoutMs: options.livenessTimeoutMs ?? heartbeatMs * 2.5 };
    this.#heartbeat = setInterval(() => this.#beat(), heartbeatMs);
    this.#heartbeat.unref?.();
    this.#engine = options.engine ?? new MemoryEngine(options.history);
    // eslint-disable-next-line no-console -- the operator's log when the application gives none
    const log = options.log ?? ((message: string) => console.warn(`switchyard: ${message}`));
    const host: EngineHost = {
      deliver: (target, event, lane, offset) => this.#deliver(target, event, lane, offset),
      hasClient: (clientId) => this.clients.has(clientId),
      release: (clientId) => this.#release(clientId),
      presence: (room, clientId, change) => this.#events.emit('presence', room, clientId, change),
      localMembers: (room) => [...(this.rooms.get(room) ?? [])].map((client) => client.id),
      fellBehind: (channel) => {
        const members = channel.startsWith('room:') ? this.rooms.get(channel.slice(5)) : this.topics.get(channel.slice(6));
        for (const member of members ?? []) member.connection?.close(CloseCode.fellBehind, 'this node fell behind the stream: resume to learn what was lost');
      },
      log,
    };
    this.#engine.start(host);
  }

  /** The engine's state: which one, this node's id, whether its store is reachable. */
  get engine(): RouterEngine {
    return this.#engine;
  }

  stats(): RouterStats {
    return { connections: this.#connections.size, clients: this.clients.size, rooms: this.rooms.size, topics: this.topics.size, ...this.#counters };
  }

  /** Takes over an open connection from any transport. */
  attach(connection: Connection): void {
    if (this.#connections.size >= this.#options.maxConnections) {
      connection.close(1013, 'server at its connection limit');
      return;
    }
    const { burst } = this.#options.rateLimit;
    this.#connections.set(connection, { protocolErrors: 0, pendingError: undefined, tokens: burst, refilledAt: Date.now(), pausedFor: new Set() });
    let client: RoutedClient | undefined;
    /** Frames that came behind a hello still being decided (same read or POST batch): they wait for it. */
    let early: [Message, Lane][] | undefined;
    const helloTimer = setTimeout(() => connection.close(CloseCode.policyViolation, 'no hello in time'), this.#options.helloTimeoutMs);
    helloTimer.unref?.();

    const onFrame = (frame: Message, lane: Lane): void => {
      if (connection.state !== 'open') return;
      if (client) return this.#receive(client, frame, lane);
      if (early) {
        if (early.length < MAX_EARLY_COMMANDS) early.push([frame, lane]);
        else this.#protocolError(connection, 'ERR_NO_HELLO', `more than ${MAX_EARLY_COMMANDS} commands before the welcome`);
        return;
      }
      const envelope = this.#decode(connection, frame);
      if (!envelope) return;
      if (envelope.t !== 'hello') {
        this.#protocolError(connection, 'ERR_NO_HELLO', `'${envelope.t}' before 'hello'`, 'id' in envelope ? envelope.id : undefined);
        return;
      }
      early = [];
      void this.#hello(connection, envelope).then((accepted) => {
        clearTimeout(helloTimer);
        client = accepted;
        const waiting = early ?? [];
        early = undefined;
        if (client) for (const [queuedFrame, queuedLane] of waiting) onFrame(queuedFrame, queuedLane);
      });
    };
    connection.on('message', onFrame);

    connection.on('close', (info) => {
      clearTimeout(helloTimer);
      this.#connections.delete(connection);
      this.#releaseWaitingOn(connection);
      if (!client || client.connection !== connection) return;
      client.connection = null;
      this.#events.emit('connection-closed', client, info);
      // A deliberate goodbye ends the session; anything else keeps it for a resume.
      if (info.code === CloseCode.normal && info.wasClean) this.#forget(client);
      else {
        const lost = client;
        lost.graceTimer = setTimeout(() => this.#forget(lost), this.#options.resumeGraceMs);
        this.#engine.suspend(lost.id, this.#options.resumeGraceMs);
        lost.graceTimer.unref?.();
      }
    });
  }

  /** Sends a server-originated message to every client (kind 'broadcast', from 'server'). */
  broadcast(data: Payload): number {
    return this.#serverSends({ all: true }, { t: 'message', from: 'server', kind: 'broadcast', data });
  }

  /** Publishes from the server to a topic's subscribers; returns the deliveries queued. */
  publish(topic: string, data: Payload): number {
    return this.#serverSends({ topic }, { t: 'message', from: 'server', kind: 'topic', to: topic, data });
  }

  /** Sends from the server to every member of a room. */
  toRoom(room: string, data: Payload): number {
    return this.#serverSends({ room }, { t: 'message', from: 'server', kind: 'room', to: room, data });
  }

  /** Sends from the server to one client; 0 when no such client is connected. */
  sendTo(clientId: string, data: Payload): number {
    return this.#serverSends({ client: clientId }, { t: 'message', from: 'server', kind: 'send', data });
  }

  /**
   * A server-originated message through the engine. Returns the deliveries queued in this turn: all
   * of them in memory; on a shared engine they happen on each node as the message arrives (0 here).
   */
  #serverSends(target: Target, event: Delivery): number {
    const before = this.#counters.deliveries;
    this.#engine.publish({ target, event, lane: 'reliable', size: 0 }, () => undefined);
    return this.#counters.deliveries - before;
  }

  /** Who is in a room, on every node of a cluster (here alone: this process's members). */
  presence(room: string): Promise<string[]> {
    return new Promise((resolve) => this.#engine.presence(room, resolve));
  }

  /** Listens to client lifecycle and membership events; returns the remover. */
  on<E extends keyof RouterEvents>(event: E, listener: RouterEvents[E]): () => void {
    return this.#events.on(event, listener);
  }

  /** Stops heartbeats and closes every connection with 1001; the engine is closed by its owner. */
  close(): void {
    clearInterval(this.#heartbeat);
    for (const connection of this.#connections.keys()) connection.close(CloseCode.goingAway, 'server shutting down');
    for (const client of this.clients.values()) clearTimeout(client.graceTimer);
    this.clients.clear();
    this.rooms.clear();
    this.topics.clear();
    this.#events.removeAll();
  }

  async #hello(connection: Connection, hello: Extract<ClientCommand, { t: 'hello' }>): Promise<RoutedClient | undefined> {
    let userId: string | undefined;
    if (this.#options.authenticate) {
      let verdict: boolean | string;
      try {
        verdict = await this.#options.authenticate({ token: hello.token, connection });
      } catch {
        verdict = false;
      }
      if (verdict === false) {
        connection.close(CloseCode.policyViolation, 'authentication failed');
        return undefined;
      }
      if (typeof verdict === 'string') userId = verdict;
    }
    if (connection.state !== 'open') return undefined;

    const offsets = this.#validOffsets(hello.offsets);
    let client: RoutedClient | undefined;
    let resumed = false;
    const previous = hello.resume ? this.clients.get(hello.resume.clientId) : undefined;
    if (previous && hello.resume && constantTimeEqual(previous.secret, hello.resume.secret)) {
      clearTimeout(previous.graceTimer);
      if (previous.connection && previous.connection !== connection) previous.connection.close(4010, 'replaced by a resumed connection');
      previous.connection = connection;
      previous.lastSeen = Date.now();
      // The secret just used may have been seen by someone else (a long-polling sid lets its holder
      // read the poll stream): a fresh one makes each secret good for one resume only.
      previous.secret = randomId(16);
      this.#engine.renew(previous.id, previous.secret);
      this.#engine.reattach(previous.id);
      client = previous;
      resumed = true;
    } else if (hello.resume && !this.clients.has(hello.resume.clientId)) {
      // Perhaps a session of another node (or of one that died): the engine knows.
      const { clientId, secret } = hello.resume;
      const fresh = randomId(16);
      const session = await new Promise<SessionRecord | undefined>((resolve) => this.#engine.claim(clientId, secret, fresh, resolve));
      if (session && !this.clients.has(clientId) && connection.state === 'open') {
        client = new RoutedClient(clientId, fresh, connection, this.#options.dedupWindow);
        client.userId = session.userId;
        this.clients.set(clientId, client);
        const joined = client;
        const join = (index: Map<string, Set<RoutedClient>>, name: string, own: Set<string>) => new Promise((resolve) => this.#join(index, name, joined, own, resolve));
        await Promise.all([...session.rooms.map((room) => join(this.rooms, room, joined.rooms)), ...session.topics.map((topic) => join(this.topics, topic, joined.topics))]);
        resumed = true;
      }
    }
    if (connection.state !== 'open' && !resumed) return undefined;
    if (!client) {
      client = new RoutedClient(randomId(12), randomId(16), connection, this.#options.dedupWindow);
      this.clients.set(client.id, client);
      client.userId = userId;
      const registered = client;
      await new Promise<void>((resolve) => this.#engine.register(registered.id, { secret: registered.secret, userId, rooms: [], topics: [] }, resolve));
    }
    client.userId = userId ?? client.userId;
    const recovery = offsets && resumed ? await this.#recover(client, offsets) : undefined;
    this.#sendTo(client, {
      t: 'welcome',
      clientId: client.id,
      secret: client.secret,
      resumed,
      heartbeatMs: this.#options.heartbeatMs,
      maxMessageSize: this.#options.maxMessageSize,
      ...(offsets ? { recovered: recovery?.complete ?? false } : {}),
    });
    if (recovery) this.#replay(client, offsets!, recovery.answers);
    this.#events.emit('connect', client, resumed);
    return client;
  }

  /** A hello's offsets, when they are well-formed and no more than a client's memberships. */
  #validOffsets(offsets: Record<string, string> | undefined): Map<Channel, string> | undefined {
    if (!offsets) return undefined;
    const entries = Object.entries(offsets);
    if (entries.length > this.#options.maxMemberships) return new Map();
    const valid = new Map<Channel, string>();
    for (const [channel, offset] of entries) {
      if ((channel.startsWith('room:') || channel.startsWith('topic:')) && isOffset(offset)) valid.set(channel as Channel, offset);
    }
    return valid;
  }

  /**
   * Fetches what a resuming client missed in each of its rooms and topics after the offsets it
   * gave; live deliveries meanwhile wait in `recovering`. Incomplete when a channel it names is not
   * one of its own, or its history no longer reaches back to the offset.
   */
  async #recover(client: RoutedClient, offsets: Map<Channel, string>): Promise<{ complete: boolean; answers: Map<Channel, HistoryAnswer> }> {
    client.recovering ??= [];
    const answers = new Map<Channel, HistoryAnswer>();
    let complete = true;
    await Promise.all(
      [...offsets].map(([channel, offset]) => {
        const member = channel.startsWith('room:') ? client.rooms.has(channel.slice(5)) : client.topics.has(channel.slice(6));
        if (!member) {
          complete = false;
          return undefined;
        }
        return new Promise<void>((resolve) =>
          this.#engine.history(channel, offset, (answer) => {
            answers.set(channel, answer);
            complete &&= answer.complete;
            resolve();
          }),
        );
      }),
    );
    if (client.recovering.length >= MAX_HELD_WHILE_RECOVERING) complete = false;
    return { complete, answers };
  }

  /**
   * Sends the recovered messages, then the live ones held meanwhile that came after them; later
   * live ones at or below what it has are dropped too (`floors`), until the node's reading passes them.
   */
  #replay(client: RoutedClient, offsets: Map<Channel, string>, answers: Map<Channel, HistoryAnswer>): void {
    const floors = new Map(offsets);
    for (const [channel, answer] of answers) {
      for (const entry of answer.entries) {
        this.#write(client.connection, encodeEnvelope({ ...entry.event, offset: entry.offset }), entry.lane);
        floors.set(channel, entry.offset);
      }
    }
    const held = client.recovering ?? [];
    client.recovering = undefined;
    client.floors = floors;
    for (const { frame, lane, channel, offset } of held) if (!belowFloor(client, channel, offset)) this.#write(client.connection, frame, lane);
  }

  /** One frame from a client that said hello. */
  #receive(client: RoutedClient, frame: Message, lane: Lane): void {
    const connection = client.connection!;
    const envelope = this.#decode(connection, frame);
    if (!envelope) return;
    client.lastSeen = Date.now();
    if (SERVER_ONLY.has(envelope.t)) {
      this.#protocolError(connection, 'ERR_ENVELOPE_SERVER_ONLY', `'${envelope.t}' is sent by the server only`);
      return;
    }
    this.#handle(client, envelope as ClientCommand | Extract<Envelope, { t: 'ack' | 'ping' | 'pong' }>, lane, messageSize(frame));
  }

  #decode(connection: Connection, frame: Message): Envelope | undefined {
    try {
      return decodeEnvelope(frame);
    } catch (error) {
      this.#protocolError(connection, error instanceof EnvelopeError ? error.code : 'ERR_ENVELOPE', (error as Error).message);
      return undefined;
    }
  }

  #handle(client: RoutedClient, envelope: ClientCommand | Extract<Envelope, { t: 'ack' | 'ping' | 'pong' }>, lane: Lane, size: number): void {
    const connection = client.connection!;
    if (!this.#takeToken(connection)) {
      this.#protocolError(connection, 'ERR_RATE_LIMITED', `over ${this.#options.rateLimit.perSecond} commands per second`, 'id' in envelope ? envelope.id : undefined, false);
      return;
    }
    switch (envelope.t) {
      case 'ping':
        this.#sendTo(client, { t: 'pong', ts: envelope.ts });
        return;
      case 'pong':
        client.rttMs = Math.max(0, Date.now() - envelope.ts);
        return;
      case 'ack': {
        // A recipient's receipt: forwarded to the original sender (on whichever node), naming who
        // confirmed, only for a delivery that asked this client for one (nobody can confirm for someone else).
        const key = envelope.to === undefined ? undefined : `${envelope.to}\u0000${envelope.id}`;
        if (key === undefined || !client.owedReceipts.delete(key)) {
          this.#protocolError(connection, 'ERR_RECEIPT_NOT_OWED', `no delivery of '${envelope.id}' to this client asked for a receipt`);
          return;
        }
        this.#engine.publish({ target: { client: envelope.to! }, event: { t: 'ack', id: envelope.id, from: client.id }, lane: 'reliable', size: 0 }, ignore);
        return;
      }
      case 'hello':
        this.#protocolError(connection, 'ERR_ALREADY_HELLO', 'hello was already accepted on this connection');
        return;
      default:
        break;
    }
    const command = envelope;
    if (command.id !== undefined) {
      if (utf8Length(command.id) > this.#options.maxIdLength) {
        this.#refuse(connection, { code: 'ERR_ID_TOO_LONG', message: `message id over ${this.#options.maxIdLength} bytes` }, undefined);
        return;
      }
      if (client.seenIds.has(command.id)) {
        // A retry of something already routed: confirm again, deliver nothing twice.
        this.#counters.duplicates++;
        this.#sendTo(client, { t: 'ack', id: command.id });
        return;
      }
    }
    if (this.#options.beforeRoute?.(command, client) === 'drop') return;
    let answered = false;
    let waiting = false;
    this.#route(client, command, lane, size, (error) => {
      answered = true;
      if (waiting) this.#answered(client, connection);
      this.#finish(client, connection, command, error);
    });
    if (answered) return;
    // Waiting on the engine (a store round trip): more commands may come meanwhile, up to a bound.
    waiting = true;
    if (++client.inflight >= MAX_INFLIGHT) this.#pauseReading(connection, INFLIGHT);
  }

  #answered(client: RoutedClient, connection: Connection): void {
    if (--client.inflight < MAX_INFLIGHT / 2) this.#resumeReading(connection, INFLIGHT);
  }

  /** A command's outcome: its receipt (once the engine has it), or its typed error. */
  #finish(client: RoutedClient, connection: Connection, command: Exclude<ClientCommand, { t: 'hello' }>, error: RouteError | undefined): void {
    if (error?.code === 'ERR_DUPLICATE') {
      // The engine had it already (a retry that reached another node first, or after a crash).
      this.#counters.duplicates++;
      error = undefined;
    } else if (error) {
      if (client.connection === connection) this.#refuse(connection, error, command.id);
      return;
    } else {
      this.#counters.routed++;
      if (command.t === 'join' || command.t === 'leave') this.#events.emit(command.t, client, command.room);
      else if (command.t === 'subscribe' || command.t === 'unsubscribe') this.#events.emit(command.t, client, command.topic);
    }
    if (command.id !== undefined) {
      client.seenIds.add(command.id);
      if (client.connection !== connection) return;
      // A join's or subscribe's ack names where its messages start: a resume before any came can still recover them.
      const channel: Channel | undefined = command.t === 'join' ? `room:${command.room}` : command.t === 'subscribe' ? `topic:${command.topic}` : undefined;
      const offset = channel && !error ? this.#engine.position(channel) : undefined;
      this.#sendTo(client, { t: 'ack', id: command.id, ...(offset === undefined ? {} : { offset }) });
    }
  }

  /** Applies one command; `done` with a typed error instead of a throw, now or once the engine answers. */
  #route(client: RoutedClient, command: Exclude<ClientCommand, { t: 'hello' }>, lane: Lane, size: number, done: Done): void {
    // Module functions, not closures made per command: this runs once per routed message.
    const authorize = this.#options.authorize;
    switch (command.t) {
      case 'join': {
        const denied = this.#checkName(command.room) ?? refusal(authorize, client, { kind: 'join', room: command.room }) ?? this.#roomForMore(client, client.rooms, command.room);
        if (denied) return done(denied);
        return this.#join(this.rooms, command.room, client, client.rooms, done);
      }
      case 'leave':
        this.#leave(this.rooms, command.room, client, client.rooms);
        return done();
      case 'subscribe': {
        const denied = this.#checkName(command.topic) ?? refusal(authorize, client, { kind: 'subscribe', topic: command.topic }) ?? this.#roomForMore(client, client.topics, command.topic);
        if (denied) return done(denied);
        return this.#join(this.topics, command.topic, client, client.topics, done);
      }
      case 'unsubscribe':
        this.#leave(this.topics, command.topic, client, client.topics);
        return done();
      case 'publish': {
        const denied = this.#checkName(command.topic) ?? refusal(authorize, client, { kind: 'publish', topic: command.topic });
        if (denied) return done(denied);
        return this.#relay(client, { topic: command.topic }, deliveryOf(client, command, 'topic', command.topic), command.id, lane, size, done);
      }
      case 'broadcast': {
        const denied = refusal(authorize, client, { kind: 'broadcast' });
        if (denied) return done(denied);
        return this.#relay(client, { all: true }, deliveryOf(client, command, 'broadcast'), command.id, lane, size, done);
      }
      case 'send': {
        const denied = this.#checkName(command.to) ?? refusal(authorize, client, { kind: 'send', to: command.to });
        if (denied) return done(denied);
        return this.#relay(client, { client: command.to }, deliveryOf(client, command, 'send'), command.id, lane, size, done);
      }
      case 'multicast': {
        const target = command.target;
        if ('room' in target) {
          const denied = this.#checkName(target.room) ?? refusal(authorize, client, { kind: 'multicast-room', room: target.room });
          if (denied) return done(denied);
          return this.#relay(client, { room: target.room }, deliveryOf(client, command, 'room', target.room), command.id, lane, size, done);
        }
        if ('topic' in target) {
          const denied = this.#checkName(target.topic) ?? refusal(authorize, client, { kind: 'publish', topic: target.topic });
          if (denied) return done(denied);
          return this.#relay(client, { topic: target.topic }, deliveryOf(client, command, 'topic', target.topic), command.id, lane, size, done);
        }
        if (target.ids.length > this.#options.maxMulticastIds) return done({ code: 'ERR_TOO_MANY_IDS', message: `multicast to more than ${this.#options.maxMulticastIds} ids` });
        const denied = refusal(authorize, client, { kind: 'multicast-ids', ids: target.ids });
        if (denied) return done(denied);
        return this.#relay(client, { ids: [...new Set(target.ids)] }, deliveryOf(client, command, 'ids'), command.id, lane, size, done);
      }
    }
  }

  #checkName(name: string): RouteError | undefined {
    if (utf8Length(name) <= this.#options.maxNameLength) return undefined;
    return { code: 'ERR_NAME_TOO_LONG', message: `name over ${this.#options.maxNameLength} bytes` };
  }

  #roomForMore(client: RoutedClient, own: Set<string>, name: string): RouteError | undefined {
    if (own.has(name) || client.rooms.size + client.topics.size < this.#options.maxMemberships) return undefined;
    return { code: 'ERR_TOO_MANY_MEMBERSHIPS', message: `more than ${this.#options.maxMemberships} rooms and topics` };
  }

  /**
   * Adds a membership; the first member of a room or topic on this node makes the engine bring its
   * messages here. Resolves once they come (a join is acknowledged then, not before).
   */
  #join(index: Map<string, Set<RoutedClient>>, name: string, client: RoutedClient, own: Set<string>, done: Done): void {
    const channel: Channel = `${index === this.rooms ? 'room' : 'topic'}:${name}`;
    const first = !index.has(name);
    const joining = !own.has(name);
    addMember(index, name, client, own);
    // Watched before the membership is announced: the announcement is then among what this node reads.
    if (first) this.#engine.watch(channel, (error) => done(error ? { code: 'ERR_CLUSTER_UNAVAILABLE', message: error } : undefined));
    if (joining) this.#engine.membership(client.id, channel, true);
    if (!first) done();
  }

  #leave(index: Map<string, Set<RoutedClient>>, name: string, client: RoutedClient, own: Set<string> | undefined): void {
    const channel: Channel = `${index === this.rooms ? 'room' : 'topic'}:${name}`;
    if (own?.has(name)) this.#engine.membership(client.id, channel, false);
    if (removeMember(index, name, client, own)) this.#engine.unwatch(channel);
  }

  /**
   * A client's message to its recipients, through the engine: refused (nothing queued, nothing
   * acknowledged) when the delivery would be larger than the transports accept.
   */
  #relay(sender: RoutedClient, target: Target, event: Delivery, id: string | undefined, lane: Lane, size: number, done: Done): void {
    // The delivery is the command's payload with other fields around it: only near the limit is it encoded to be sure.
    const bound = size + DELIVERY_OVERHEAD + utf8Length(sender.id) + (sender.userId === undefined ? 0 : utf8Length(sender.userId));
    if (bound > this.#options.maxMessageSize) {
      const exact = messageSize(encodeEnvelope({ ...event, offset: LONGEST_OFFSET }));
      if (exact > this.#options.maxMessageSize) return done({ code: 'ERR_MESSAGE_TOO_LARGE', message: `the delivery would be ${exact} bytes, over the limit of ${this.#options.maxMessageSize}` });
    }
    const publication: Publication = { target, event, lane, size };
    if (id !== undefined) publication.dedup = { clientId: sender.id, id };
    this.#engine.publish(publication, (outcome) => done(outcome.ok ? undefined : outcome));
  }

  /** What the engine brings to this node: delivered to its recipients of `target`, encoded once. */
  #deliver(target: Target, event: Delivery | ReceiptEvent, lane: Lane, offset: string | undefined): void {
    if (event.t === 'ack') {
      const sender = 'client' in target ? this.clients.get(target.client) : undefined;
      if (sender) this.#sendTo(sender, event);
      return;
    }
    const from = this.clients.get(event.from);
    if ('room' in target) this.#fanOut(this.rooms.get(target.room) ?? NOBODY, event, from, lane, offset, `room:${target.room}`, from);
    else if ('topic' in target) this.#fanOut(this.topics.get(target.topic) ?? NOBODY, event, from, lane, offset, `topic:${target.topic}`, from);
    else if ('all' in target) this.#fanOut(this.clients.values(), event, from, lane, undefined, undefined, from);
    else if ('client' in target) {
      const recipient = this.clients.get(target.client);
      if (recipient) this.#fanOut([recipient], event, undefined, lane, undefined, undefined, from);
    } else {
      const recipients: RoutedClient[] = [];
      for (const id of target.ids) {
        const recipient = this.clients.get(id);
        if (recipient) recipients.push(recipient);
      }
      this.#fanOut(recipients, event, undefined, lane, undefined, undefined, from);
    }
  }

  /**
   * Encodes once and queues the same prepared message, on the sender's lane, on every recipient
   * except `exclude`; returns the deliveries queued. Recipients left above their high-water mark
   * hold `sender`'s reading until they drain.
   */
  #fanOut(recipients: Iterable<RoutedClient>, event: Delivery, exclude: RoutedClient | undefined, lane: Lane, offset: string | undefined, channel: Channel | undefined, sender: RoutedClient | undefined): number {
    // One prepared message for every recipient: encoded once, framed once per transport (prepared-message.ts).
    const frame = new PreparedMessage(encodeEnvelope(offset === undefined ? event : { ...event, offset }));
    const receipt = event.receipt && event.id !== undefined ? `${event.from}\u0000${event.id}` : undefined;
    const from = this.#options.pacePublishers ? (sender?.connection ?? undefined) : undefined;
    let delivered = 0;
    for (const recipient of recipients) {
      if (recipient === exclude) continue;
      if (recipient.recovering) {
        if (recipient.recovering.length < MAX_HELD_WHILE_RECOVERING) recipient.recovering.push({ frame, lane, channel, offset });
        continue;
      }
      if (recipient.floors && belowFloor(recipient, channel, offset)) continue;
      const connection = recipient.connection;
      if (!this.#write(connection, frame, lane)) continue;
      delivered++;
      if (receipt) recipient.owedReceipts.add(receipt);
      if (from && !connection!.writable) this.#holdUntilDrained(from, connection!);
    }
    this.#counters.deliveries += delivered;
    return delivered;
  }

  #sendTo(client: RoutedClient, event: Envelope): void {
    this.#write(client.connection, encodeEnvelope(event));
  }

  #write(connection: Connection | null, frame: Message | PreparedMessage, lane: Lane = 'reliable'): boolean {
    if (!connection || connection.state !== 'open') return false;
    try {
      const outcome = connection.send(frame, lane);
      // A full queue under the 'wait' policy refuses; the router cannot hold a fan-out for one
      // slow reader, so the delivery is lost, and counted (the policy's own drops are counted by
      // the connection).
      if (outcome === 'refused') this.#counters.refused++;
      return outcome === 'queued';
    } catch {
      // Too large for this recipient's datagrams, or a lane it refuses: this delivery is dropped.
      this.#counters.undeliverable++;
      return false;
    }
  }

  /**
   * Backpressure from recipients to senders: `sender` is not read while `recipient` is over its
   * high-water mark, so a fast publisher goes at the pace of its readers (TCP pushes back on it;
   * a long-polling POST is answered later). A recipient whose queue stops shrinking for
   * stalledReaderMs is stalled: it holds nobody back, and its own slow-consumer policy deals with it.
   */
  #holdUntilDrained(sender: Connection, recipient: Connection): void {
    if (sender === recipient || this.#stalled.has(recipient)) return;
    let senders = this.#awaitingDrain.get(recipient);
    if (!senders) {
      this.#awaitingDrain.set(recipient, (senders = new Set()));
      // A reader that reads, however slowly, shrinks its queue between two looks; one that does not is stalled.
      let lastBytes = recipient.queued.bytes;
      const watch = setInterval(() => {
        const bytes = recipient.queued.bytes;
        if (bytes < lastBytes) return void (lastBytes = bytes);
        clearInterval(watch);
        this.#stalled.add(recipient);
        this.#releaseWaitingOn(recipient);
      }, this.#options.stalledReaderMs);
      watch.unref?.();
      recipient.drained().then(
        () => {
          clearInterval(watch);
          this.#stalled.delete(recipient);
          this.#releaseWaitingOn(recipient);
        },
        () => clearInterval(watch),
      );
    }
    if (senders.has(sender)) return;
    senders.add(sender);
    this.#pauseReading(sender, recipient);
  }

  #releaseWaitingOn(recipient: Connection): void {
    const senders = this.#awaitingDrain.get(recipient);
    this.#awaitingDrain.delete(recipient);
    for (const sender of senders ?? []) this.#resumeReading(sender, recipient);
  }

  #pauseReading(connection: Connection, reason: unknown): void {
    const peer = this.#connections.get(connection);
    if (!peer) return;
    if (peer.pausedFor.size === 0) connection.pauseReading();
    peer.pausedFor.add(reason);
  }

  #resumeReading(connection: Connection, reason: unknown): void {
    const peer = this.#connections.get(connection);
    if (!peer || !peer.pausedFor.delete(reason)) return;
    if (peer.pausedFor.size === 0) connection.resumeReading();
  }

  /**
   * Takes one command token. An empty bucket pauses reading until a tenth of the burst is back, so
   * the sender is slowed, not refused: what it already sent in the same read still goes through.
   * Only a sender that keeps coming anyway (a transport that cannot pause) runs a debt of `burst`,
   * and past that its commands are refused.
   */
  #takeToken(connection: Connection): boolean {
    const peer = this.#connections.get(connection);
    if (!peer) return false;
    const { perSecond, burst } = this.#options.rateLimit;
    if (perSecond === Infinity) return true;
    const now = Date.now();
    peer.tokens = Math.min(burst, peer.tokens + ((now - peer.refilledAt) * perSecond) / 1000);
    peer.refilledAt = now;
    if (peer.tokens < -burst) return false;
    peer.tokens--;
    if (peer.tokens < 0 && !peer.pausedFor.has(RATE_LIMIT)) {
      this.#pauseReading(connection, RATE_LIMIT);
      const timer = setTimeout(() => this.#resumeReading(connection, RATE_LIMIT), Math.ceil(((burst / 10 - peer.tokens) / perSecond) * 1000));
      timer.unref?.();
    }
    return true;
  }

  /** A command the router will not carry out: answered at once, with the command's id. */
  #refuse(connection: Connection, error: RouteError, ref: string | undefined): void {
    this.#counters.errors++;
    this.#write(connection, encodeEnvelope({ t: 'error', code: error.code, message: error.message, ...(ref === undefined ? {} : { ref }) }));
  }

  /**
   * A frame that breaks the protocol (or over the rate limit): one error envelope per turn
   * however many such frames came in it (the first one's, with a count of the rest), and past
   * maxProtocolErrors (when `counts`) the connection closes with 1002.
   */
  #protocolError(connection: Connection, code: string, message: string, ref?: string, counts = true): void {
    const peer = this.#connections.get(connection);
    if (!peer) return;
    this.#counters.errors++;
    if (counts && ++peer.protocolErrors > this.#options.maxProtocolErrors) {
      this.#sendPendingError(connection, peer);
      connection.close(CloseCode.protocolError, `more than ${this.#options.maxProtocolErrors} protocol errors`);
      return;
    }
    if (peer.pendingError) {
      peer.pendingError.more++;
      return;
    }
    peer.pendingError = { code, message, ref, more: 0 };
    queueMicrotask(() => this.#sendPendingError(connection, peer));
  }

  #sendPendingError(connection: Connection, peer: Peer): void {
    const pending = peer.pendingError;
    if (!pending) return;
    peer.pendingError = undefined;
    const text = pending.more > 0 ? `${pending.message} (and ${pending.more} more refused frames)` : pending.message;
    this.#write(connection, encodeEnvelope({ t: 'error', code: pending.code, message: text, ...(pending.ref === undefined ? {} : { ref: pending.ref }) }));
  }

  #forget(client: RoutedClient): void {
    if (this.clients.get(client.id) !== client) return;
    for (const room of client.rooms) this.#engine.membership(client.id, `room:${room}`, false);
    for (const topic of client.topics) this.#engine.membership(client.id, `topic:${topic}`, false);
    this.#drop(client);
    this.#engine.forget(client.id);
    this.#events.emit('disconnect', client);
  }

  /** Another node resumed this client: its connection here (if any) closes, its session lives on there. */
  #release(clientId: string): void {
    const client = this.clients.get(clientId);
    if (!client) return;
    this.#drop(client);
    const connection = client.connection;
    client.connection = null;
    connection?.close(4010, 'replaced by a resumed connection');
  }

  /** Removes a client and its memberships from this node; false when it was not here. */
  #drop(client: RoutedClient): boolean {
    clearTimeout(client.graceTimer);
    if (this.clients.get(client.id) !== client) return false;
    this.clients.delete(client.id);
    for (const room of client.rooms) if (removeMember(this.rooms, room, client, undefined)) this.#engine.unwatch(`room:${room}`);
    for (const topic of client.topics) if (removeMember(this.topics, topic, client, undefined)) this.#engine.unwatch(`topic:${topic}`);
    return true;
  }

  #beat(): void {
    const now = Date.now();
    const ping = encodeEnvelope({ t: 'ping', ts: now });
    for (const client of this.clients.values()) {
      if (!client.connection) continue;
      if (now - client.lastSeen > this.#options.livenessTimeoutMs) client.connection.close(CloseCode.livenessTimeout, 'no traffic within the liveness timeout');
      else this.#write(client.connection, ping);
    }
  }
}

const NOBODY: readonly RoutedClient[] = [];
/** The longest offset a delivery may carry (isOffset), for an exact size check. */
const LONGEST_OFFSET = `${'9'.repeat(20)}-${'9'.repeat(20)}`;
const ignore = (): void => undefined;

/** A reason of its own for pausing a connection's reading: its token bucket is empty. */
const RATE_LIMIT = Symbol('rate limit');
/** Another: too many of its commands wait on the engine. */
const INFLIGHT = Symbol('commands in flight');

/** Whether a recovered client has this delivery already (and forgets a floor once deliveries pass it). */
function belowFloor(client: RoutedClient, channel: Channel | undefined, offset: string | undefined): boolean {
  const floor = channel && offset ? client.floors?.get(channel) : undefined;
  if (floor === undefined) return false;
  if (compareOffsets(offset!, floor) <= 0) return true;
  client.floors!.delete(channel!);
  if (client.floors!.size === 0) client.floors = undefined;
  return false;
}

/** ERR_FORBIDDEN when the authorize hook refuses `action`. */
function refusal(authorize: RouterOptions['authorize'], client: RoutedClient, action: Action): RouteError | undefined {
  if (!authorize || authorize(client, action)) return undefined;
  const { kind, ...what } = action;
  return { code: 'ERR_FORBIDDEN', message: `not allowed: ${kind} ${JSON.stringify(what)}` };
}

/** Adds `key` to a bounded insertion-ordered set, forgetting the oldest past `limit`. */
/** The `message` a command's data becomes for its recipients (with an id where receipts are wanted). */
function deliveryOf(client: RoutedClient, command: Extract<ClientCommand, { data: Payload }>, kind: DeliveryKind, to?: string): Extract<ServerEvent, { t: 'message' }> {
  const delivery: Extract<ServerEvent, { t: 'message' }> = { t: 'message', from: client.id, kind, data: command.data };
  if (to !== undefined) delivery.to = to;
  if (client.userId !== undefined) delivery.user = client.userId;
  if (command.id !== undefined && command.receipt) {
    delivery.id = command.id;
    delivery.receipt = true;
  }
  return delivery;
}

function addMember(index: Map<string, Set<RoutedClient>>, name: string, client: RoutedClient, own: Set<string>): void {
  let members = index.get(name);
  if (!members) index.set(name, (members = new Set()));
  members.add(client);
  own.add(name);
}

/** Removes a membership; true when it was the name's last member here. */
function removeMember(index: Map<string, Set<RoutedClient>>, name: string, client: RoutedClient, own: Set<string> | undefined): boolean {
  const members = index.get(name);
  own?.delete(name);
  if (!members || !members.delete(client) || members.size > 0) return false;
  index.delete(name);
  return true;
}

function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return difference === 0;
}
