/**
 * The shared core of every Connection: one place that owns the lifecycle state, the bounded
 * outbound queue with its slow-consumer policy, lane checks, counters and events. Each transport
 * subclass only moves bytes: it implements `flush()` (hand queued messages to its wire while the
 * wire accepts them) and `closeTransport()`, and reports arrivals with `deliver()` and the end with
 * `finishClose()`. Runs in Node and in the browser.
 */
import { utf8Length } from './codec/utf8.ts';
import { Emitter } from './emitter.ts';
import { prepare, type PreparedMessage } from './prepared-message.ts';
import { ConnectionClosedError, LaneUnsupportedError, MessageTooLargeError } from './errors.ts';
import type {
  BackpressureOptions,
  CloseInfo,
  Connection,
  ConnectionEvents,
  ConnectionState,
  Lane,
  Message,
  SendOutcome,
  SlowConsumerPolicy,
  TransportCapabilities,
  TransportName,
  TransportStats,
} from './transport.ts';
import { CloseCode } from './transport.ts';

export const DEFAULT_HIGH_WATER_MARK = 1024 * 1024;
export const DEFAULT_MAX_QUEUED_BYTES = 16 * 1024 * 1024;
export const DEFAULT_MAX_MESSAGE_SIZE = 2 * 1024 * 1024;
/**
 * Bytes a connection hands to its wire (a socket's buffer, a stream's writer) and not yet taken by
 * the OS or the QUIC stack, above which it stops handing more: the rest waits in the bounded
 * queue, where the slow-consumer policy sees it.
 */
export const WIRE_BUFFER_LIMIT = 256 * 1024;

/** One queued outbound message: the prepared message (shared with its other recipients) and its lane. */
export interface QueuedMessage {
  readonly prepared: PreparedMessage;
  readonly lane: Lane;
}

export function messageSize(message: Message): number {
  return typeof message === 'string' ? utf8Length(message) : message.byteLength;
}

/** Messages a lane's FIFO has room for at first, and again when it empties. */
const FIFO_INITIAL_CAPACITY = 16;
/** A FIFO that empties holding room for more than this many goes back to its initial size. */
const FIFO_KEPT_CAPACITY = 1024;

/**
 * One lane's messages, oldest first, each with its sequence number across all lanes: a ring buffer
 * of (message, sequence) pairs laid side by side in one array. Pushing allocates nothing (a fan-out
 * pushes to every recipient's FIFO), and the array is reused, so a FIFO that fills and empties
 * every turn costs no garbage. It doubles when full and shrinks when it empties from a burst, so
 * one burst does not hold memory for good.
 */
class LaneFifo {
  /** [message, sequence] pairs; its length is twice the capacity, a power of two. */
  #slots: (PreparedMessage | number | undefined)[] = new Array<PreparedMessage | number | undefined>(FIFO_INITIAL_CAPACITY * 2);
  /** Index of the oldest pair's message. */
  #head = 0;
  length = 0;

