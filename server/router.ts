/**
 * The message router: client ids, rooms, topics; broadcast, unicast, multicast, publish/subscribe;
 * server receipts and recipient receipts; de-duplication of retried ids; heartbeats with a liveness
 * timeout; session resume after a reconnect. It sees only `Connection`s, so clients on every
 * transport talk to each other. A fan-out message is encoded once and the same string or bytes go
 * to every recipient's queue.
 *
 * Deliveries never go back to their sender, except a `send` or an id-list multicast that names the
 * sender itself (so a client can measure its own round trip through the router).
 *
 * What a stranger can make it do is bounded: names, ids and memberships have limits (typed
 * errors); malformed frames are answered once per turn, not once each, and too many of them close
 * the connection; each connection has a token bucket of commands per second; commands that arrive
 * behind a hello still being decided wait for it. An acknowledgement means the command was routed
 * in this process's memory: a delivery too large for the recipients' transports is refused, never
 * acknowledged and then dropped.
 */
import { messageSize } from '../transports/base-connection.ts';
import { decodeEnvelope, encodeEnvelope, EnvelopeError, type ClientCommand, type DeliveryKind, type Envelope, type Payload, type ServerEvent } from '../transports/codec/envelope.ts';
import { utf8Length } from '../transports/codec/utf8.ts';
import { Emitter } from '../transports/emitter.ts';
import { randomId } from '../transports/random-id.ts';
import { DEFAULT_DEDUP_WINDOW, RecentIds } from '../transports/recent-ids.ts';
import { CloseCode, type CloseInfo, type Connection, type Lane, type Message } from '../transports/transport.ts';

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
/** Envelope types only the server sends. */
const SERVER_ONLY = new Set<string>(['welcome', 'message', 'error']);

