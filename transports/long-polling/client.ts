/**
 * HTTP polling transports, client side, on `fetch` only (browser and Node): `long-polling` keeps
 * one GET outstanding and re-polls as soon as it returns; `polling` GETs at a fixed interval.
 * Upstream messages go in POSTs, one in flight at a time, batching what queued meanwhile; a POST
 * acknowledges like a GET, and its answer may carry messages the server queued for us meanwhile
 * (an echo needs no wake-up of the held GET). Every request is retried with backoff (same sequence
 * numbers, so nothing is delivered twice) before the connection gives up with 1006. Endpoints: see
 * ./server.ts.
 *
 * Stats: `wireBytes*` stay null here — fetch hides the HTTP headers; the server side counts them.
 * `rttMs` is smoothed from upstream POST round trips (and, for polling, from GETs answered at once).
 */
import { ReadingGate } from '../reading-gate.ts';
import { BaseConnection, DEFAULT_MAX_MESSAGE_SIZE, type QueuedMessage } from '../base-connection.ts';
import { decodeBatch, DEFAULT_MAX_BATCH_MESSAGES, encodeBatch } from '../codec/batch.ts';
import { ConnectError } from '../errors.ts';
import type { ClientTransportOptions, Connection, TransportCapabilities, TransportName } from '../transport.ts';
import { CloseCode } from '../transport.ts';

/** The answer to a PollingFetch: what the client reads of a fetch Response. */
export interface PollingResponse {
  ok: boolean;
  status: number;
  arrayBuffer(): Promise<ArrayBuffer>;
  text(): Promise<string>;
  json(): Promise<unknown>;
}

/**
 * What the polling client asks of fetch, and no more: the global fetch is one; Node's client passes
 * a cheaper one on http.request with a keep-alive agent (node-http-fetch.ts).
 */
export type PollingFetch = (url: string, init?: { method?: string; body?: Uint8Array<ArrayBuffer> | string; headers?: Record<string, string>; signal?: AbortSignal }) => Promise<PollingResponse>;

export interface PollingClientOptions extends ClientTransportOptions {
  /** Endpoint path on the server. Default `/lp` (long-polling) or `/poll` (polling). */
  path?: string;
  /** How requests are made (Node passes one on http.request that trusts the server's certificate). Default global fetch. */
  fetch?: PollingFetch;
}

/** Attempts per request before the connection is declared lost. */
const MAX_ATTEMPTS = 4;
/** One upstream POST carries at most this many bytes of messages (at least one message). */
const MAX_POST_BYTES = 1024 * 1024;
/** Upper bound of one message's frame header in a batch (a varint). */
const FRAME_OVERHEAD = 8;

interface Mode {
  transport: TransportName;
  path: string;
  /** Delay between GETs (0: re-poll at once, which with a held GET is long-polling). */
  intervalMs: number;
}

class PollingClientConnection extends BaseConnection {
  readonly transport: TransportName;
  capabilities: TransportCapabilities;
  readonly #base: string;
  readonly #mode: Mode;
  readonly #fetch: PollingFetch;
  #sid: string | undefined;
  #nextDownSeq = 0;
  #nextUpSeq = 0;
  /** The POST in flight: its messages stay counted as queued until the server took them. */
  #posting: QueuedMessage[] | undefined;
  #postingBytes = 0;
  /** Settles when the POST in flight is done (taken by the server, or the connection lost). */
  #postDone: Promise<void> = Promise.resolve();
  /** GETs are answered at once (polling): their round trips are RTT samples too. */
  #immediateGets = false;
  #poll: AbortController | undefined;
  #pollTimer: ReturnType<typeof setTimeout> | undefined;
  #requestedClose: { code: number; reason: string } | undefined;
  /** The server's cap on messages per POST (announced at open). */
  #maxBatchMessages = DEFAULT_MAX_BATCH_MESSAGES;
  /** While reading is paused: settles when it resumes (no GET is made meanwhile). */
  readonly #reading = new ReadingGate(this.closed);

