/**
 * The Switchyard client core (browser and Node): connects through the first transport of a list
 * that opens (fallback), says hello, and offers rooms, topics, unicast/multicast/broadcast with
 * lanes, acknowledged delivery (retry with backoff, receiver de-duplication, resend across a
 * reconnect), recipient receipts and heartbeats. Transports are injected as factories, so this
 * file has no Node or browser imports: `node-client.ts` and `browser-client.ts` supply them.
 */
import { decodeEnvelope, encodeEnvelope, type ClientCommand, type DeliveryKind, type Envelope, type MulticastTarget, type Payload } from './codec/envelope.ts';
import { Emitter } from './emitter.ts';
import { messageSize } from './base-connection.ts';
import { ConnectError, ConnectionClosedError, MessageTooLargeError, SwitchyardError } from './errors.ts';
import { randomId } from './random-id.ts';
import { DEFAULT_DEDUP_WINDOW, RecentIds } from './recent-ids.ts';
import { isPeerSignal, PeerLinks, type PeerLinkOptions } from './webrtc/peer.ts';
import type { ClientTransportFactory, ClientTransportOptions, CloseInfo, Connection, Lane, TransportName, TransportStats } from './transport.ts';

export { PeerConnectError } from './webrtc/peer.ts';

/** A message delivered to this client. */
export interface Delivery {
  from: string;
  kind: DeliveryKind;
  /** Room or topic for room/topic deliveries. */
  to?: string;
  data: Payload;
  /** The message's id when its sender asked for receipts. */
  id?: string;
  /** The sender's user id, when the server authenticated it (its `authenticate` hook returned one). */
  user?: string;
  /** A room's or topic's message: its position in that history (the client resumes from the last one). */
  offset?: string;
  lane: Lane;
}

export interface SendOptions {
  /** Wait for the server's receipt; retry with backoff until it comes (default false). */
  ack?: boolean;
  /** Also ask each recipient for a receipt (reported by the 'receipt' event). Implies an id. */
  receipt?: boolean;
  /** Lane to use (default 'reliable'). */
  lane?: Lane;
}

/** Why one transport of the fallback list did not connect. */
export interface FallbackAttempt {
  transport: TransportName;
  reason: string;
}

export type ClientState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ClientEvents {
  message: (delivery: Delivery) => void;
  /** A recipient confirmed message `id`. */
  receipt: (id: string, from: string) => void;
  state: (state: ClientState) => void;
  /** Earlier transports of the list failed; the client is now on `transport`. */
  fallback: (transport: TransportName, failed: FallbackAttempt[]) => void;
  /** Another client opened a direct webrtc connection to this one (see `peer()`). */
  peer: (connection: Connection, from: string) => void;
  /** A typed error from the server not tied to a pending call. */
  error: (error: ServerError) => void;
  /**
   * After a resumed reconnect: `recovered` true when every room and topic message missed while
   * away follows (before any live one); false when some could not be recovered (outside the
   * server's history or its resume grace): they are lost.
   */
  recovery: (recovered: boolean) => void;
  close: (info: CloseInfo) => void;
}

/** An `error` envelope from the server. */
export class ServerError extends SwitchyardError {
  readonly ref: string | undefined;
  constructor(code: string, message: string, ref?: string) {
    super(code, message);
    this.ref = ref;
  }
}

export interface ClientOptions {
  /** Server base URL, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** Transport, or transports to try in order (fallback). */
  transports: TransportName | readonly TransportName[];
  /** Factories for the transports (supplied by node-client.ts / browser-client.ts). */
  connectors: Partial<Record<TransportName, ClientTransportFactory>>;
  /** Sent at hello to the server's authenticate hook. */
  token?: string;
  /** Per-transport connect timeout (ms). Default 5 000. */
  connectTimeoutMs?: number;
  /** First retry after this long without a receipt (ms); doubles per attempt. Default 1 000. */
  ackTimeoutMs?: number;
  /** Attempts before an acked send rejects. Default 6. */
  maxAttempts?: number;
  /** Reconnect after an unexpected close. Default true. */
  reconnect?: boolean;
  /** Peer-to-peer webrtc (`peer()`): which offers to answer, ICE servers, timeout (Node supplies wrtc). */
  peers?: Omit<PeerLinkOptions, 'signal' | 'onPeer'>;
  /** Options passed to every transport (backpressure, laneFallback, TLS for Node...). */
  transportOptions?: Partial<ClientTransportOptions> & Record<string, unknown>;
}

