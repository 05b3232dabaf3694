/**
 * HTTP polling transports, server side: `long-polling` (a GET is held until messages are queued or
 * `holdMs` passes) and `polling` (holdMs 0: the GET is answered at once, empty or not). One
 * implementation; `PollingTransportServer` in ../polling/server.ts only configures it.
 *
 * Endpoints under `path` (default `/lp`):
 *   POST {path}/open           → 200 JSON { sid, holdMs, pollTimeoutMs, maxMessageSize, maxBatchMessages }
 *   GET  {path}/{sid}?ack=N    → 200 batch (codec/batch.ts) of messages from seq N on; N acknowledges
 *                                everything before it, so a response lost on the way is sent again.
 *                                A second GET replaces a held one, which is answered with an empty
 *                                batch (not 409: a client whose GET broke off may retry while the
 *                                server still holds the old one).
 *   POST {path}/{sid}[?ack=N]  ← batch of upstream messages → 204; seqs already seen are skipped (retries).
 *                                With `ack` (acknowledging as a GET's does) the answer may instead be 200
 *                                with a batch, as BOSH allows: what was queued for the client while the
 *                                POST was delivered (an echo, a reply), from the first unacknowledged
 *                                message on, so it needs no wake-up of the held GET.
 *   POST {path}/{sid}/close    ← JSON { code, reason } → 204: the client's close
 * Errors are JSON `{ "error": { "code", "message" } }`: 400 bad body or ack, 404 unknown session,
 * 405 wrong method, 413 body, message or message count over the limit (and the session closes with 1009).
 * A session with no request for `pollTimeoutMs` is closed (4009) and forgotten.
 * A session that closed cleanly is retired for a short grace period: a GET gets its last batch (with
 * the close record) again, so a lost final response loses neither messages nor the close; a retried
 * close or a late upstream POST is answered 204 (and discarded, as a WebSocket does after close).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BaseConnection, DEFAULT_MAX_MESSAGE_SIZE } from '../base-connection.ts';
import { utf8Length } from '../codec/utf8.ts';
import { batchParts, decodeBatch, DEFAULT_MAX_BATCH_MESSAGES } from '../codec/batch.ts';
import { coalesce } from '../codec/bytes.ts';
import { framePreparedParts } from '../codec/message-framing.ts';
import type { PreparedMessage } from '../prepared-message.ts';
import { ProtocolError } from '../errors.ts';
import { randomId } from '../random-id.ts';
import type { HttpTransportServer } from '../http-transport-server.ts';
import type { Connection, ServerTransportOptions, TransportCapabilities, TransportName } from '../transport.ts';
import { CloseCode } from '../transport.ts';
import { readBody } from '../http-body.ts';

export interface HttpPollingServerOptions extends ServerTransportOptions {
  path?: string;
  /** How long a GET is held waiting for messages (ms). 0 = short polling. */
  holdMs?: number;
  /** A session without any request for this long is closed (ms). Default holdMs + 20 000. */
  pollTimeoutMs?: number;
  /**
   * Most messages one upstream POST may carry (announced at open). More: 413 ERR_BATCH_TOO_MANY and
   * the session closes with 1009. Default 1024.
   */
  maxBatchMessages?: number;
}

/**
 * An upstream batch is handed to the router this many messages at a time, the rest after other
 * I/O had its turn: one POST never holds the event loop for long, whatever its messages cost.
 */
const MESSAGES_PER_TURN = 64;

/** One response carries at most this many bytes of messages (at least one message). */
const MAX_BATCH_BYTES = 1024 * 1024;
/** How long a cleanly closed session's last batch is kept for a client retrying its GET (ms, at most pollTimeoutMs). */
const RETIRED_GRACE_MS = 5_000;

/** A message sent and not yet acknowledged: its frame is its PreparedMessage's, built once (resends reuse it). */
interface SentMessage {
  seq: number;
  prepared: PreparedMessage;
}