  push(prepared: PreparedMessage, sequence: number): void {
    if (this.length * 2 === this.#slots.length) this.#grow();
    const at = (this.#head + this.length * 2) & (this.#slots.length - 1);
    this.#slots[at] = prepared;
    this.#slots[at + 1] = sequence;
    this.length++;
  }

  /** The oldest message (undefined when empty). */
  peek(): PreparedMessage | undefined {
    return this.length > 0 ? (this.#slots[this.#head] as PreparedMessage) : undefined;
  }

  /** The oldest message's sequence number (Infinity when empty). */
  peekSequence(): number {
    return this.length > 0 ? (this.#slots[this.#head + 1] as number) : Infinity;
  }

  shift(): PreparedMessage | undefined {
    if (this.length === 0) return undefined;
    const prepared = this.#slots[this.#head] as PreparedMessage;
    this.#slots[this.#head] = undefined;
    this.#head = (this.#head + 2) & (this.#slots.length - 1);
    if (--this.length === 0) {
      this.#head = 0;
      if (this.#slots.length > FIFO_KEPT_CAPACITY * 2) this.#slots = new Array<PreparedMessage | number | undefined>(FIFO_INITIAL_CAPACITY * 2);
    }
    return prepared;
  }

  /** Doubles the ring, its pairs moved to the start in order. */
  #grow(): void {
    const size = this.#slots.length;
    const slots = new Array<PreparedMessage | number | undefined>(size * 2);
    for (let i = 0; i < size; i++) slots[i] = this.#slots[(this.#head + i) & (size - 1)];
    this.#slots = slots;
    this.#head = 0;
  }
}

/**
 * The bounded outbound queue: one FIFO per lane, so a lane that cannot take more (a channel's
 * stream out of flow-control credit) holds back only its own messages, with byte accounting over
 * all of them. `peek`/`shift` give the oldest message of any lane — what single-lane transports and
 * the drop-oldest policy use; `shiftLane` serves one lane; `shiftPrepared` gives the oldest message
 * alone, for a transport with one lane, without a QueuedMessage made for it.
 */
export class OutboundQueue {
  readonly #lanes = new Map<Lane, LaneFifo>();
  /** The first lane's FIFO (the only one while `#lanes.size` is 1), and that lane. */
  #single: LaneFifo | undefined;
  #singleLane: Lane | undefined;
  #pushed = 0;
  #length = 0;
  bytes = 0;

  get length(): number {
    return this.#length;
  }

  /** Lanes that hold messages, in the order they were first used. */
  lanes(): Lane[] {
    const waiting: Lane[] = [];
    for (const [lane, fifo] of this.#lanes) if (fifo.length > 0) waiting.push(lane);
    return waiting;
  }

  push(prepared: PreparedMessage, lane: Lane): void {
    // Most connections only ever use one lane: no map lookup for it (this runs once per delivery).
    let fifo = lane === this.#singleLane ? this.#single : this.#lanes.get(lane);
    if (!fifo) {
      this.#lanes.set(lane, (fifo = new LaneFifo()));
      if (!this.#single) {
        this.#single = fifo;
        this.#singleLane = lane;
      }
    }
    fifo.push(prepared, this.#pushed++);
    this.#length++;
    this.bytes += prepared.size;
  }

  peek(): QueuedMessage | undefined {
    const lane = this.#oldestLane();
    const prepared = lane === undefined ? undefined : this.#fifo(lane).peek();
    return prepared && { prepared, lane: lane! };
  }

  shift(): QueuedMessage | undefined {
    const lane = this.#oldestLane();
    if (lane === undefined) return undefined;
    return { prepared: this.#take(this.#fifo(lane))!, lane };
  }

  shiftPrepared(): PreparedMessage | undefined {
    const lane = this.#oldestLane();
    return lane === undefined ? undefined : this.#take(this.#fifo(lane));
  }

  shiftLane(lane: Lane): QueuedMessage | undefined {
    const fifo = this.#lanes.get(lane);
    const prepared = fifo && this.#take(fifo);
    return prepared && { prepared, lane };
  }

  clear(): void {
    this.#lanes.clear();
    this.#single = undefined;
    this.#singleLane = undefined;
    this.#length = 0;
    this.bytes = 0;
  }

  #fifo(lane: Lane): LaneFifo {
    return lane === this.#singleLane ? this.#single! : this.#lanes.get(lane)!;
  }

  /** The lane whose head is the oldest message, or undefined when all are empty. */
  #oldestLane(): Lane | undefined {
    if (this.#length === 0) return undefined;
    // Most connections only ever use one lane: skip the scan (it runs once per message sent).
    if (this.#lanes.size === 1) return this.#singleLane;
    let oldest: Lane | undefined;
    let sequence = Infinity;
    for (const [lane, fifo] of this.#lanes) {
      const head = fifo.peekSequence();
      if (head < sequence) {
        sequence = head;
        oldest = lane;
      }
    }
    return oldest;
  }

  #take(fifo: LaneFifo): PreparedMessage | undefined {
    const prepared = fifo.shift();
    if (!prepared) return undefined;
    this.#length--;
    this.bytes -= prepared.size;
    return prepared;
  }
}

export interface BaseConnectionOptions {
  backpressure?: BackpressureOptions | undefined;
  laneFallback?: 'error' | 'reliable' | undefined;
  /** Default slow-consumer policy when `backpressure.policy` is not given. */
  defaultPolicy: SlowConsumerPolicy;
  /**
   * When queued messages are flushed: 'microtask' (default) right after the code that sent them;
   * 'after-io' once this event-loop turn has handled all its I/O (Node's setImmediate), so what
   * every socket read of the turn routed to this connection leaves in one batch — a server's
   * fan-out under load then needs far fewer writes.
   */
  flushTiming?: 'microtask' | 'after-io';
}

/**
 * Flushes waiting for the end of this turn's I/O, run together in one setImmediate: one callback
 * for any number of connections. A list, not a set: a connection's #flushScheduled keeps it from
 * being added twice. The list is swapped, not copied, before it runs (a flush may schedule the next).
 */
let flushesAfterIo: (() => void)[] = [];
function runFlushesAfterIo(): void {
  const due = flushesAfterIo;
  flushesAfterIo = [];
  for (let i = 0; i < due.length; i++) due[i]!();
}

/**
 * Runs `callback` once this turn's I/O has been handled: Node's setImmediate; where there is none
 * (browsers), a zero-delay timer, which also runs after pending I/O events. Looked up per call, so
 * test fake timers see it.
 */
function afterIo(callback: () => void): void {
  const setImmediate = (globalThis as { setImmediate?: (callback: () => void) => unknown }).setImmediate;
  if (setImmediate) setImmediate(callback);
  else setTimeout(callback, 0);
}

export abstract class BaseConnection implements Connection {
  abstract readonly transport: TransportName;
  abstract readonly capabilities: TransportCapabilities;
  readonly opened: Promise<void>;
  readonly closed: Promise<CloseInfo>;

  protected readonly events = new Emitter<ConnectionEvents>();
  protected readonly outbound = new OutboundQueue();
  protected readonly counters: TransportStats = {
    messagesIn: 0,
    messagesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    wireBytesIn: null,
    wireBytesOut: null,
    rttMs: null,
    dropped: 0,
    laneDowngrades: 0,
    packetsLost: null,
    packetsRetransmitted: null,
  };

  #state: ConnectionState = 'connecting';
  #everOpened = false;
  #resolveOpened!: () => void;
  #rejectOpened!: (error: Error) => void;
  #resolveClosed!: (info: CloseInfo) => void;
  #drainWaiters: { resolve: () => void; reject: (error: Error) => void }[] = [];
  #aboveHighWater = false;
  #flushScheduled = false;
  readonly #flushAfterIo: boolean;
  readonly #highWaterMark: number;
  readonly #maxQueuedBytes: number;
  readonly #policy: SlowConsumerPolicy;
  readonly #laneFallback: 'error' | 'reliable';

  constructor(options: BaseConnectionOptions) {
    this.#highWaterMark = options.backpressure?.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
    this.#maxQueuedBytes = options.backpressure?.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.#policy = options.backpressure?.policy ?? options.defaultPolicy;
    this.#laneFallback = options.laneFallback ?? 'error';
    this.#flushAfterIo = options.flushTiming === 'after-io';
    this.opened = new Promise<void>((resolve, reject) => {
      this.#resolveOpened = resolve;
      this.#rejectOpened = reject;
    });
    // An unobserved rejection of `opened` is not an error: `closed` tells the story.
    this.opened.catch(() => undefined);
    this.closed = new Promise<CloseInfo>((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  get state(): ConnectionState {
    return this.#state;
  }

  get queued(): { bytes: number; messages: number } {
    return { bytes: this.outbound.bytes + this.sinkBufferedBytes(), messages: this.outbound.length };
  }

  get writable(): boolean {
    return this.outbound.bytes + this.sinkBufferedBytes() < this.#highWaterMark;
  }

  on<E extends keyof ConnectionEvents>(event: E, listener: ConnectionEvents[E]): () => void {
    return this.events.on(event, listener);
  }

  stats(): TransportStats {
    return { ...this.counters };
  }

  send(message: Message | PreparedMessage, lane: Lane = 'reliable'): SendOutcome {
    if (this.#state === 'closing' || this.#state === 'closed') throw new ConnectionClosedError(this.#state);
    const effectiveLane = this.#resolveLane(lane);
    const prepared = prepare(message);
    const size = prepared.size;
    const limit = effectiveLane === 'unreliable' ? this.capabilities.maxUnreliableSize : this.capabilities.maxMessageSize;
    if (size > limit) throw new MessageTooLargeError(size, limit, effectiveLane === 'unreliable' ? 'unreliable message' : 'message');

    if (this.outbound.bytes + size > this.#maxQueuedBytes) {
      switch (this.#policy) {
        case 'wait':
          return 'refused';
        case 'drop-newest':
          this.counters.dropped++;
          return 'dropped';
        case 'drop-oldest':
          while (this.outbound.length > 0 && this.outbound.bytes + size > this.#maxQueuedBytes) {
            this.outbound.shiftPrepared();
            this.counters.dropped++;
          }
          if (size > this.#maxQueuedBytes) {
            this.counters.dropped++;
            return 'dropped';
          }
          break;
        case 'disconnect':
          this.close(CloseCode.slowConsumer, 'slow consumer: outbound queue over its limit');
          return 'disconnected';
      }
    }
    this.outbound.push(prepared, effectiveLane);
    if (!this.#aboveHighWater && !this.writable) this.#aboveHighWater = true;
    this.#scheduleFlush();
    return 'queued';
  }

  drained(): Promise<void> {
    if (this.#state === 'closed') return Promise.reject(new ConnectionClosedError('closed'));
    if (this.writable) return Promise.resolve();
    return new Promise((resolve, reject) => this.#drainWaiters.push({ resolve, reject }));
  }

  close(code: number = CloseCode.normal, reason = ''): void {
    if (this.#state === 'closing' || this.#state === 'closed') return;
    this.#state = 'closing';
    this.closeTransport(code, reason);
  }

  pauseReading(): void {
    this.setReadingPaused(true);
  }

  resumeReading(): void {
    this.setReadingPaused(false);
  }

  /** Subclass: stop (or restart) reading from the peer; the default cannot, and ignores it. */
  protected setReadingPaused(_paused: boolean): void {}

  /** Hands queued messages to the wire while it accepts them; call `onFlushed()` after writing. */
  protected abstract flush(): void;

  /** Starts closing the wire with this code and reason; must end in `finishClose()`. */
  protected abstract closeTransport(code: number, reason: string): void;

  /** Bytes written to the wire but not yet sent by the OS/stack; counted in `queued.bytes`. */
  protected sinkBufferedBytes(): number {
    return 0;
  }

  /** Subclass: the connection is open. */
  protected markOpen(): void {
    if (this.#state !== 'connecting') return;
    this.#everOpened = true;
    this.#state = 'open';
    this.#resolveOpened();
    this.events.emit('open');
    if (this.outbound.length > 0) this.#scheduleFlush();
  }

  /** Subclass: one whole message arrived. */
  protected deliver(message: Message, lane: Lane = 'reliable'): void {
    if (this.#state === 'closed') return;
    this.counters.messagesIn++;
    this.counters.bytesIn += messageSize(message);
    this.events.emit('message', message, lane);
  }

  /** Subclass: count one message handed to the wire. */
  protected countSent(prepared: PreparedMessage): void {
    this.counters.messagesOut++;
    this.counters.bytesOut += prepared.size;
  }

  /** Subclass: call after the wire accepted data or its buffer shrank, to release drain waiters. */
  protected onFlushed(): void {
    if (!this.#aboveHighWater || !this.writable) return;
    this.#aboveHighWater = false;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const waiter of waiters) waiter.resolve();
    this.events.emit('drain');
  }

  /** Subclass: ask for a flush (at the connection's flushTiming: batches the writes of one tick). */
  protected requestFlush(): void {
    this.#scheduleFlush();
  }

  /** Subclass: the wire is closed; settles every promise once. */
  protected finishClose(info: CloseInfo): void {
    if (this.#state === 'closed') return;
    // close() during connecting moves to 'closing' first: `opened` must still reject.
    const wasConnecting = !this.#everOpened;
    this.#state = 'closed';
    this.outbound.clear();
    const error = new ConnectionClosedError('closed');
    for (const waiter of this.#drainWaiters) waiter.reject(error);
    this.#drainWaiters = [];
    if (wasConnecting) this.#rejectOpened(new ConnectionClosedError(`closed before opening: ${info.code} ${info.reason}`));
    this.#resolveClosed(info);
    this.events.emit('close', info);
    this.events.removeAll();
  }

  #resolveLane(lane: Lane): Lane {
    if (lane === 'reliable') return lane;
    const supported = lane === 'unreliable' ? this.capabilities.unreliable : this.capabilities.independentChannels;
    if (supported) return lane;
    if (this.#laneFallback === 'reliable') {
      this.counters.laneDowngrades++;
      return 'reliable';
    }
    throw new LaneUnsupportedError(this.transport, lane);
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#state !== 'open') return;
    this.#flushScheduled = true;
    if (!this.#flushAfterIo) queueMicrotask(this.#runFlush);
    else {
      if (flushesAfterIo.length === 0) afterIo(runFlushesAfterIo);
      flushesAfterIo.push(this.#runFlush);
    }
  }

  readonly #runFlush = (): void => {
    this.#flushScheduled = false;
    if (this.#state === 'open' || this.#state === 'closing') this.flush();
  };
}
