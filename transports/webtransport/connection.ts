/**
 * The `webtransport` transport's Connection, shared by both sides: it runs over a W3C-shaped
 * WebTransport session — the browser's native `WebTransport`, our Node client, or a server session
 * of our engine — so the same code serves client and server.
 *
 * Lanes on the wire:
 * - every bidirectional stream begins with one framed text message naming its lane
 *   (`reliable` or `channel:<name>`), then carries framed messages (codec/message-framing.ts);
 *   the client opens the `reliable` stream when it connects, either side opens a channel's stream
 *   the first time it sends on that channel, and the peer answers on the same stream;
 * - `unreliable` messages are datagrams: one byte (0 text, 1 binary) and the payload. A message
 *   larger than the session's datagram limit is refused with MessageTooLargeError, never split.
 *
 * Closing: the side that closes ends each lane's stream after what it wrote (FIN); the peer reads
 * to that end, writes what it still had queued for the lane and ends its side in turn; once every
 * lane came back (or CLOSE_GRACE_MS passed) the closer closes the session. Closing the session at
 * once would lose what is in flight: the CLOSE_WEBTRANSPORT_SESSION capsule travels on the CONNECT
 * stream, can overtake the lanes' data, and the peer resets every stream of a closed session.
 */
import { ReadingGate } from '../reading-gate.ts';
import { concatBytes } from '../codec/bytes.ts';
import { BaseConnection, DEFAULT_MAX_MESSAGE_SIZE, WIRE_BUFFER_LIMIT, type QueuedMessage } from '../base-connection.ts';
import { frameMessage, framePrepared, MessageDeframer } from '../codec/message-framing.ts';
import { ProtocolError } from '../errors.ts';
import type { BidirectionalStream, DirectStream, DirectStreamSink } from './direct-stream.ts';
import { w3cDirectStream } from './w3c-stream.ts';
import type { PreparedMessage } from '../prepared-message.ts';
import type { BackpressureOptions, Lane, Message, TransportCapabilities, TransportStats } from '../transport.ts';
import { CloseCode } from '../transport.ts';

/** Engine statistics, where the session offers them synchronously (our Node engine does). */
export interface SessionStats {
  smoothedRttMs: number | null;
  packetsLost: number;
  packetsRetransmitted: number;
  bytesSent: number;
  bytesReceived: number;
  datagramsDropped?: number;
}

/** The part of the W3C `WebTransport` interface this transport uses. */
export interface WebTransportSessionLike {
  readonly ready: Promise<void>;
  readonly closed: Promise<{ closeCode?: number; reason?: string }>;
  readonly datagrams: {
    readonly readable: ReadableStream<Uint8Array>;
    readonly writable: WritableStream<Uint8Array>;
    readonly maxDatagramSize?: number;
  };
  createBidirectionalStream(): Promise<BidirectionalStream>;
  readonly incomingBidirectionalStreams: ReadableStream<BidirectionalStream>;
  close(info?: { closeCode?: number; reason?: string }): void;
  /** Our engine's synchronous stats (the browser's getStats() is async and differs). */
  getStats?(): SessionStats | undefined;
  /**
   * Our engine's direct datagram path (browsers have none): datagrams in by callback and out by a
   * call, with no Web-streams queue and promise per datagram. Used once the session is ready.
   */
  onDatagram?: ((payload: Uint8Array) => void) | undefined;
  sendDatagram?(payload: Uint8Array): boolean;
  /** Our engine's direct streams (browsers have none): a stream this side opens. */
  openDirectStream?(sink: DirectStreamSink): DirectStream;
  /** Our engine's direct streams: every stream the peer opens from now on, instead of `incomingBidirectionalStreams`. */
  acceptDirectStreams?(accept: (stream: DirectStream) => DirectStreamSink): void;
}

/** Datagram payload when the session does not say (QUIC's safe minimum minus headers). */
const DEFAULT_MAX_DATAGRAM = 1100;
/** Datagram writes handed to the session and not yet settled, beyond which datagrams are dropped. */
const MAX_DATAGRAMS_IN_FLIGHT = 256;
/** Datagrams the direct path holds while reading is paused, beyond which they are dropped (counted). */
const PAUSED_DATAGRAMS = 256;
/** How long a closing side waits for the peer to end its lanes before closing the session anyway. */
const CLOSE_GRACE_MS = 2_000;
const DATAGRAM_TEXT = 0;
const DATAGRAM_BINARY = 1;
const decoder = new TextDecoder('utf-8', { fatal: true });