class PollingServerConnection extends BaseConnection {
  readonly capabilities: TransportCapabilities;
  /** Sent in a response but not yet acknowledged by a later GET. */
  #unacked: SentMessage[] = [];
  #unackedBytes = 0;
  #nextSeq = 0;
  #expectedUpSeq = 0;
  #held: { response: ServerResponse; timer: ReturnType<typeof setTimeout> | undefined } | undefined;
  #closing: { code: number; reason: string } | undefined;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** Settles when every POST received so far is delivered. */
  #receiving: Promise<void> = Promise.resolve();
  /** While reading is paused: resolved on resume (the POST being delivered waits, unanswered). */
  #readingResumed: { promise: Promise<void>; resolve: () => void } | undefined;
  /**
   * POSTs with `ack` being delivered in this turn, or delivered and not yet answered: what they
   * queue waits for their answer rather than going to the held GET.
   */
  #answeringPosts = 0;

  constructor(
    readonly transport: TransportName,
    readonly sid: string,
    readonly server: HttpPollingServer,
  ) {
    super({ backpressure: server.options.backpressure, laneFallback: server.options.laneFallback, defaultPolicy: 'disconnect' });
    this.capabilities = {
      unreliable: false,
      independentChannels: false,
      serverPush: server.holdMs > 0,
      binary: true,
      maxMessageSize: server.maxMessageSize,
      maxUnreliableSize: 0,
    };
    this.counters.wireBytesIn = 0;
    this.counters.wireBytesOut = 0;
    this.touch();
    this.markOpen();
  }

  /** Any request from the client proves it is alive. */
  touch(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => {
      // A GET held open is a client that is polling: the clock restarts when it is answered.
      if (this.#held) return this.touch();
      // A close we asked for that never reached the client still reports our code, uncleanly.
      this.#finish(this.#closing ? { ...this.#closing, wasClean: false } : { code: CloseCode.livenessTimeout, reason: 'client stopped polling', wasClean: false });
    }, this.server.pollTimeoutMs);
    this.#idleTimer.unref?.();
  }

  countIn(bytes: number): void {
    this.counters.wireBytesIn! += bytes;
  }
  countOut(bytes: number): void {
    this.counters.wireBytesOut! += bytes;
  }