interface PendingAck {
  frame: string | Uint8Array;
  lane: Lane;
  attempt: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  resolve: () => void;
  reject: (error: Error) => void;
  /** A join's or subscribe's channel (`room:<name>`, `topic:<name>`): its ack names the offset to resume from. */
  channel?: string;
}

const MAX_RECONNECT_DELAY_MS = 5_000;

export class SwitchyardClient {
  readonly #options: Required<Omit<ClientOptions, 'token' | 'transportOptions' | 'peers'>> & Pick<ClientOptions, 'token' | 'transportOptions'>;
  readonly #peers: PeerLinks;
  readonly #events = new Emitter<ClientEvents>();
  readonly #pending = new Map<string, PendingAck>();
  readonly #pings = new Map<number, (rtt: number) => void>();
  readonly #seen = new RecentIds(DEFAULT_DEDUP_WINDOW);
  readonly #rooms = new Set<string>();
  readonly #topics = new Set<string>();
  /** Offset of the last message received per room and topic (`room:<name>`, `topic:<name>`), sent at a resume. */
  readonly #offsets = new Map<string, string>();
  /** Prefix that makes this client's message ids unique across reconnects. */
  readonly #idPrefix = randomId(6);
  #nextId = 0;
  #connection: Connection | undefined;
  #state: ClientState = 'idle';
  #clientId: string | undefined;
  #secret: string | undefined;
  #transport: TransportName | undefined;
  #heartbeatMs = 15_000;
  /** The server's limit from its welcome: a larger command is refused here, before it costs a connection (1009). */
  #maxMessageSize = Infinity;
  #lastHeard = 0;
  #watchdog: ReturnType<typeof setInterval> | undefined;
  #welcome: { resolve: () => void; reject: (error: Error) => void } | undefined;
  /** True between the server's welcome and the loss of that connection: commands may flow. */
  #ready = false;
  /** A connect or reconnect attempt owns the connection lifecycle; `#lost` stays out of its way. */
  #establishing = false;

