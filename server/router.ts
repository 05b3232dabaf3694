/**
 * The message router: client ids, rooms, topics; broadcast, unicast, multicast, publish/subscribe;
 * server receipts and recipient receipts; de-duplication of retried ids; heartbeats with a liveness
 * timeout; session resume after a reconnect. It sees only `Connection`s, so clients on every
 * transport talk to each other. A fan-out message is encoded once and the same string or bytes go
 * to every recipient's queue.
 *
 * Deliveries never go back to their sender, except a `send` or an id-list multicast that names the
 * sender itself (so a client can measure its own round trip through the router).
 */
import { decodeEnvelope, encodeEnvelope, EnvelopeError, type ClientCommand, type DeliveryKind, type Envelope, type Payload, type ServerEvent } from '../transports/codec/envelope.ts';
import { Emitter } from '../transports/emitter.ts';
import { randomId } from '../transports/random-id.ts';
import { DEFAULT_DEDUP_WINDOW, RecentIds } from '../transports/recent-ids.ts';
import { CloseCode, type CloseInfo, type Connection, type Lane, type Message } from '../transports/transport.ts';

export interface HelloInfo {
  token: string | undefined;
  connection: Connection;
}

/** A command that names a room or topic, for permission checks. */
export type Action = { kind: 'join'; room: string } | { kind: 'subscribe'; topic: string } | { kind: 'publish'; topic: string } | { kind: 'multicast-room'; room: string };

export interface RouterOptions {
  /** Server pings every client this often (ms). Default 15 000. */
  heartbeatMs?: number;
  /** A client silent for this long (ms) is closed with 4009. Default 2.5 × heartbeatMs. */
  livenessTimeoutMs?: number;
  /** A connection must say hello within this time (ms). Default 10 000. */
  helloTimeoutMs?: number;
  /** A dropped client's id, rooms and topics are kept this long (ms) for a resume. Default 30 000. */
  resumeGraceMs?: number;
  /** How many recent message ids per client are remembered to drop retried duplicates. Default 4096. */
  dedupWindow?: number;
  /** Largest accepted connection count; more are closed with 1013. Default 100 000. */
  maxConnections?: number;
  /** Largest message the transports accept, announced in `welcome`. */
  maxMessageSize?: number;
  /** Auth hook at hello: false rejects (close 1008); a string becomes the client's user id. */
  authenticate?: (hello: HelloInfo) => boolean | string | Promise<boolean | string>;
  /** Per-room/topic permission hook; false answers ERR_FORBIDDEN. */
  authorize?: (client: RoutedClient, action: Action) => boolean;
  /** Routing hook, called before a command with an id is routed; 'drop' ignores it (no receipt). */
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
  lastSeen = Date.now();
  rttMs: number | null = null;
  graceTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly id: string,
    readonly secret: string,
    connection: Connection,
    dedupWindow: number,
  ) {
    this.connection = connection;
    this.seenIds = new RecentIds(dedupWindow);
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
};