  /** A GET: acknowledge, then answer now (something to send, or short polling) or hold. */
  poll(ack: number, response: ServerResponse): void {
    this.#acknowledge(ack);
    if (this.#held) {
      // A newer GET replaces the held one; everything goes to the newer one.
      const replaced = this.#held;
      this.#held = undefined;
      clearTimeout(replaced.timer);
      this.server.send(this, replaced.response, 200, batchParts(this.#nextSeq, []), 'application/octet-stream');
    }
    const timer = this.server.holdMs > 0 ? setTimeout(() => this.#answerHeld(), this.server.holdMs) : undefined;
    this.#held = { response, timer };
    response.once('close', () => {
      if (this.#held?.response === response) {
        clearTimeout(this.#held.timer);
        this.#held = undefined;
      }
      if (this.state !== 'closed') this.touch();
    });
    if (this.#unacked.length > 0 || this.outbound.length > 0 || this.#closing || this.server.holdMs === 0) this.#answerHeld();
    this.onFlushed();
  }

  /**
   * A POST of upstream messages: delivered MESSAGES_PER_TURN at a time, yielding to other I/O in
   * between; resolves once all are delivered (then the POST is answered). POSTs of one session are
   * delivered in the order they arrived.
   */
  receive(body: Uint8Array, ack: number | undefined): Promise<readonly Uint8Array[] | undefined> {
    const batch = decodeBatch(body, this.server.maxMessageSize, this.server.maxBatchMessages);
    if (ack !== undefined) this.#acknowledge(ack);
    const answering = ack !== undefined;
    const delivered = this.#receiving.then(async () => {
      if (answering) this.#answeringPosts++;
      try {
        for (let i = 0; i < batch.messages.length && this.state === 'open'; i++) {
          if ((i > 0 && i % MESSAGES_PER_TURN === 0) || this.#readingResumed) {
            // Waiting (other I/O's turn, or paused reading) the held GET takes what is queued.
            if (answering) this.#stopAnswering();
            if (i > 0 && i % MESSAGES_PER_TURN === 0) await new Promise((resolve) => setImmediate(resolve));
            while (this.#readingResumed) await this.#readingResumed.promise;
            if (answering) this.#answeringPosts++;
          }
          const seq = batch.firstSeq + i;
          if (seq < this.#expectedUpSeq) continue; // a retry of something already delivered
          if (seq > this.#expectedUpSeq) throw new ProtocolError('ERR_SEQUENCE_GAP', `expected upstream seq ${this.#expectedUpSeq}, got ${seq}`);
          this.#expectedUpSeq++;
          this.deliver(batch.messages[i]!);
        }
      } catch (error) {
        if (answering) this.#stopAnswering();
        throw error;
      }
    });
    this.#receiving = delivered.catch(() => undefined);
    if (!answering) return delivered.then(() => undefined);
    return delivered.then(() => {
      this.#stopAnswering(false);
      // Only for something new: what was already sent waits in the held GET's answer or is in flight.
      if (this.outbound.length === 0 || this.#closing || this.state !== 'open') {
        if (this.outbound.length > 0) this.requestFlush();
        return undefined;
      }
      const { body } = this.#takeBatch(false);
      if (this.outbound.length > 0) this.requestFlush();
      this.onFlushed();
      return body;
    });
  }

  /** Forgets the messages before `ack`: the client has them. */
  #acknowledge(ack: number): void {
    if (ack > this.#nextSeq) throw new ProtocolError('ERR_BAD_ACK', `ack ${ack} is beyond the last message sent (${this.#nextSeq})`);
    while (this.#unacked.length > 0 && this.#unacked[0]!.seq < ack) this.#unackedBytes -= this.#unacked.shift()!.prepared.size;
  }

  /** A POST with `ack` stops holding back the held GET (and, unless it is about to answer, lets it take what is queued). */
  #stopAnswering(flush = true): void {
    this.#answeringPosts--;
    if (flush && this.#answeringPosts === 0 && this.outbound.length > 0) this.requestFlush();
  }

  protected override setReadingPaused(paused: boolean): void {
    if (paused) {
      let resolve!: () => void;
      const promise = new Promise<void>((settle) => (resolve = settle));
      this.#readingResumed ??= { promise, resolve };
    } else {
      this.#readingResumed?.resolve();
      this.#readingResumed = undefined;
    }
  }

  /** Server shutdown: the client never came back for its close record. */
  abandon(): void {
    this.#finish({ code: CloseCode.goingAway, reason: 'server shutting down', wasClean: false });
  }

  clientClosed(code: number, reason: string): void {
    if (this.#held) this.#answerHeld();
    this.#finish({ code, reason, wasClean: true }, batchParts(this.#nextSeq, [], { code, reason }));
  }

  protected flush(): void {
    if (this.#held && this.#answeringPosts === 0) this.#answerHeld();
  }

  protected override sinkBufferedBytes(): number {
    return this.#unackedBytes;
  }

  protected closeTransport(code: number, reason: string): void {
    // The close travels in the next response; until that GET comes the session waits (up to pollTimeoutMs).
    this.#closing = { code, reason };
    if (code === CloseCode.slowConsumer) {
      // The consumer is being dropped for not polling: its backlog is not worth holding (as on websocket).
      this.counters.dropped += this.outbound.length;
      this.outbound.clear();
    }
    if (this.#held) this.#answerHeld();
  }

  /** Answers the held GET with unacknowledged messages, then new ones, up to the batch cap. */
  #answerHeld(): void {
    const held = this.#held;
    if (!held) return;
    this.#held = undefined;
    clearTimeout(held.timer);
    const { body, closing } = this.#takeBatch(true);
    this.server.send(this, held.response, 200, body, 'application/octet-stream');
    if (closing) this.#finish({ ...closing, wasClean: true }, body);
    this.onFlushed();
  }

  /**
   * A batch of the unacknowledged messages, then new ones moved from the queue up to the batch cap
   * (now unacknowledged too), and (`withClose`) the close record of a closing session once the
   * queue is empty; `closing` says whether it went in.
   */
  #takeBatch(withClose: boolean): { body: readonly Uint8Array[]; closing: { code: number; reason: string } | undefined } {
    let bytes = this.#unackedBytes;
    while (this.outbound.length > 0 && (bytes < MAX_BATCH_BYTES || this.#unacked.length === 0)) {
      const item = this.outbound.shift()!;
      this.#unacked.push({ seq: this.#nextSeq++, prepared: item.prepared });
      this.#unackedBytes += item.prepared.size;
      bytes += item.prepared.size;
      this.countSent(item.prepared);
    }
    const firstSeq = this.#unacked[0]?.seq ?? this.#nextSeq;
    const closing = withClose && this.outbound.length === 0 ? this.#closing : undefined;
    // Each message's frame is built once, for every recipient and every resend.
    return { body: batchParts(firstSeq, this.#unacked.map((m) => m.prepared.framed(framePreparedParts)), closing), closing };
  }

  /** Ends the session; `lastBody` (a batch ending in the close record) is kept a while for retried GETs. */
  #finish(info: { code: number; reason: string; wasClean: boolean }, lastBody?: readonly Uint8Array[]): void {
    clearTimeout(this.#idleTimer);
    this.setReadingPaused(false);
    if (this.#held) {
      clearTimeout(this.#held.timer);
      this.#held.response.destroy();
      this.#held = undefined;
    }
    this.#unacked = [];
    this.#unackedBytes = 0;
    this.server.forget(this.sid, lastBody);
    this.finishClose(info);
  }
}

export class HttpPollingServer implements HttpTransportServer {
  readonly path: string;
  readonly holdMs: number;
  readonly pollTimeoutMs: number;
  readonly maxMessageSize: number;
  readonly maxBatchMessages: number;
  readonly #sessions = new Map<string, PollingServerConnection>();
  /** Cleanly closed sessions: their last batch, until the grace period ends. */
  readonly #retired = new Map<string, { body: readonly Uint8Array[]; timer: ReturnType<typeof setTimeout> }>();
  #handler: ((connection: Connection) => void) | undefined;
  #closed = false;

  constructor(
    readonly name: TransportName,
    readonly options: HttpPollingServerOptions,
    defaults: { path: string; holdMs: number },
  ) {
    this.path = options.path ?? defaults.path;
    this.holdMs = options.holdMs ?? defaults.holdMs;
    this.pollTimeoutMs = options.pollTimeoutMs ?? this.holdMs + 20_000;
    this.maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.maxBatchMessages = options.maxBatchMessages ?? DEFAULT_MAX_BATCH_MESSAGES;
  }

  get connectionCount(): number {
    return this.#sessions.size;
  }

  onConnection(handler: (connection: Connection) => void): void {
    this.#handler = handler;
  }

  handleRequest(request: IncomingMessage, response: ServerResponse): boolean {
    // Split by hand: `new URL` throws on request targets such as `//` or `http://[`.
    const target = request.url ?? '/';
    const queryAt = target.indexOf('?');
    const pathname = queryAt < 0 ? target : target.slice(0, queryAt);
    if (pathname !== this.path && !pathname.startsWith(`${this.path}/`)) return false;
    const [sid, action, extra] = pathname.slice(this.path.length + 1).split('/');
    const requestBytes = requestHeadBytes(request);

    if (sid === 'open' && action === undefined) {
      if (request.method !== 'POST') return this.#error(undefined, response, 405, 'ERR_METHOD', 'use POST to open a session'), true;
      if (this.#closed) return this.#error(undefined, response, 503, 'ERR_SHUTTING_DOWN', 'server is shutting down'), true;
      request.resume();
      const connection = new PollingServerConnection(this.name, randomId(16), this);
      this.#sessions.set(connection.sid, connection);
      connection.countIn(requestBytes);
      const body = JSON.stringify({ sid: connection.sid, holdMs: this.holdMs, pollTimeoutMs: this.pollTimeoutMs, maxMessageSize: this.maxMessageSize, maxBatchMessages: this.maxBatchMessages });
      this.send(connection, response, 200, body, 'application/json');
      this.#handler?.(connection);
      return true;
    }
    const retired = sid && extra === undefined ? this.#retired.get(sid) : undefined;
    if (retired) {
      this.#answerRetired(retired.body, request, response, action);
      return true;
    }
    const connection = sid ? this.#sessions.get(sid) : undefined;
    if (!connection || extra !== undefined) {
      request.resume();
      this.#error(undefined, response, 404, 'ERR_UNKNOWN_SESSION', `no ${this.name} session '${sid ?? ''}'`);
      return true;
    }
    connection.touch();
    connection.countIn(requestBytes);
    if (action === undefined && request.method === 'GET') {
      const ack = Number(new URLSearchParams(queryAt < 0 ? '' : target.slice(queryAt + 1)).get('ack') ?? 0);
      if (!Number.isSafeInteger(ack) || ack < 0) return this.#error(connection, response, 400, 'ERR_BAD_ACK', 'ack must be a non-negative integer'), true;
      try {
        connection.poll(ack, response);
      } catch (error) {
        this.#error(connection, response, 400, (error as ProtocolError).code, (error as Error).message);
      }
      return true;
    }
    if (request.method !== 'POST' || (action !== undefined && action !== 'close')) {
      request.resume();
      this.#error(connection, response, 405, 'ERR_METHOD', `${request.method} is not allowed here`);
      return true;
    }
    const postAck = action === undefined && queryAt >= 0 ? new URLSearchParams(target.slice(queryAt + 1)).get('ack') : null;
    const ack = postAck === null ? undefined : Number(postAck);
    if (ack !== undefined && (!Number.isSafeInteger(ack) || ack < 0)) {
      request.resume();
      return this.#error(connection, response, 400, 'ERR_BAD_ACK', 'ack must be a non-negative integer'), true;
    }
    // One message plus framing always fits; a close reason is bounded like a message.
    const limit = this.maxMessageSize * 2 + 1024;
    void readBody(request, limit).then(
      (body) => {
        if (body === undefined) {
          // Close first, so a held GET carries the 1009 close record before the client sees the 413.
          connection.close(CloseCode.messageTooBig, `request body over ${limit} bytes`);
          return this.#error(connection, response, 413, 'ERR_BODY_TOO_LARGE', `request body over ${limit} bytes`);
        }
        connection.countIn(body.length);
        if (action === 'close') return this.#close(connection, response, body);
        let delivered: Promise<readonly Uint8Array[] | undefined>;
        try {
          delivered = connection.receive(body, ack);
        } catch (error) {
          delivered = Promise.reject(error);
        }
        delivered.then(
          (answer) => (answer ? this.send(connection, response, 200, answer, 'application/octet-stream') : this.send(connection, response, 204, undefined, undefined)),
          (error: unknown) => {
            const { code, closeCode, message } = error as ProtocolError;
            if (closeCode === CloseCode.messageTooBig) {
              connection.close(closeCode, message);
              return this.#error(connection, response, 413, code, message);
            }
            return this.#error(connection, response, 400, code ?? 'ERR_BAD_BODY', message);
          },
        );
      },
      // The request broke off mid-body: nobody is left to answer.
      () => response.destroy(),
    );
    return true;
  }

  /**
   * Writes a response and counts its bytes (status line, headers, body) on the session. A body of
   * parts is written as they are (small ones copied together): large message frames are shared
   * with the other responses that carry them, never copied.
   */
  send(connection: PollingServerConnection | undefined, response: ServerResponse, status: number, body: readonly Uint8Array[] | string | undefined, type: string | undefined): void {
    if (response.writableEnded || response.destroyed) return;
    const headers: Record<string, string | number> = { 'cache-control': 'no-store' };
    if (type) headers['content-type'] = type;
    let bodyBytes = 0;
    if (typeof body === 'string') bodyBytes = utf8Length(body);
    else if (body) for (const part of body) bodyBytes += part.length;
    if (body !== undefined) headers['content-length'] = bodyBytes;
    response.writeHead(status, headers);
    if (body === undefined || typeof body === 'string') response.end(body);
    else {
      const chunks = coalesce(body);
      response.cork();
      for (let i = 0; i < chunks.length - 1; i++) response.write(chunks[i]);
      response.end(chunks[chunks.length - 1]);
      response.uncork();
    }
    connection?.countOut(responseHeadBytes(response) + bodyBytes);
  }

  /** Drops a closed session; with `lastBody` it stays retired for the grace period. */
  forget(sid: string, lastBody?: readonly Uint8Array[]): void {
    this.#sessions.delete(sid);
    if (!lastBody || this.#closed) return;
    const timer = setTimeout(() => this.#retired.delete(sid), Math.min(RETIRED_GRACE_MS, this.pollTimeoutMs));
    timer.unref?.();
    this.#retired.set(sid, { body: lastBody, timer });
  }

  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#sessions.values()];
    for (const connection of all) connection.close(CloseCode.goingAway, 'server shutting down');
    // A client that is polling gets the close record; don't wait out the idle timer of the others.
    await Promise.race([Promise.all(all.map((c) => c.closed)), new Promise((resolve) => setTimeout(resolve, 250))]);
    for (const connection of this.#sessions.values()) connection.abandon();
    this.#sessions.clear();
    for (const { timer } of this.#retired.values()) clearTimeout(timer);
    this.#retired.clear();
  }

  /** A request to a retired session: its last batch again, or 204 for anything posted. */
  #answerRetired(body: readonly Uint8Array[], request: IncomingMessage, response: ServerResponse, action: string | undefined): void {
    if (request.method === 'GET' && action === undefined) return this.send(undefined, response, 200, body, 'application/octet-stream');
    request.resume();
    if (request.method !== 'POST' || (action !== undefined && action !== 'close')) return this.#error(undefined, response, 405, 'ERR_METHOD', `${request.method} is not allowed here`);
    request.once('end', () => this.send(undefined, response, 204, undefined, undefined));
  }

  /** Body: JSON `{ code?, reason? }` (empty: 1000, ''); code an integer 1000–4999, reason text. */
  #close(connection: PollingServerConnection, response: ServerResponse, body: Uint8Array): void {
    let info: unknown = {};
    try {
      if (body.length > 0) info = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
    } catch {
      info = undefined;
    }
    const { code = CloseCode.normal, reason = '' } = (typeof info === 'object' && info !== null ? info : { code: Number.NaN }) as { code?: unknown; reason?: unknown };
    if (typeof code !== 'number' || !Number.isInteger(code) || code < 1000 || code > 4999 || typeof reason !== 'string') {
      return this.#error(connection, response, 400, 'ERR_BAD_CLOSE', 'close body must be JSON { code: 1000–4999, reason: string }');
    }
    this.send(connection, response, 204, undefined, undefined);
    connection.clientClosed(code, reason);
  }

  #error(connection: PollingServerConnection | undefined, response: ServerResponse, status: number, code: string, message: string): void {
    this.send(connection, response, status, JSON.stringify({ error: { code, message } }), 'application/json');
  }
}

/** Bytes of the request line and headers as they came (rawHeaders keeps the client's spelling). */
function requestHeadBytes(request: IncomingMessage): number {
  let bytes = `${request.method} ${request.url} HTTP/${request.httpVersion}\r\n`.length + 2;
  for (let i = 0; i < request.rawHeaders.length; i += 2) bytes += request.rawHeaders[i]!.length + 2 + request.rawHeaders[i + 1]!.length + 2;
  return bytes;
}

/** Bytes of the status line and headers Node wrote (it adds Date, Connection, Keep-Alive). */
function responseHeadBytes(response: ServerResponse): number {
  // `_header` is the exact header block Node sent; it is not in the typings.
  const head = (response as unknown as { _header?: string })._header;
  return head ? head.length : 0;
}

/** `long-polling`: held GETs (default 25 s) at `/lp`. */
export class LongPollingTransportServer extends HttpPollingServer {
  constructor(options: HttpPollingServerOptions = {}) {
    super('long-polling', options, { path: '/lp', holdMs: 25_000 });
  }
}