type RouteError = { code: string; message: string };

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
  #counters = { routed: 0, deliveries: 0, duplicates: 0, errors: 0, undeliverable: 0, refused: 0 };

  constructor(options: RouterOptions = {}) {
    const heartbeatMs = options.heartbeatMs ?? DEFAULTS.heartbeatMs;
    // Options given as undefined keep their defaults.
    const given = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as RouterOptions;
    this.#options = { ...DEFAULTS, ...given, livenessTimeoutMs: options.livenessTimeoutMs ?? heartbeatMs * 2.5 };
    this.#heartbeat = setInterval(() => this.#beat(), heartbeatMs);
    this.#heartbeat.unref?.();
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
        lost.graceTimer.unref?.();
      }
    });
  }

  /** Sends a server-originated message to every client (kind 'broadcast', from 'server'). */
  broadcast(data: Payload): number {
    return this.#fanOut(this.clients.values(), { t: 'message', from: 'server', kind: 'broadcast', data }, undefined);
  }

  /** Publishes from the server to a topic's subscribers; returns the deliveries queued. */
  publish(topic: string, data: Payload): number {
    return this.#fanOut(this.topics.get(topic) ?? [], { t: 'message', from: 'server', kind: 'topic', to: topic, data }, undefined);
  }

  /** Sends from the server to every member of a room. */
  toRoom(room: string, data: Payload): number {
    return this.#fanOut(this.rooms.get(room) ?? [], { t: 'message', from: 'server', kind: 'room', to: room, data }, undefined);
  }

  /** Sends from the server to one client; 0 when no such client is connected. */
  sendTo(clientId: string, data: Payload): number {
    const client = this.clients.get(clientId);
    return client ? this.#fanOut([client], { t: 'message', from: 'server', kind: 'send', data }, undefined) : 0;
  }

  /** Listens to client lifecycle and membership events; returns the remover. */
  on<E extends keyof RouterEvents>(event: E, listener: RouterEvents[E]): () => void {
    return this.#events.on(event, listener);
  }

  /** Stops heartbeats and closes every connection with 1001. */
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
      client = previous;
      resumed = true;
    } else {
      client = new RoutedClient(randomId(12), randomId(16), connection, this.#options.dedupWindow);
      this.clients.set(client.id, client);
    }
    client.userId = userId ?? client.userId;
    this.#sendTo(client, {
      t: 'welcome',
      clientId: client.id,
      secret: client.secret,
      resumed,
      heartbeatMs: this.#options.heartbeatMs,
      maxMessageSize: this.#options.maxMessageSize,
    });
    this.#events.emit('connect', client, resumed);
    return client;
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
    this.#handle(client, envelope as ClientCommand | Extract<Envelope, { t: 'ack' | 'ping' | 'pong' }>, lane);
  }

  #decode(connection: Connection, frame: Message): Envelope | undefined {
    try {
      return decodeEnvelope(frame);
    } catch (error) {
      this.#protocolError(connection, error instanceof EnvelopeError ? error.code : 'ERR_ENVELOPE', (error as Error).message);
      return undefined;
    }
  }

  #handle(client: RoutedClient, envelope: ClientCommand | Extract<Envelope, { t: 'ack' | 'ping' | 'pong' }>, lane: Lane): void {
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
        // A recipient's receipt: forwarded to the original sender, naming who confirmed, only for a
        // delivery that asked this client for one (nobody can confirm for someone else).
        const key = envelope.to === undefined ? undefined : `${envelope.to}\u0000${envelope.id}`;
        if (key === undefined || !client.owedReceipts.delete(key)) {
          this.#protocolError(connection, 'ERR_RECEIPT_NOT_OWED', `no delivery of '${envelope.id}' to this client asked for a receipt`);
          return;
        }
        const sender = this.clients.get(envelope.to!);
        if (sender) this.#sendTo(sender, { t: 'ack', id: envelope.id, from: client.id });
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
    const error = this.#route(client, command, lane);
    if (error) {
      this.#refuse(connection, error, command.id);
      return;
    }
    this.#counters.routed++;
    if (command.t === 'join' || command.t === 'leave') this.#events.emit(command.t, client, command.room);
    else if (command.t === 'subscribe' || command.t === 'unsubscribe') this.#events.emit(command.t, client, command.topic);
    if (command.id !== undefined) {
      client.seenIds.add(command.id);
      this.#sendTo(client, { t: 'ack', id: command.id });
    }
  }

  /** Applies one command; returns a typed error instead of throwing. */
  #route(client: RoutedClient, command: Exclude<ClientCommand, { t: 'hello' }>, lane: Lane): RouteError | undefined {
    // Module functions, not closures made per command: this runs once per routed message.
    const authorize = this.#options.authorize;
    switch (command.t) {
      case 'join':
        return this.#checkName(command.room) ?? refusal(authorize, client, { kind: 'join', room: command.room }) ?? this.#join(this.rooms, command.room, client, client.rooms);
      case 'leave':
        removeMember(this.rooms, command.room, client, client.rooms);
        return undefined;
      case 'subscribe':
        return this.#checkName(command.topic) ?? refusal(authorize, client, { kind: 'subscribe', topic: command.topic }) ?? this.#join(this.topics, command.topic, client, client.topics);
      case 'unsubscribe':
        removeMember(this.topics, command.topic, client, client.topics);
        return undefined;
      case 'publish':
        return (
          this.#checkName(command.topic) ??
          refusal(authorize, client, { kind: 'publish', topic: command.topic }) ??
          this.#relay(client, this.topics.get(command.topic) ?? [], deliveryOf(client, command, 'topic', command.topic), client, lane)
        );
      case 'broadcast':
        return refusal(authorize, client, { kind: 'broadcast' }) ?? this.#relay(client, this.clients.values(), deliveryOf(client, command, 'broadcast'), client, lane);
      case 'send': {
        const denied = this.#checkName(command.to) ?? refusal(authorize, client, { kind: 'send', to: command.to });
        if (denied) return denied;
        const target = this.clients.get(command.to);
        if (!target) return { code: 'ERR_UNKNOWN_CLIENT', message: `no client '${command.to}'` };
        return this.#relay(client, [target], deliveryOf(client, command, 'send'), undefined, lane);
      }
      case 'multicast': {
        const target = command.target;
        if ('room' in target) {
          return (
            this.#checkName(target.room) ??
            refusal(authorize, client, { kind: 'multicast-room', room: target.room }) ??
            this.#relay(client, this.rooms.get(target.room) ?? [], deliveryOf(client, command, 'room', target.room), client, lane)
          );
        }
        if ('topic' in target) {
          return (
            this.#checkName(target.topic) ??
            refusal(authorize, client, { kind: 'publish', topic: target.topic }) ??
            this.#relay(client, this.topics.get(target.topic) ?? [], deliveryOf(client, command, 'topic', target.topic), client, lane)
          );
        }
        if (target.ids.length > this.#options.maxMulticastIds) return { code: 'ERR_TOO_MANY_IDS', message: `multicast to more than ${this.#options.maxMulticastIds} ids` };
        const denied = refusal(authorize, client, { kind: 'multicast-ids', ids: target.ids });
        if (denied) return denied;
        const recipients = new Set<RoutedClient>();
        for (const id of target.ids) {
          const recipient = this.clients.get(id);
          if (recipient) recipients.add(recipient);
        }
        return this.#relay(client, recipients, deliveryOf(client, command, 'ids'), undefined, lane);
      }
    }
  }

  #checkName(name: string): RouteError | undefined {
    if (utf8Length(name) <= this.#options.maxNameLength) return undefined;
    return { code: 'ERR_NAME_TOO_LONG', message: `name over ${this.#options.maxNameLength} bytes` };
  }

  #join(index: Map<string, Set<RoutedClient>>, name: string, client: RoutedClient, own: Set<string>): RouteError | undefined {
    if (!own.has(name) && client.rooms.size + client.topics.size >= this.#options.maxMemberships) {
      return { code: 'ERR_TOO_MANY_MEMBERSHIPS', message: `more than ${this.#options.maxMemberships} rooms and topics` };
    }
    addMember(index, name, client, own);
    return undefined;
  }

  /**
   * A client's message to its recipients: refused (nothing queued, nothing acknowledged) when the
   * delivery would be larger than the transports accept.
   */
  #relay(sender: RoutedClient, recipients: Iterable<RoutedClient>, event: Extract<ServerEvent, { t: 'message' }>, exclude: RoutedClient | undefined, lane: Lane): RouteError | undefined {
    const frame = encodeEnvelope(event);
    const size = messageSize(frame);
    if (size > this.#options.maxMessageSize) return { code: 'ERR_MESSAGE_TOO_LARGE', message: `the delivery would be ${size} bytes, over the limit of ${this.#options.maxMessageSize}` };
    this.#fanOut(recipients, event, exclude, lane, frame, sender);
    return undefined;
  }

  /**
   * Encodes once and queues the same frame, on the sender's lane, on every recipient except
   * `exclude`; returns the deliveries queued. Recipients left above their high-water mark hold
   * `sender`'s reading until they drain.
   */
  #fanOut(recipients: Iterable<RoutedClient>, event: Extract<ServerEvent, { t: 'message' }>, exclude: RoutedClient | undefined, lane: Lane = 'reliable', frame = encodeEnvelope(event), sender?: RoutedClient): number {
    const receipt = event.receipt && event.id !== undefined ? `${event.from}\u0000${event.id}` : undefined;
    const from = this.#options.pacePublishers ? (sender?.connection ?? undefined) : undefined;
    let delivered = 0;
    for (const recipient of recipients) {
      if (recipient === exclude) continue;
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

  #write(connection: Connection | null, frame: Message, lane: Lane = 'reliable'): boolean {
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
    clearTimeout(client.graceTimer);
    if (this.clients.get(client.id) !== client) return;
    this.clients.delete(client.id);
    for (const room of client.rooms) removeMember(this.rooms, room, client, undefined);
    for (const topic of client.topics) removeMember(this.topics, topic, client, undefined);
    this.#events.emit('disconnect', client);
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

/** A reason of its own for pausing a connection's reading: its token bucket is empty. */
const RATE_LIMIT = Symbol('rate limit');

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

function removeMember(index: Map<string, Set<RoutedClient>>, name: string, client: RoutedClient, own: Set<string> | undefined): void {
  const members = index.get(name);
  own?.delete(name);
  if (!members) return;
  members.delete(client);
  if (members.size === 0) index.delete(name);
}

function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return difference === 0;
}
