/**
 * A WebTransport session with the W3C API shape (`ready`, `closed`, `datagrams`, create/incoming
 * streams, `close`), so Node code reads like browser code. It is the same class on the server and
 * in our Node client; the HTTP/3 connection (`h3-connection.ts`) feeds it and carries its writes
 * through a `StreamIO`.
 *
 * Backpressure: a stream's readable side pauses the stream's delivery once its queue is full (QUIC
 * flow control then stops the peer) and resumes it when read; a writable side's write resolves
 * once the stream's queue is below the high-water mark. The datagram receive queue is bounded and
 * drops (counted) when full. When a session ends, its streams are reset (see H3Connection).
 */
import type { BidirectionalStream, DirectStream, DirectStreamSink } from '../direct-stream.ts';
import type { SessionStats, WebTransportSessionLike } from '../connection.ts';
import { encodeVarint } from '../../codec/varint.ts';
import { encodeCloseSession } from '../h3/capsules.ts';
import { webTransportCodeToHttp3 } from '../h3/errors.ts';
import { StreamType, WEBTRANSPORT_BIDI_SIGNAL } from '../h3/frames.ts';
import type { StreamIO } from './stream-io.ts';

/**
 * Queued bytes per stream above which writes wait: the stack's own send buffer, as a browser's
 * WebTransport has one (the connection on top bounds what it hands over by WIRE_BUFFER_LIMIT).
 */
const STREAM_HIGH_WATER = 256 * 1024;
/** Bytes a stream's reader may have unread before the stream pauses (and QUIC flow control holds the peer). */
const READ_QUEUE = 256 * 1024;
/** Bytes a writer buffers before write() waits (the W3C writable side's own queue). */
const WRITE_QUEUE = 64 * 1024;
/** Datagrams a reader may have unread before further ones are dropped (counted). */
const DATAGRAM_QUEUE = 256;
/** QUIC's minimum datagram payload, when the connection does not say. */
const MIN_DATAGRAM_PAYLOAD = 1200;

export interface WebTransportCloseInfo {
  closeCode: number;
  reason: string;
}

/**
 * Like the W3C WebTransportError: `source` says whether a stream or the whole session failed;
 * `streamErrorCode` is the peer's application code of a reset or STOP_SENDING, when it sent one.
 */
export class WebTransportError extends Error {
  constructor(
    readonly source: 'stream' | 'session',
    message: string,
    readonly streamErrorCode: number | null,
  ) {
    super(message);
    this.name = 'WebTransportError';
  }
}

/** The receiving half of a WebTransport stream, as the HTTP/3 connection feeds it. */
export interface StreamReceiver {
  /** Bytes from the peer; `fin` when they end the stream. */
  push(bytes: Uint8Array, fin: boolean): void;
  /** The peer reset the stream, or the session ended. */
  fail(error: Error): void;
}

/** How the HTTP/3 connection fails a stream's sending half (STOP_SENDING, the session's end). */
export interface StreamWriterControl {
  error(reason: Error): void;
}

/** What the session needs from its HTTP/3 connection. */
export interface SessionHost {
  readonly io: StreamIO;
  openStream(kind: 'bidi' | 'uni'): number;
  registerStream(sessionId: number, streamId: number, stream: StreamReceiver): void;
  releaseStream(streamId: number): void;
  /** Lets the connection fail a stream's writer when the peer sends STOP_SENDING or the session ends. */
  registerWriter(sessionId: number, streamId: number, writer: StreamWriterControl): void;
  releaseWriter(streamId: number): void;
  /** The session ended: reset its open streams and stop reading them. */
  abandonStreams(sessionId: number, error: Error): void;
  sendCapsuleAndFinish(sessionId: number, capsule: Uint8Array | null): void;
  forgetSession(sessionId: number): void;
}

/** The receiving half of a WebTransport stream as a W3C ReadableStream. */
export class IncomingStream implements StreamReceiver {
  readonly readable: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #done = false;
  #paused = false;

  constructor(
    readonly io: StreamIO,
    readonly streamId: number,
    leftover: Uint8Array | undefined,
    ended: boolean,
    private readonly onEnd: () => void,
  ) {
    this.readable = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#controller = controller;
          if (leftover && leftover.length > 0) controller.enqueue(leftover);
          // The FIN came with the stream header: nothing more will arrive.
          if (ended) {
            this.#done = true;
            controller.close();
            queueMicrotask(() => this.onEnd());
          }
        },
        pull: () => {
          if (!this.#paused) return;
          this.#paused = false;
          io.setReading(streamId, true);
        },
        cancel: (reason) => {
          if (this.#done) return;
          this.#done = true;
          io.shutdown(streamId, 'read', webTransportCodeToHttp3(codeOf(reason)));
          this.onEnd();
        },
      },
      { highWaterMark: READ_QUEUE, size: (chunk) => chunk.byteLength },
    );
  }

  /** Bytes from the peer; a full queue pauses the stream until the reader catches up. */
  push(bytes: Uint8Array, fin: boolean): void {
    if (this.#done) return;
    if (bytes.length > 0) this.#controller.enqueue(bytes);
    if (fin) {
      this.#done = true;
      this.#controller.close();
      this.onEnd();
      return;
    }
    if (!this.#paused && (this.#controller.desiredSize ?? 0) <= 0) {
      this.#paused = true;
      this.io.setReading(this.streamId, false);
    }
  }

  fail(error: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#controller.error(error);
    this.onEnd();
  }
}