interface LaneStream {
  /** This side's stream of the lane: undefined while it is being opened and once this side ended it. */
  stream: DirectStream | undefined;
  /** Set while a browser's stream is being opened; messages wait in the outbound queue meanwhile. */
  opening: Promise<void> | undefined;
  /** Settles when the peer has ended its side of the lane's stream (or the stream failed). */
  readEnded: Promise<void>;
}

/** One stream's reading: its sink, and the stream (known right after its sink is made). */
interface StreamReader {
  sink: DirectStreamSink;
  stream: DirectStream | undefined;
  /** Settles when the stream's reading ended (the peer's FIN, a failure, a protocol error). */
  ended: Promise<void>;
}

export interface WebTransportConnectionOptions {
  role: 'client' | 'server';
  backpressure?: BackpressureOptions | undefined;
  laneFallback?: 'error' | 'reliable' | undefined;
  maxMessageSize?: number | undefined;
}

export class WebTransportConnection extends BaseConnection {
  readonly transport = 'webtransport' as const;
  capabilities: TransportCapabilities;
  /** Set once the session exists (the client may first fetch the server's certificate hash). */
  #session: WebTransportSessionLike | undefined;
  readonly #role: 'client' | 'server';
  readonly #lanes = new Map<Lane, LaneStream>();
  #datagramWriter: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #datagramsInFlight = 0;
  /** Direct path only: datagrams that arrived while reading was paused. */
  #pausedDatagrams: Uint8Array[] = [];
  #requestedClose: { code: number; reason: string } | undefined;
  /** While reading is paused: settles when it resumes (or the connection closes). */
  readonly #reading = new ReadingGate(this.closed);

  constructor(session: WebTransportSessionLike | Promise<WebTransportSessionLike>, options: WebTransportConnectionOptions) {
    super({ backpressure: options.backpressure, laneFallback: options.laneFallback, defaultPolicy: options.role === 'server' ? 'disconnect' : 'wait' });
    this.#role = options.role;
    this.capabilities = {
      unreliable: true,
      independentChannels: true,
      serverPush: true,
      binary: true,
      maxMessageSize: options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
      maxUnreliableSize: DEFAULT_MAX_DATAGRAM - 1,
    };
    void this.#start(session);
  }

  override stats(): TransportStats {
    const stats = super.stats();
    const engine = this.#session?.getStats?.();
    if (engine) {
      stats.rttMs = engine.smoothedRttMs;
      stats.packetsLost = engine.packetsLost;
      stats.packetsRetransmitted = engine.packetsRetransmitted;
      stats.wireBytesIn = engine.bytesReceived;
      stats.wireBytesOut = engine.bytesSent;
    }
    return stats;
  }