export class Router {
  readonly clients = new Map<string, RoutedClient>();
  readonly rooms = new Map<string, Set<RoutedClient>>();
  readonly topics = new Map<string, Set<RoutedClient>>();
  readonly #options: RouterOptions & typeof DEFAULTS & { livenessTimeoutMs: number };
  readonly #connections = new Set<Connection>();
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
    this.#connections.add(connection);
    let client: RoutedClient | undefined;
    let helloPending = false;
    const helloTimer = setTimeout(() => connection.close(CloseCode.policyViolation, 'no hello in time'), this.#options.helloTimeoutMs);
    helloTimer.unref?.();

    connection.on('message', (frame, lane) => {
      let envelope: Envelope;
      try {
        envelope = decodeEnvelope(frame);
      } catch (error) {
        this.#reject(connection, error instanceof EnvelopeError ? error.code : 'ERR_ENVELOPE', (error as Error).message);
        return;
      }
      if (client) {
        client.lastSeen = Date.now();
        this.#handle(client, envelope as ClientCommand | Extract<Envelope, { t: 'ack' | 'ping' | 'pong' }>, lane);
        return;
      }
      if (envelope.t !== 'hello') {
        this.#reject(connection, 'ERR_NO_HELLO', `'${envelope.t}' before 'hello'`, 'id' in envelope ? envelope.id : undefined);
        return;
      }
      if (helloPending) return;
      helloPending = true;
      void this.#hello(connection, envelope).then((accepted) => {
        clearTimeout(helloTimer);
        client = accepted;
        helloPending = false;
      });
    });

    connection.on('close', (info) => {
      clearTimeout(helloTimer);
      this.#connections.delete(connection);
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
    for (const connection of this.#connections) connection.close(CloseCode.goingAway, 'server shutting down');
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

  #handle(client: RoutedClient, envelope: ClientCommand | Extract<Envelope, { t: 'ack' | 'ping' | 'pong' }>, lane: Lane): void {
    switch (envelope.t) {
      case 'ping':
        this.#sendTo(client, { t: 'pong', ts: envelope.ts });
        return;
      case 'pong':
        client.rttMs = Math.max(0, Date.now() - envelope.ts);
        return;
      case 'ack': {
        // A recipient's receipt: forward it to the original sender, naming who confirmed.
        const sender = envelope.to === undefined ? undefined : this.clients.get(envelope.to);
        if (sender) this.#sendTo(sender, { t: 'ack', id: envelope.id, from: client.id });
        return;
      }
      case 'hello':
        this.#reject(client.connection, 'ERR_ALREADY_HELLO', 'hello was already accepted on this connection');
        return;
      default:
        break;
    }
    const command = envelope;
    if (command.id !== undefined) {
      if (client.seenIds.has(command.id)) {
        // A retry of something already routed: confirm again, deliver nothing twice.
        this.#counters.duplicates++;
        this.#sendTo(client, { t: 'ack', id: command.id });
        return;
      }
      if (this.#options.beforeRoute?.(command, client) === 'drop') return;
    }
    const error = this.#route(client, command, lane);
    if (error) {
      this.#reject(client.connection, error.code, error.message, command.id);
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
  #route(client: RoutedClient, command: Exclude<ClientCommand, { t: 'hello' }>, lane: Lane): { code: string; message: string } | undefined {
    // Module functions, not closures made per command: this runs once per routed message.
    const authorize = this.#options.authorize;
    switch (command.t) {
      case 'join':
        return refusal(authorize, client, { kind: 'join', room: command.room }) ?? void addMember(this.rooms, command.room, client, client.rooms);
      case 'leave':
        removeMember(this.rooms, command.room, client, client.rooms);
        return undefined;
      case 'subscribe':
        return refusal(authorize, client, { kind: 'subscribe', topic: command.topic }) ?? void addMember(this.topics, command.topic, client, client.topics);
      case 'unsubscribe':
        removeMember(this.topics, command.topic, client, client.topics);
        return undefined;
      case 'publish': {
        const denied = refusal(authorize, client, { kind: 'publish', topic: command.topic });
        if (denied) return denied;
        this.#fanOut(this.topics.get(command.topic) ?? [], deliveryOf(client, command, 'topic', command.topic), client, lane);
        return undefined;
      }
      case 'broadcast':
        this.#fanOut(this.clients.values(), deliveryOf(client, command, 'broadcast'), client, lane);
        return undefined;
      case 'send': {
        const target = this.clients.get(command.to);
        if (!target) return { code: 'ERR_UNKNOWN_CLIENT', message: `no client '${command.to}'` };
        this.#fanOut([target], deliveryOf(client, command, 'send'), undefined, lane);
        return undefined;
      }
      case 'multicast': {
        const target = command.target;
        if ('room' in target) {
          const denied = refusal(authorize, client, { kind: 'multicast-room', room: target.room });
          if (denied) return denied;
          this.#fanOut(this.rooms.get(target.room) ?? [], deliveryOf(client, command, 'room', target.room), client, lane);
        } else if ('topic' in target) {
          const denied = refusal(authorize, client, { kind: 'publish', topic: target.topic });
          if (denied) return denied;
          this.#fanOut(this.topics.get(target.topic) ?? [], deliveryOf(client, command, 'topic', target.topic), client, lane);
        } else {
          const recipients = new Set<RoutedClient>();
          for (const id of target.ids) {
            const recipient = this.clients.get(id);
            if (recipient) recipients.add(recipient);
          }
          this.#fanOut(recipients, deliveryOf(client, command, 'ids'), undefined, lane);
        }
        return undefined;
      }
    }
  }

  /** Encodes once and queues the same frame, on the sender's lane, on every recipient except `exclude`. */
  #fanOut(recipients: Iterable<RoutedClient>, event: ServerEvent, exclude: RoutedClient | undefined, lane: Lane = 'reliable'): number {
    const frame = encodeEnvelope(event);
    let delivered = 0;
    for (const recipient of recipients) {
      if (recipient === exclude) continue;
      if (this.#write(recipient.connection, frame, lane)) delivered++;
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

  #reject(connection: Connection | null, code: string, message: string, ref?: string): void {
    this.#counters.errors++;
    this.#write(connection, encodeEnvelope({ t: 'error', code, message, ...(ref === undefined ? {} : { ref }) }));
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

/** ERR_FORBIDDEN when the authorize hook refuses `action`. */
function refusal(authorize: RouterOptions['authorize'], client: RoutedClient, action: Action): { code: string; message: string } | undefined {
  if (!authorize || authorize(client, action)) return undefined;
  return { code: 'ERR_FORBIDDEN', message: `not allowed: ${action.kind} ${'room' in action ? action.room : action.topic}` };
}

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