/** The sending half of a WebTransport stream. */
function outgoingStream(host: SessionHost, sessionId: number, streamId: number, waiters: Map<number, () => void>, header: Uint8Array | null): WritableStream<Uint8Array> {
  const quic = host.io;
  if (header) quic.write(streamId, header);
  return new WritableStream<Uint8Array>(
    {
      start: (controller) => host.registerWriter(sessionId, streamId, controller),
      write: (chunk) => {
        if (quic.isClosed) throw new WebTransportError('session', 'connection closed', null);
        quic.write(streamId, chunk);
        if (quic.queued(streamId) < STREAM_HIGH_WATER) return undefined;
        return new Promise<void>((resolve) => waiters.set(streamId, resolve));
      },
      close: () => {
        host.releaseWriter(streamId);
        quic.write(streamId, new Uint8Array(0), true);
      },
      abort: (reason) => {
        host.releaseWriter(streamId);
        quic.shutdown(streamId, 'write', webTransportCodeToHttp3(codeOf(reason)));
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: WRITE_QUEUE }),
  );
}

/**
 * A bidirectional stream on the direct path (DirectStream, for the webtransport Connection): bytes
 * go to the sink as the HTTP/3 connection hands them over, writes go straight to QUIC. The sink
 * pauses reading itself; nothing is queued here.
 */
class DirectBidiStream implements DirectStream, StreamReceiver, StreamWriterControl {
  readonly #io: StreamIO;
  readonly #sink: DirectStreamSink;
  #readDone = false;
  #writeDone = false;

  constructor(
    private readonly host: SessionHost,
    sessionId: number,
    private readonly streamId: number,
    private readonly writeWaiters: Map<number, () => void>,
    private readonly onEnd: () => void,
    sinkFor: (stream: DirectStream) => DirectStreamSink,
  ) {
    this.#io = host.io;
    host.registerWriter(sessionId, streamId, this);
    this.#sink = sinkFor(this);
  }

  get queued(): number {
    return this.#io.queued(this.streamId);
  }