  constructor(options: PollingClientOptions, mode: Mode) {
    super({ backpressure: options.backpressure, laneFallback: options.laneFallback, defaultPolicy: 'wait' });
    this.transport = mode.transport;
    this.#mode = { ...mode, path: options.path ?? mode.path };
    this.#fetch = options.fetch ?? ((url, init) => fetch(url, init));
    this.#base = new URL(this.#mode.path, options.url).toString();
    this.capabilities = {
      unreliable: false,
      independentChannels: false,
      serverPush: mode.intervalMs === 0,
      binary: true,
      maxMessageSize: DEFAULT_MAX_MESSAGE_SIZE,
      maxUnreliableSize: 0,
    };
    void this.#open(options.connectTimeoutMs ?? 10_000);
  }

  async #open(timeoutMs: number): Promise<void> {
    try {
      const response = await this.#fetch(`${this.#base}/open`, { method: 'POST', signal: AbortSignal.timeout(timeoutMs) });
      if (!response.ok) throw new Error(`server answered ${response.status}`);
      const session = (await response.json()) as { sid: string; holdMs: number; maxMessageSize: number; maxBatchMessages?: number };
      this.#sid = session.sid;
      this.#maxBatchMessages = session.maxBatchMessages ?? DEFAULT_MAX_BATCH_MESSAGES;
      this.#immediateGets = session.holdMs === 0;
      this.capabilities = { ...this.capabilities, maxMessageSize: session.maxMessageSize };
    } catch (error) {
      this.finishClose({ code: CloseCode.abnormal, reason: new ConnectError(`${this.transport} open failed: ${(error as Error).message}`).message, wasClean: false });
      return;
    }
    // close() while opening: now that the session exists, tell the server.
    if (this.#requestedClose) return this.#sendClose(this.#requestedClose.code, this.#requestedClose.reason);
    this.markOpen();
    void this.#pollLoop();
  }