  async #start(pending: WebTransportSessionLike | Promise<WebTransportSessionLike>): Promise<void> {
    try {
      // A session at hand is taken now, before a stream of it can arrive.
      const session = pending instanceof Promise ? await pending : pending;
      this.#session = session;
      if (this.state === 'closing') {
        session.close({ closeCode: this.#requestedClose?.code, reason: this.#requestedClose?.reason });
      }
      void session.closed.then(
        (info) => this.#ended({ code: info.closeCode ?? CloseCode.normal, reason: info.reason ?? '', wasClean: true }),
        (error: unknown) => this.#ended({ code: CloseCode.abnormal, reason: errorText(error), wasClean: false }),
      );
      if (session.acceptDirectStreams) session.acceptDirectStreams((stream) => this.#laneReader(undefined, stream).sink);
      await session.ready;
      // Known only once the session is up; a datagram carries one type byte before the payload.
      const maxDatagram = session.datagrams.maxDatagramSize;
      if (maxDatagram) this.capabilities = { ...this.capabilities, maxUnreliableSize: maxDatagram - 1 };
      if (session.sendDatagram) session.onDatagram = (datagram) => this.#datagramArrived(datagram);
      else {
        this.#datagramWriter = session.datagrams.writable.getWriter();
        void this.#readDatagrams();
      }
      if (!session.acceptDirectStreams) void this.#acceptStreams();
      // The client opens the reliable lane; the server is open once that stream arrives.
      if (this.#role === 'client') {
        await this.#openLane('reliable');
        this.markOpen();
      }
    } catch (error) {
      this.#ended({ code: CloseCode.abnormal, reason: `webtransport session failed: ${errorText(error)}`, wasClean: false });
    }
  }

  /**
   * Each lane drains on its own: a channel whose stream is still opening or has WIRE_BUFFER_LIMIT
   * bytes not yet taken by QUIC holds back only its own messages (independent channels on the
   * sending side too); datagrams never wait.
   */
  protected flush(): void {
    for (const name of this.outbound.lanes()) {
      if (name === 'unreliable') {
        for (let item; (item = this.outbound.shiftLane(name)); ) this.#sendDatagram(item);
        continue;
      }
      const lane = this.#lanes.get(name);
      if (!lane) {
        void this.#openLane(name).then(() => this.requestFlush(), (error: unknown) => this.#fail(error));
        continue;
      }
      if (lane.stream) this.#writeLane(lane, name);
    }
    this.onFlushed();
  }

  /**
   * Paused, a stream's reader keeps what is left of its chunk and stops reading the stream: bytes wait
   * in QUIC, stream and connection credit run out, and the peer's writes wait (the publisher is
   * slowed, nothing lost).
   * Datagrams are not flow-controlled: their reader pauses too, and what overflows is dropped.
   */
  protected override setReadingPaused(paused: boolean): void {
    if (paused) this.#reading.pause(() => this.setReadingPaused(false));
    else if (this.#reading.resume()) {
      const held = this.#pausedDatagrams;
      this.#pausedDatagrams = [];
      for (const datagram of held) this.#receiveDatagram(datagram);
    }
  }

  protected override sinkBufferedBytes(): number {
    let bytes = 0;
    for (const lane of this.#lanes.values()) bytes += lane.stream?.queued ?? 0;
    return bytes;
  }

  protected closeTransport(code: number, reason: string): void {
    this.#requestedClose = { code, reason };
    // Without a session yet, #start closes it as soon as it exists.
    const session = this.#session;
    if (!session) return;
    if (code === CloseCode.slowConsumer) {
      // The consumer is being dropped for not reading: its backlog would never arrive (as on websocket).
      this.counters.dropped += this.outbound.length;
      this.outbound.clear();
    } else {
      // What was sent before close() goes out before the lanes end.
      for (const name of this.outbound.lanes()) this.#writeAll(name);
    }
    void this.#closeAfterLanes(session, code, reason);
  }

  /** Ends every lane's stream, waits (bounded) for the peer to end its side of each, then closes the session. */
  async #closeAfterLanes(session: WebTransportSessionLike, code: number, reason: string): Promise<void> {
    const lanes = [...this.#lanes.values()].filter((lane) => lane.stream);
    for (const lane of lanes) {
      lane.stream!.end();
      lane.stream = undefined;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([Promise.all(lanes.map((lane) => lane.readEnded)), new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
    clearTimeout(timer);
    session.close({ closeCode: code, reason });
  }

  /** Hands everything queued for a lane to the wire now, whatever is in flight; what cannot go (no stream yet) is counted dropped. */
  #writeAll(name: Lane): void {
    const lane = this.#lanes.get(name);
    if (name === 'unreliable') for (let item; (item = this.outbound.shiftLane(name)); ) this.#sendDatagram(item);
    else if (lane?.stream) this.#writeLane(lane, name, Infinity);
    for (; this.outbound.shiftLane(name); ) this.counters.dropped++;
  }

  /**
   * What a lane may send now, framed into one buffer per write rather than one per message: batches
   * go out while the stream takes them at once (QUIC credit), until `limit` bytes wait in it.
   */
  #writeLane(lane: LaneStream, name: Lane, limit = WIRE_BUFFER_LIMIT): void {
    const stream = lane.stream!;
    while (stream.queued < limit) {
      const frames: Uint8Array[] = [];
      let bytes = 0;
      for (let item; stream.queued + bytes < limit && (item = this.outbound.shiftLane(name)); ) {
        // Framed once per message, however many connections send it.
        const frame = item.prepared.framed(framePrepared);
        frames.push(frame);
        bytes += frame.length;
        this.countSent(item.prepared);
      }
      if (frames.length === 0) return;
      stream.write(frames.length === 1 ? frames[0]! : concatBytes(frames, bytes));
    }
  }

  #sendDatagram(item: QueuedMessage): void {
    const session = this.#session;
    const writer = this.#datagramWriter;
    const direct = session?.sendDatagram !== undefined;
    // Datagrams never wait: past a bounded number of unsettled writes the message is dropped and
    // counted. (The writer's desiredSize is no guide: with the default high-water mark of one it is
    // 0 as soon as a single write is in flight, which dropped all but the first of a burst.)
    if (!direct && (!writer || this.#datagramsInFlight >= MAX_DATAGRAMS_IN_FLIGHT)) {
      this.counters.dropped++;
      return;
    }
    const datagram = item.prepared.framed(datagramOf);
    this.countSent(item.prepared);
    // A full QUIC send queue drops it there (counted in the session's stats).
    if (direct) return void session.sendDatagram!(datagram);
    this.#datagramsInFlight++;
    writer!.write(datagram).then(this.#datagramSettled, this.#datagramSettled);
  }

  /** One callback for every datagram write (no closure per datagram). */
  readonly #datagramSettled = (): void => {
    this.#datagramsInFlight--;
  };

  /** Opens this side's stream for a lane and announces the lane on it. */
  #openLane(name: Lane): Promise<void> {
    const existing = this.#lanes.get(name);
    if (existing?.opening) return existing.opening;
    const lane: LaneStream = { stream: undefined, opening: undefined, readEnded: Promise.resolve() };
    this.#lanes.set(name, lane);
    const session = this.#session!;
    const reader = this.#laneReader(name, undefined);
    const opened = (stream: DirectStream): void => {
      reader.stream = lane.stream = stream;
      lane.opening = undefined;
      lane.readEnded = reader.ended;
      stream.write(frameMessage(name));
    };
    if (session.openDirectStream) {
      try {
        opened(session.openDirectStream(reader.sink));
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error))); // the session is closed
      }
      return Promise.resolve();
    }
    lane.opening = session.createBidirectionalStream().then((stream) => opened(w3cDirectStream(stream, reader.sink)));
    return lane.opening;
  }