  write(bytes: Uint8Array): void {
    if (this.#writeDone) return; // the peer stopped it or the session ended: the session's close reports it
    this.#io.write(this.streamId, bytes);
    if (this.#io.queued(this.streamId) > 0) this.writeWaiters.set(this.streamId, this.#writable);
  }

  end(): void {
    if (this.#writeDone) return;
    this.#writeDone = true;
    this.host.releaseWriter(this.streamId);
    this.#io.write(this.streamId, new Uint8Array(0), true);
  }

  setReading(reading: boolean): void {
    if (!this.#readDone) this.#io.setReading(this.streamId, reading);
  }

  push(bytes: Uint8Array, fin: boolean): void {
    if (this.#readDone) return;
    if (bytes.length > 0) this.#sink.data(bytes);
    // The sink may have ended the session meanwhile, and with it this stream.
    if (fin && !this.#readDone) this.#endRead(null);
  }

  fail(error: Error): void {
    if (!this.#readDone) this.#endRead(error);
  }

  error(): void {
    this.#writeDone = true;
  }

  #endRead(error: Error | null): void {
    this.#readDone = true;
    this.onEnd();
    this.#sink.end(error);
  }

  readonly #writable = (): void => this.#sink.writable();
}

/** The application error code an abort/cancel reason carries (W3C: `streamErrorCode`), else 0. */
function codeOf(reason: unknown): number {
  const code = (reason as { streamErrorCode?: unknown } | undefined)?.streamErrorCode;
  return typeof code === 'number' && code >= 0 && code <= 0xffffffff ? code : 0;
}

/** Same W3C shape as the browser's WebTransport (and our Node client): the transport runs on any of them. */
export class WebTransportSession implements WebTransportSessionLike {
  readonly ready: Promise<void>;
  readonly closed: Promise<WebTransportCloseInfo>;
  readonly draining: Promise<void>;
  readonly datagrams: { readonly readable: ReadableStream<Uint8Array>; readonly writable: WritableStream<Uint8Array>; readonly maxDatagramSize: number };
  readonly incomingBidirectionalStreams: ReadableStream<BidirectionalStream>;
  readonly incomingUnidirectionalStreams: ReadableStream<ReadableStream<Uint8Array>>;
  /** Request path (server side). */
  path = '';
  datagramsDropped = 0;
  /**
   * The direct datagram path of our engine, for the webtransport Connection: set, it takes every
   * datagram as it arrives instead of `datagrams.readable` (no Web-streams queue and promise per
   * datagram). It is called synchronously; it must not throw.
   */
  onDatagram: ((payload: Uint8Array) => void) | undefined;

  readonly #host: SessionHost;
  readonly #quic: StreamIO;
  readonly #prefix: Uint8Array;
  readonly #streams = new Set<StreamReceiver>();
  #acceptDirect: ((stream: DirectStream) => DirectStreamSink) | undefined;
  readonly #writeWaiters: Map<number, () => void>;
  #resolveReady!: () => void;
  #rejectReady!: (error: Error) => void;
  #resolveClosed!: (info: WebTransportCloseInfo) => void;
  #rejectClosed!: (error: Error) => void;
  #resolveDraining!: () => void;
  #datagramController!: ReadableStreamDefaultController<Uint8Array>;
  #bidiController!: ReadableStreamDefaultController<BidirectionalStream>;
  #uniController!: ReadableStreamDefaultController<ReadableStream<Uint8Array>>;
  #state: 'connecting' | 'connected' | 'closed' = 'connecting';

  constructor(
    host: SessionHost,
    readonly sessionId: number,
    writeWaiters: Map<number, () => void>,
  ) {
    this.#host = host;
    this.#quic = host.io;
    this.#writeWaiters = writeWaiters;
    this.#prefix = encodeVarint(sessionId / 4);
    this.ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.closed = new Promise((resolve, reject) => {
      this.#resolveClosed = resolve;
      this.#rejectClosed = reject;
    });
    this.draining = new Promise((resolve) => (this.#resolveDraining = resolve));
    this.ready.catch(() => undefined);
    this.closed.catch(() => undefined);
    const quic = this.#quic;
    const prefix = this.#prefix;
    this.datagrams = {
      readable: new ReadableStream<Uint8Array>({ start: (c) => void (this.#datagramController = c) }, { highWaterMark: DATAGRAM_QUEUE }),
      writable: new WritableStream<Uint8Array>({ write: (chunk) => void this.sendDatagram(chunk) }),
      get maxDatagramSize() {
        return Math.max(0, (quic.maxDatagramPayload() ?? MIN_DATAGRAM_PAYLOAD) - prefix.length);
      },
    };
    this.incomingBidirectionalStreams = new ReadableStream({ start: (c) => void (this.#bidiController = c) });
    this.incomingUnidirectionalStreams = new ReadableStream({ start: (c) => void (this.#uniController = c) });
  }

  /**
   * Sends one datagram now (the direct path beside `datagrams.writable`). Datagrams never wait: a
   * full QUIC send queue drops them, counted once by the QUIC connection; false then.
   */
  sendDatagram(payload: Uint8Array): boolean {
    const prefix = this.#prefix;
    const datagram = new Uint8Array(prefix.length + payload.length);
    datagram.set(prefix);
    datagram.set(payload, prefix.length);
    return this.#quic.sendDatagram(datagram);
  }

  get state(): 'connecting' | 'connected' | 'closed' {
    return this.#state;
  }

  async createBidirectionalStream(): Promise<BidirectionalStream> {
    this.#assertConnected();
    const id = this.#host.openStream('bidi');
    const writable = outgoingStream(this.#host, this.sessionId, id, this.#writeWaiters, this.#bidiHeader());
    const incoming = this.#track(id, undefined, false);
    return { readable: incoming.readable, writable };
  }

  /** The direct path (DirectStream) for a stream this side opens. */
  openDirectStream(sink: DirectStreamSink): DirectStream {
    this.#assertConnected();
    const id = this.#host.openStream('bidi');
    this.#quic.write(id, this.#bidiHeader());
    return this.#direct(id, () => sink);
  }

  /** The direct path for every bidirectional stream the peer opens from now on (not `incomingBidirectionalStreams`). */
  acceptDirectStreams(accept: (stream: DirectStream) => DirectStreamSink): void {
    this.#acceptDirect = accept;
  }

  async createUnidirectionalStream(): Promise<WritableStream<Uint8Array>> {
    this.#assertConnected();
    const id = this.#host.openStream('uni');
    return outgoingStream(this.#host, this.sessionId, id, this.#writeWaiters, Uint8Array.of(...encodeVarint(StreamType.WEBTRANSPORT_UNI), ...encodeVarint(this.sessionId)));
  }

  /** Closes the session with a CLOSE_WEBTRANSPORT_SESSION capsule, then FIN on the CONNECT stream. */
  close(info: { closeCode?: number; reason?: string } = {}): void {
    if (this.#state === 'closed') return;
    const closeInfo = { closeCode: info.closeCode ?? 0, reason: info.reason ?? '' };
    this.#host.sendCapsuleAndFinish(this.sessionId, this.#state === 'connected' ? encodeCloseSession(closeInfo.closeCode, closeInfo.reason) : null);
    this.terminate(closeInfo);
  }

  /**
   * The connection's statistics (QUIC's, from quiche: smoothed RTT in whole milliseconds, 0 on
   * loopback; no minimum RTT, so `minRttMs` is always null). Undefined without a transport that counts.
   */
  getStats(): (SessionStats & { minRttMs: null; cwnd: number | null; packetsSent: number }) | undefined {
    const stats = this.#quic.stats();
    if (!stats) return undefined;
    return { ...stats, minRttMs: null, datagramsDropped: this.datagramsDropped + stats.datagramsDropped };
  }

  // ——— fed by the HTTP/3 connection ———

  accept(): void {
    if (this.#state !== 'connecting') return;
    this.#state = 'connected';
    this.#resolveReady();
  }

  reject(error: Error): void {
    this.#state = 'closed';
    this.#rejectReady(error);
    this.#rejectClosed(error);
    this.#host.forgetSession(this.sessionId);
  }

  receiveDatagram(payload: Uint8Array): void {
    if (this.#state !== 'connected') return;
    if (this.onDatagram) return this.onDatagram(payload);
    if ((this.#datagramController.desiredSize ?? 0) <= 0) {
      this.datagramsDropped++;
      return;
    }
    this.#datagramController.enqueue(payload);
  }

  incomingBidi(streamId: number, leftover: Uint8Array, ended: boolean): void {
    if (this.#acceptDirect) {
      this.#direct(streamId, this.#acceptDirect).push(leftover, ended);
      return;
    }
    const incoming = this.#track(streamId, leftover, ended);
    const writable = outgoingStream(this.#host, this.sessionId, streamId, this.#writeWaiters, null);
    this.#bidiController.enqueue({ readable: incoming.readable, writable });
  }

  incomingUni(streamId: number, leftover: Uint8Array, ended: boolean): void {
    this.#uniController.enqueue(this.#track(streamId, leftover, ended).readable);
  }

  drain(): void {
    this.#resolveDraining();
  }

  /** The session ended (either side's close, FIN of the CONNECT stream): settle everything once. */
  terminate(info: WebTransportCloseInfo): void {
    if (this.#state === 'closed') return;
    const wasConnecting = this.#state === 'connecting';
    this.#state = 'closed';
    if (wasConnecting) this.#rejectReady(new WebTransportError('session', `session closed before it was ready: ${info.closeCode} ${info.reason}`, null));
    this.#finishStreams(new WebTransportError('session', 'session closed', null));
    this.#resolveClosed(info);
    this.#host.forgetSession(this.sessionId);
  }

  /** The QUIC connection died under the session. */
  abort(error: Error): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#rejectReady(error);
    this.#finishStreams(error);
    this.#rejectClosed(error);
    this.#host.forgetSession(this.sessionId);
  }

  #finishStreams(error: Error): void {
    this.#host.abandonStreams(this.sessionId, error);
    for (const stream of this.#streams) stream.fail(error);
    this.#streams.clear();
    for (const controller of [this.#datagramController, this.#bidiController, this.#uniController] as ReadableStreamDefaultController<unknown>[]) {
      try {
        controller.close();
      } catch {
        // Already closed or errored.
      }
    }
  }

  #bidiHeader(): Uint8Array {
    return Uint8Array.of(...encodeVarint(WEBTRANSPORT_BIDI_SIGNAL), ...encodeVarint(this.sessionId));
  }

  #direct(streamId: number, sinkFor: (stream: DirectStream) => DirectStreamSink): DirectBidiStream {
    const stream: DirectBidiStream = new DirectBidiStream(this.#host, this.sessionId, streamId, this.#writeWaiters, () => {
      this.#streams.delete(stream);
      this.#host.releaseStream(streamId);
    }, sinkFor);
    this.#streams.add(stream);
    this.#host.registerStream(this.sessionId, streamId, stream);
    return stream;
  }

  #track(streamId: number, leftover: Uint8Array | undefined, ended: boolean): IncomingStream {
    const stream = new IncomingStream(this.#quic, streamId, leftover, ended, () => {
      this.#streams.delete(stream);
      this.#host.releaseStream(streamId);
    });
    this.#streams.add(stream);
    this.#host.registerStream(this.sessionId, streamId, stream);
    return stream;
  }

  #assertConnected(): void {
    if (this.#state !== 'connected') throw new WebTransportError('session', `session is ${this.#state}`, null);
  }
}