  protected flush(): void {
    if (!this.#posting && this.outbound.length > 0 && this.#sid) this.#postDone = this.#post();
  }

  protected override sinkBufferedBytes(): number {
    return this.#postingBytes;
  }

  protected closeTransport(code: number, reason: string): void {
    this.#requestedClose = { code, reason };
    if (!this.#sid) return; // #open finishes the close once it knows the session
    void this.#sendClose(code, reason);
  }

  async #sendClose(code: number, reason: string): Promise<void> {
    // What was queued before close() goes first.
    while (this.#posting || this.outbound.length > 0) {
      this.flush();
      await this.#postDone;
      if (this.#closed()) return;
    }
    this.#poll?.abort();
    clearTimeout(this.#pollTimer);
    try {
      await this.#request(`${this.#base}/${this.#sid}/close`, { method: 'POST', body: JSON.stringify({ code, reason }), headers: { 'content-type': 'application/json' } });
      this.finishClose({ code, reason, wasClean: true });
    } catch (error) {
      this.finishClose({ code, reason: `${reason} (close not delivered: ${(error as Error).message})`, wasClean: false });
    }
  }

  /** Paused, no GET is made: the server keeps this client's messages queued, where its slow-consumer policy sees them. */
  protected override setReadingPaused(paused: boolean): void {
    if (paused) this.#reading.pause(() => this.setReadingPaused(false));
    else this.#reading.resume();
  }

  async #pollLoop(): Promise<void> {
    while (this.state === 'open') {
      if (this.#reading.paused) {
        await this.#reading.paused;
        continue;
      }
      const started = Date.now();
      this.#poll = new AbortController();
      let body: Uint8Array;
      try {
        body = await this.#request(`${this.#base}/${this.#sid}?ack=${this.#nextDownSeq}`, { signal: this.#poll.signal });
        if (this.#immediateGets) this.#sampleRtt(Date.now() - started);
      } catch (error) {
        if (this.state !== 'open') return;
        this.#lost(error);
        return;
      }
      if (this.#closed() || !this.#deliverBatch(body)) return;
      const wait = this.#mode.intervalMs - (Date.now() - started);
      if (wait > 0) await new Promise((resolve) => (this.#pollTimer = setTimeout(resolve, wait)));
    }
  }

  /**
   * Delivers a batch from a GET's answer or a POST's: messages an earlier answer already delivered
   * come again (a lost response, or a POST's and a GET's answers both carrying them) and are skipped.
   * False when the connection ended (a close record, or a malformed batch).
   */
  #deliverBatch(body: Uint8Array): boolean {
    let batch;
    try {
      batch = decodeBatch(body, this.capabilities.maxMessageSize);
    } catch (error) {
      this.finishClose({ code: CloseCode.protocolError, reason: `bad batch from server: ${(error as Error).message}`, wasClean: false });
      return false;
    }
    for (let i = 0; i < batch.messages.length && this.state !== 'closed'; i++) {
      if (batch.firstSeq + i < this.#nextDownSeq) continue;
      this.#nextDownSeq = batch.firstSeq + i + 1;
      this.deliver(batch.messages[i]!);
    }
    if (batch.close) {
      // Let the server forget the acknowledged messages; its session is already gone.
      this.finishClose({ ...(this.#requestedClose ?? batch.close), wasClean: true });
      return false;
    }
    return this.state !== 'closed';
  }

  async #post(): Promise<void> {
    const items: QueuedMessage[] = [];
    let bytes = 0;
    // The server refuses bodies much over its maxMessageSize (413), so a batch stays under it.
    const cap = Math.min(MAX_POST_BYTES, this.capabilities.maxMessageSize);
    let encoded = 0;
    while (this.outbound.length > 0 && items.length < this.#maxBatchMessages && (items.length === 0 || encoded + this.outbound.peek()!.prepared.size + FRAME_OVERHEAD <= cap)) {
      const item = this.outbound.shift()!;
      items.push(item);
      bytes += item.prepared.size;
      encoded += item.prepared.size + FRAME_OVERHEAD;
    }
    this.#posting = items;
    this.#postingBytes = bytes;
    const firstSeq = this.#nextUpSeq;
    const body = encodeBatch({ firstSeq, messages: items.map((item) => item.prepared.message) });
    const started = Date.now();
    let answer: Uint8Array;
    try {
      // `ack` lets the server answer with what it queued for us meanwhile (an echo, a reply);
      // while reading is paused it is left out, so what is ours stays queued on the server.
      const ack = this.#reading.paused ? '' : `?ack=${this.#nextDownSeq}`;
      answer = await this.#request(`${this.#base}/${this.#sid}${ack}`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
      this.#sampleRtt(Date.now() - started);
    } catch (error) {
      this.#lost(error);
      return;
    }
    this.#nextUpSeq += items.length;
    for (const item of items) this.countSent(item.prepared);
    this.#posting = undefined;
    this.#postingBytes = 0;
    if (answer.length > 0 && !this.#deliverBatch(answer)) return;
    this.onFlushed();
    if (this.state === 'open') this.flush();
  }

  /**
   * fetch with retries and backoff, returning the whole body: a body cut off mid-way is retried
   * like a failed request (the sequence numbers make the retry safe). HTTP errors (4xx/5xx) are final.
   */
  async #request(url: string, init: Parameters<PollingFetch>[1] & object): Promise<Uint8Array> {
    for (let attempt = 1; ; attempt++) {
      try {
        const response = await this.#fetch(url, init);
        if (response.ok) return new Uint8Array(await response.arrayBuffer());
        const text = await response.text();
        throw Object.assign(new Error(`${response.status}: ${text}`), { final: true });
      } catch (error) {
        if ((error as { final?: boolean }).final || init.signal?.aborted || attempt >= MAX_ATTEMPTS || this.state === 'closed') throw error;
        await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** attempt));
      }
    }
  }

  /** Smoothed like TCP's SRTT (RFC 6298, alpha 1/8); a retried request's sample includes its backoff. */
  #sampleRtt(ms: number): void {
    this.counters.rttMs = this.counters.rttMs === null ? ms : this.counters.rttMs * 0.875 + ms * 0.125;
  }

  /** State read after an await (TypeScript's narrowing from before the await does not hold). */
  #closed(): boolean {
    return this.state === 'closed';
  }

  #lost(error: unknown): void {
    if (this.state === 'closed') return;
    this.#poll?.abort();
    clearTimeout(this.#pollTimer);
    this.finishClose({ code: CloseCode.abnormal, reason: `${this.transport} connection lost: ${(error as Error).message}`, wasClean: false });
  }
}

/** Opens a `long-polling` client connection (`/lp`). */
export function connectLongPolling(options: PollingClientOptions): Connection {
  return new PollingClientConnection(options, { transport: 'long-polling', path: '/lp', intervalMs: 0 });
}

/** Opens a `polling` client connection (`/poll`) that asks every `intervalMs` (default 100). */
export function connectPolling(options: PollingClientOptions & { intervalMs?: number }): Connection {
  return new PollingClientConnection(options, { transport: 'polling', path: '/poll', intervalMs: options.intervalMs ?? 100 });
}