  /** A browser's session: the streams the peer opens, read as direct streams. */
  async #acceptStreams(): Promise<void> {
    const reader = this.#session!.incomingBidirectionalStreams.getReader();
    try {
      for (;;) {
        const { value: stream, done } = await reader.read();
        if (done) return;
        const streamReader = this.#laneReader(undefined, undefined);
        streamReader.stream = w3cDirectStream(stream, streamReader.sink);
      }
    } catch {
      // The session ended; `closed` reports how.
    }
  }

  /**
   * Reads one stream's framed messages. A stream the peer opened starts with its lane's name
   * (`knownLane` undefined); it becomes our way to answer on that lane. One chunk can carry
   * thousands of messages, more than a recipient's queue holds: while reading is paused, what is
   * left of a chunk waits and the stream is not read (flow control then holds the peer back).
   * When the peer ends the stream (it is closing), this side's queued messages for the lane
   * follow and this side of the stream ends too.
   */
  #laneReader(knownLane: Lane | undefined, stream: DirectStream | undefined): StreamReader {
    const deframer = new MessageDeframer(this.capabilities.maxMessageSize);
    let lane = knownLane;
    /** The lane this stream carries our side of (undefined for a peer's second stream of a lane we already have). */
    let mine = knownLane === undefined ? undefined : this.#lanes.get(knownLane);
    /** While reading is paused: the messages not yet delivered, and the end that came after them. */
    let held: Message[] | undefined;
    let heldEnd: Error | null | undefined;
    let finished = false;
    let readEnded!: () => void;
    const reader: StreamReader = { sink: undefined!, stream, ended: new Promise<void>((resolve) => (readEnded = resolve)) };

    const take = (messages: Message[]): void => {
      try {
        for (let i = 0; i < messages.length; i++) {
          if (this.#reading.paused) {
            held = messages.slice(i);
            reader.stream?.setReading(false);
            void this.#reading.paused.then(resume);
            return;
          }
          const message = messages[i]!;
          if (lane !== undefined) {
            this.deliver(message, lane);
            continue;
          }
          lane = parseLaneHeader(message);
          if (!this.#lanes.has(lane)) {
            mine = { stream: reader.stream, opening: undefined, readEnded: reader.ended };
            this.#lanes.set(lane, mine);
          }
          if (lane === 'reliable' && this.#role === 'server') this.markOpen();
          if (this.outbound.length > 0) this.requestFlush();
        }
      } catch (error) {
        finish(null, error);
      }
    };
    const resume = (): void => {
      const messages = held;
      held = undefined;
      if (!messages || finished) return;
      take(messages);
      if (held) return; // paused again
      reader.stream?.setReading(true);
      if (heldEnd !== undefined) finish(heldEnd, undefined);
    };
    const finish = (end: Error | null, protocolError: unknown): void => {
      if (finished) return;
      finished = true;
      readEnded();
      if (protocolError !== undefined) {
        if (protocolError instanceof ProtocolError) this.close(protocolError.closeCode ?? CloseCode.protocolError, protocolError.message);
        return;
      }
      if (end !== null) return; // reset, or the session is gone: its close reports it
      if (!mine) reader.stream?.end();
      else if (mine.stream) {
        this.#writeAll(lane!);
        mine.stream.end();
        mine.stream = undefined;
      }
    };
    reader.sink = {
      data: (bytes) => {
        if (finished) return;
        let messages: Message[];
        try {
          messages = deframer.push(bytes);
        } catch (error) {
          return finish(null, error);
        }
        if (held) held = held.concat(messages);
        else take(messages);
      },
      end: (error) => {
        if (held) heldEnd = error;
        else finish(error, undefined);
      },
      writable: () => {
        this.onFlushed();
        if (this.outbound.length > 0) this.requestFlush();
      },
    };
    return reader;
  }

  async #readDatagrams(): Promise<void> {
    const reader = this.#session!.datagrams.readable.getReader();
    try {
      for (;;) {
        if (this.#reading.paused) await this.#reading.paused;
        const { value, done } = await reader.read();
        if (done) return;
        this.#receiveDatagram(value);
      }
    } catch {
      // Session over.
    }
  }

  /** The direct path's datagrams: held (bounded) while reading is paused, as the reader above does. */
  #datagramArrived(datagram: Uint8Array): void {
    if (!this.#reading.paused) return this.#receiveDatagram(datagram);
    if (this.#pausedDatagrams.length < PAUSED_DATAGRAMS) this.#pausedDatagrams.push(datagram);
    else this.counters.dropped++;
  }

  #receiveDatagram(value: Uint8Array): void {
    if (value.length === 0 || value[0]! > DATAGRAM_BINARY) return; // not ours: ignore, datagrams may be lost anyway
    // Before the reliable stream opens the session is no connection yet (no hello can be
    // decided): what arrives now is dropped, as a datagram may be.
    if (this.state !== 'open') {
      this.counters.dropped++;
      return;
    }
    const payload = value.subarray(1);
    if (value[0] === DATAGRAM_BINARY) this.deliver(payload.slice(), 'unreliable');
    else {
      try {
        this.deliver(decoder.decode(payload), 'unreliable');
      } catch {
        this.counters.dropped++;
      }
    }
  }

  #fail(error: unknown): void {
    this.close(CloseCode.internalError, `webtransport stream failed: ${errorText(error)}`);
  }

  #ended(info: { code: number; reason: string; wasClean: boolean }): void {
    // This side's own close is reported with the code it asked for.
    this.finishClose(this.#requestedClose && info.wasClean ? { ...this.#requestedClose, wasClean: true } : info);
  }
}

/** A prepared message as one datagram (a type byte, then its bytes), built once for all its recipients. */
function datagramOf(prepared: PreparedMessage): Uint8Array {
  const datagram = new Uint8Array(prepared.size + 1);
  datagram[0] = prepared.text ? DATAGRAM_TEXT : DATAGRAM_BINARY;
  datagram.set(prepared.bytes, 1);
  return datagram;
}

function parseLaneHeader(message: Message): Lane {
  if (typeof message === 'string' && (message === 'reliable' || (message.startsWith('channel:') && message.length > 8))) return message as Lane;
  throw new ProtocolError('ERR_BAD_LANE_HEADER', 'a webtransport stream must begin with its lane name');
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