  constructor(options: ClientOptions) {
    this.#options = {
      connectTimeoutMs: 5_000,
      ackTimeoutMs: 1_000,
      maxAttempts: 6,
      reconnect: true,
      ...options,
    };
    this.#peers = new PeerLinks({
      connectTimeoutMs: 10_000,
      ...options.peers,
      signal: (to, signal) => this.send(to, signal as unknown as Payload, { ack: true }).then(() => undefined),
      onPeer: (connection, from) => this.#events.emit('peer', connection, from),
    });
  }

  /** Client id assigned by the server (stable across resumed reconnects). */
  get id(): string | undefined {
    return this.#clientId;
  }
  get state(): ClientState {
    return this.#state;
  }
  /** Transport in use. */
  get transport(): TransportName | undefined {
    return this.#transport;
  }
  get connection(): Connection | undefined {
    return this.#connection;
  }

  on<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): () => void {
    return this.#events.on(event, listener);
  }

  /** Connects (with fallback) and completes the hello. Rejects with every transport's failure. */
  async connect(): Promise<void> {
    if (this.#state !== 'idle') throw new SwitchyardError('ERR_STATE', `connect() in state ${this.#state}`);
    this.#setState('connecting');
    try {
      await this.#establish();
    } catch (error) {
      this.#setState('closed');
      throw error;
    }
    this.#setState('open');
  }

  join(room: string): Promise<void> {
    return this.#remember(this.#rooms, room, this.#command({ t: 'join', room }, { ack: true }, `room:${room}`).then(() => undefined));
  }
  leave(room: string): Promise<void> {
    this.#rooms.delete(room);
    this.#offsets.delete(`room:${room}`);
    return this.#command({ t: 'leave', room }, { ack: true }).then(() => undefined);
  }
  subscribe(topic: string): Promise<void> {
    return this.#remember(this.#topics, topic, this.#command({ t: 'subscribe', topic }, { ack: true }, `topic:${topic}`).then(() => undefined));
  }
  unsubscribe(topic: string): Promise<void> {
    this.#topics.delete(topic);
    this.#offsets.delete(`topic:${topic}`);
    return this.#command({ t: 'unsubscribe', topic }, { ack: true }).then(() => undefined);
  }
  /*
   * The data sends resolve with the message's id when it carries one (`ack` or `receipt` asked):
   * the id that 'receipt' events and the recipients' `Delivery.id` name.
   */
  publish(topic: string, data: Payload, options?: SendOptions): Promise<string | undefined> {
    return this.#command({ t: 'publish', topic, data }, options);
  }
  /**
   * A direct webrtc connection to another client of this server (same contract and lanes as any
   * Connection); the offer and answer go through the server, the messages do not. Rejects with
   * PeerConnectError (`ERR_PEER_ICE_FAILED` names the ICE state when no direct path was found).
   */
  peer(clientId: string): Promise<Connection> {
    return this.#peers.connect(clientId);
  }

  /** Unicast to one client id. */
  send(to: string, data: Payload, options?: SendOptions): Promise<string | undefined> {
    return this.#command({ t: 'send', to, data }, options);
  }
  multicast(target: MulticastTarget, data: Payload, options?: SendOptions): Promise<string | undefined> {
    return this.#command({ t: 'multicast', target, data }, options);
  }
  broadcast(data: Payload, options?: SendOptions): Promise<string | undefined> {
    return this.#command({ t: 'broadcast', data }, options);
  }

  /** Keeps a room/topic for re-joining after a reconnect, unless the server refused it. */
  #remember(set: Set<string>, name: string, joined: Promise<void>): Promise<void> {
    set.add(name);
    return joined.catch((error: unknown) => {
      set.delete(name);
      throw error;
    });
  }

  /** Round trip to the server in ms, through the envelope layer. */
  ping(): Promise<number> {
    const ts = Date.now() + this.#pings.size / 1000;
    return new Promise((resolve, reject) => {
      this.#pings.set(ts, resolve);
      this.#write(encodeEnvelope({ t: 'ping', ts }), 'reliable').catch((error: unknown) => {
        this.#pings.delete(ts);
        reject(error);
      });
    });
  }

  stats(): TransportStats | undefined {
    return this.#connection?.stats();
  }

  /** Closes for good: pending acked sends reject, no reconnect. */
  close(code = 1000, reason = 'client closed'): void {
    if (this.#state === 'closed') return;
    this.#setState('closed');
    clearInterval(this.#watchdog);
    this.#connection?.close(code, reason);
    const error = new ConnectionClosedError('closed');
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.#pending.clear();
  }

  async #establish(): Promise<void> {
    const names = typeof this.#options.transports === 'string' ? [this.#options.transports] : this.#options.transports;
    const failed: FallbackAttempt[] = [];
    this.#establishing = true;
    try {
      return await this.#tryEach(names, failed);
    } finally {
      this.#establishing = false;
    }
  }

  async #tryEach(names: readonly TransportName[], failed: FallbackAttempt[]): Promise<void> {
    for (const name of names) {
      const factory = this.#options.connectors[name];
      if (!factory) {
        failed.push({ transport: name, reason: 'not available in this environment' });
        continue;
      }
      let connection: Connection | undefined;
      try {
        connection = factory({ ...this.#options.transportOptions, url: this.#options.url, connectTimeoutMs: this.#options.connectTimeoutMs });
        await withTimeout(connection.opened, this.#options.connectTimeoutMs, `${name} did not open within ${this.#options.connectTimeoutMs} ms`);
        this.#adopt(connection, name);
        await this.#hello();
        if (failed.length > 0) this.#events.emit('fallback', name, failed);
        return;
      } catch (error) {
        connection?.close(1000, 'fallback');
        failed.push({ transport: name, reason: (error as Error).message });
      }
    }
    throw new ConnectError(`no transport connected: ${failed.map((f) => `${f.transport}: ${f.reason}`).join('; ')}`);
  }

  #adopt(connection: Connection, name: TransportName): void {
    this.#connection = connection;
    this.#transport = name;
    this.#lastHeard = Date.now();
    connection.on('message', (frame, lane) => this.#receive(frame, lane));
    connection.on('close', (info) => this.#lost(connection, info));
  }

  #hello(): Promise<void> {
    return withTimeout(
      new Promise<void>((resolve, reject) => {
        this.#welcome = { resolve, reject };
        const resume = this.#clientId && this.#secret ? { clientId: this.#clientId, secret: this.#secret } : undefined;
        const offsets = resume && this.#offsets.size > 0 ? { offsets: Object.fromEntries(this.#offsets) } : {};
        this.#write(encodeEnvelope({ t: 'hello', ...(this.#options.token ? { token: this.#options.token } : {}), ...(resume ? { resume } : {}), ...offsets }), 'reliable').catch(reject);
      }),
      this.#options.connectTimeoutMs,
      'no welcome from the server',
    );
  }

  #receive(frame: string | Uint8Array, lane: Lane): void {
    this.#lastHeard = Date.now();
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(frame);
    } catch (error) {
      this.#events.emit('error', new ServerError((error as SwitchyardError).code ?? 'ERR_ENVELOPE', (error as Error).message));
      return;
    }
    switch (envelope.t) {
      case 'welcome':
        this.#onWelcome(envelope);
        return;
      case 'message': {
        if (envelope.id !== undefined) {
          const key = `${envelope.from}\u0000${envelope.id}`;
          if (this.#seen.has(key)) return;
          this.#seen.add(key);
          if (envelope.receipt) this.#fire(encodeEnvelope({ t: 'ack', id: envelope.id, to: envelope.from }));
        }
        // The last offset per room and topic it is in (a late delivery after a leave names nothing).
        if (envelope.offset !== undefined && ((envelope.kind === 'room' && this.#rooms.has(envelope.to!)) || (envelope.kind === 'topic' && this.#topics.has(envelope.to!)))) this.#offsets.set(`${envelope.kind}:${envelope.to}`, envelope.offset);
        if (envelope.kind === 'send' && isPeerSignal(envelope.data)) {
          this.#peers.handle(envelope.from, envelope.data);
          return;
        }
        const { t: _t, receipt: _r, ...delivery } = envelope;
        this.#events.emit('message', { ...delivery, lane });
        return;
      }
      case 'ack': {
        if (envelope.from !== undefined) {
          this.#events.emit('receipt', envelope.id, envelope.from);
          return;
        }
        const pending = this.#pending.get(envelope.id);
        if (!pending) return;
        clearTimeout(pending.timer);
        this.#pending.delete(envelope.id);
        if (pending.channel && envelope.offset !== undefined && !this.#offsets.has(pending.channel)) this.#offsets.set(pending.channel, envelope.offset);
        pending.resolve();
        return;
      }
      case 'error': {
        const error = new ServerError(envelope.code, envelope.message, envelope.ref);
        const pending = envelope.ref === undefined ? undefined : this.#pending.get(envelope.ref);
        if (pending && envelope.ref !== undefined) {
          clearTimeout(pending.timer);
          this.#pending.delete(envelope.ref);
          pending.reject(error);
        } else this.#events.emit('error', error);
        return;
      }
      case 'ping':
        this.#fire(encodeEnvelope({ t: 'pong', ts: envelope.ts }));
        return;
      case 'pong': {
        const resolve = this.#pings.get(envelope.ts);
        this.#pings.delete(envelope.ts);
        resolve?.(Date.now() - Math.floor(envelope.ts));
        return;
      }
      default:
        return;
    }
  }

  #onWelcome(welcome: Extract<Envelope, { t: 'welcome' }>): void {
    const resumed = welcome.resumed && welcome.clientId === this.#clientId;
    this.#clientId = welcome.clientId;
    this.#secret = welcome.secret;
    this.#heartbeatMs = welcome.heartbeatMs;
    this.#maxMessageSize = welcome.maxMessageSize;
    const waiter = this.#welcome;
    this.#welcome = undefined;
    if (welcome.recovered !== undefined) this.#events.emit('recovery', welcome.recovered && resumed);
    if (!resumed) {
      // Offsets of another session's histories mean nothing to this one.
      this.#offsets.clear();
      // A fresh session on the server: restore membership before anything else goes out.
      for (const room of this.#rooms) this.#fire(encodeEnvelope({ t: 'join', room }));
      for (const topic of this.#topics) this.#fire(encodeEnvelope({ t: 'subscribe', topic }));
    }
    this.#ready = true;
    // Whatever was not confirmed before the reconnect goes again, in order; ids stop duplicates.
    for (const [id, pending] of this.#pending) this.#transmit(id, pending);
    clearInterval(this.#watchdog);
    this.#watchdog = setInterval(() => this.#checkLiveness(), Math.max(250, this.#heartbeatMs / 2));
    (this.#watchdog as { unref?: () => void }).unref?.();
    waiter?.resolve();
  }

  #checkLiveness(): void {
    // The server pings every heartbeatMs; silence for 2.5 intervals means the path is dead.
    if (this.#connection && Date.now() - this.#lastHeard > this.#heartbeatMs * 2.5) this.#connection.close(4009, 'server silent past the liveness timeout');
  }

  #command(command: Exclude<ClientCommand, { t: 'hello' }>, options: SendOptions = {}, channel?: string): Promise<string | undefined> {
    const lane = options.lane ?? 'reliable';
    if (!options.ack && !options.receipt) {
      const frame = encodeEnvelope(command);
      if (messageSize(frame) > this.#maxMessageSize) return Promise.reject(new MessageTooLargeError(messageSize(frame), this.#maxMessageSize));
      return this.#write(frame, lane).then(() => undefined);
    }
    const id = `${this.#idPrefix}.${this.#nextId++}`;
    const frame = encodeEnvelope({ ...command, id, ...(options.receipt ? { receipt: true } : {}) } as Envelope);
    if (messageSize(frame) > this.#maxMessageSize) return Promise.reject(new MessageTooLargeError(messageSize(frame), this.#maxMessageSize));
    if (!options.ack) return this.#write(frame, lane).then(() => id);
    return new Promise<string>((resolve, reject) => {
      const pending: PendingAck = { frame, lane, attempt: 0, timer: undefined, resolve: () => resolve(id), reject, ...(channel ? { channel } : {}) };
      this.#pending.set(id, pending);
      // Before the welcome (or while reconnecting) it waits: the welcome sends every pending frame.
      if (this.#ready) this.#transmit(id, pending);
    });
  }

  /** Sends (or resends) an acked frame and arms its retry timer with exponential backoff. */
  #transmit(id: string, pending: PendingAck): void {
    clearTimeout(pending.timer);
    if (pending.attempt >= this.#options.maxAttempts) {
      this.#pending.delete(id);
      pending.reject(new SwitchyardError('ERR_ACK_TIMEOUT', `no receipt for ${id} after ${pending.attempt} attempts`));
      return;
    }
    pending.attempt++;
    this.#write(pending.frame, pending.lane).catch((error: unknown) => {
      // A lost connection is what the retry timer is for; a refusal (size, lane) would fail every time.
      if (error instanceof ConnectionClosedError || this.#pending.get(id) !== pending) return;
      clearTimeout(pending.timer);
      this.#pending.delete(id);
      pending.reject(error as Error);
    });
    const delay = this.#options.ackTimeoutMs * 2 ** (pending.attempt - 1);
    pending.timer = setTimeout(() => this.#transmit(id, pending), delay * (0.9 + Math.random() * 0.2));
  }

  /**
   * Writes one frame; when the transport's queue is full ('refused') waits for drain and retries.
   * Never throws: a closed connection or a transport's refusal (lane, size) is a rejection.
   */
  #write(frame: string | Uint8Array, lane: Lane): Promise<void> {
    const connection = this.#connection;
    if (!connection || connection.state !== 'open') return Promise.reject(new ConnectionClosedError(connection?.state ?? 'not connected'));
    try {
      if (connection.send(frame, lane) === 'refused') return connection.drained().then(() => this.#write(frame, lane));
    } catch (error) {
      return Promise.reject(error);
    }
    return Promise.resolve();
  }

  /** Protocol housekeeping (pong, receipts, re-joins): a failure surfaces as the connection's close. */
  #fire(frame: string | Uint8Array): void {
    this.#write(frame, 'reliable').catch(() => undefined);
  }

  #lost(connection: Connection, info: CloseInfo): void {
    if (connection !== this.#connection) return;
    this.#ready = false;
    this.#welcome?.reject(new ConnectError(`closed before welcome: ${info.code} ${info.reason}`));
    this.#welcome = undefined;
    clearInterval(this.#watchdog);
    for (const pending of this.#pending.values()) clearTimeout(pending.timer);
    if (this.#state === 'closed' || this.#establishing) return;
    // The server said goodbye on purpose (policy, auth, shutdown): don't hammer it.
    const deliberate = info.wasClean && (info.code === 1000 || info.code === 1008);
    if (!this.#options.reconnect || deliberate) {
      this.close(info.code, info.reason);
      this.#events.emit('close', info);
      return;
    }
    this.#setState('reconnecting');
    void this.#reconnect(0);
  }

  async #reconnect(attempt: number): Promise<void> {
    const delay = Math.min(MAX_RECONNECT_DELAY_MS, 100 * 2 ** attempt) * (0.5 + Math.random() / 2);
    await new Promise((resolve) => setTimeout(resolve, delay));
    if (this.#state !== 'reconnecting') return;
    try {
      await this.#establish();
      this.#setState('open');
    } catch {
      void this.#reconnect(attempt + 1);
    }
  }

  #setState(state: ClientState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#events.emit('state', state);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ConnectError(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
