/**
 * The `websocket` transport, client side, over the platform's WebSocket API: the browser's native
 * `WebSocket`, or in Node the `ws` class (same API; see `node.ts`). Browser-safe: no Node imports.
 */
import { BaseConnection, DEFAULT_MAX_MESSAGE_SIZE, messageSize, WIRE_BUFFER_LIMIT } from '../base-connection.ts';
import { ConnectError } from '../errors.ts';
import type { ClientTransportOptions, Connection, Message, TransportCapabilities } from '../transport.ts';
import { CloseCode } from '../transport.ts';
import { frameHeaderSize } from './frame.ts';

/** A WebSocket class with the browser's API (the global `WebSocket`, or `ws`'s in Node). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocket;

export interface WebSocketClientOptions extends ClientTransportOptions {
  /** WebSocket implementation; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Path of the WebSocket endpoint on the server. Default `/ws`. */
  path?: string;
  /**
   * Binary type to ask for. Default 'arraybuffer' (the browser's best); `ws` in Node also offers
   * 'nodebuffer', which hands over each message without copying it into an ArrayBuffer.
   */
  binaryType?: 'arraybuffer' | 'nodebuffer';
}

/**
 * A WebSocket that can hold several sends back and write them in one go, and stop reading (Node's
 * `ws` over a corkable, pausable socket, see `node.ts`); the browser's WebSocket can do neither.
 */
interface CorkableWebSocket extends WebSocket {
  cork?(): void;
  uncork?(): void;
  pause?(): void;
  resume?(): void;
}

/** Default endpoint path, shared with the server. */
export const DEFAULT_WEBSOCKET_PATH = '/ws';


/**
 * A flush writes its messages corked in chunks of this many (where the WebSocket can cork: `ws` in
 * Node): far fewer syscalls than one write per message, while the server can start on the first
 * chunk as the next is written. With both sides writing a whole flush at once, a pipelined
 * exchange convoys (each side idle while the other handles the batch): measured with 32 echoes in
 * flight, 75k msg/s for whole flushes, 73k for one write per message, 100–130k with chunks of 8.
 */
const MESSAGES_PER_WRITE = 8;

/** The browser's WebSocket has no drain event: while something waits, bufferedAmount is polled. */
const POLL_INTERVAL_MS = 5;

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** Longest close reason a close frame carries (125-byte control payload minus the 2-byte code). */
const MAX_CLOSE_REASON_BYTES = 123;

const OPEN = 1;

/** `http(s)://host[/base]` → `ws(s)://host[/base]/ws`; ws:// and wss:// URLs keep their scheme. */
export function webSocketUrl(base: string, path: string = DEFAULT_WEBSOCKET_PATH): string {
  const url = new URL(base);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  url.pathname = url.pathname.replace(/\/+$/, '') + path;
  return url.toString();
}

/** Cuts a close reason to 123 UTF-8 bytes at a character boundary (longer ones make send fail). */
export function closeReasonForWire(reason: string): string {
  const bytes = new TextEncoder().encode(reason);
  if (bytes.length <= MAX_CLOSE_REASON_BYTES) return reason;
  let end = MAX_CLOSE_REASON_BYTES;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return new TextDecoder().decode(bytes.subarray(0, end));
}

const CAPABILITIES: TransportCapabilities = {
  unreliable: false,
  independentChannels: false,
  serverPush: true,
  binary: true,
  maxMessageSize: DEFAULT_MAX_MESSAGE_SIZE,
  maxUnreliableSize: 0,
};

/**
 * Client end of the `websocket` transport.
 *
 * Stats: `wireBytesIn/Out` count each message's payload plus its exact RFC 6455 frame header
 * (masked outbound, unmasked inbound), assuming the usual one frame per message. The browser API
 * hides the HTTP upgrade, control frames (ping/pong/close) and TLS, so those are not included.
 * `rttMs` stays null: the client core's heartbeat measures RTT.
 */
class WebSocketClientConnection extends BaseConnection {
  readonly transport = 'websocket' as const;
  readonly capabilities = CAPABILITIES;
  readonly #socket: CorkableWebSocket;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #pollTimer: ReturnType<typeof setTimeout> | undefined;
  /** The code and reason this side asked for, reported as its own close info. */
  #requestedClose: { code: number; reason: string } | undefined;
  /** Why opening failed, when the platform said (ws in Node does; browsers do not). */
  #errorMessage = '';

  constructor(options: WebSocketClientOptions) {
    super({ backpressure: options.backpressure, laneFallback: options.laneFallback, defaultPolicy: 'wait' });
    this.counters.wireBytesIn = 0;
    this.counters.wireBytesOut = 0;
    const WebSocketClass = options.WebSocket ?? globalThis.WebSocket;
    const url = webSocketUrl(options.url, options.path);
    const socket = new WebSocketClass(url);
    this.#socket = socket;
    socket.binaryType = (options.binaryType ?? 'arraybuffer') as BinaryType;
    socket.onopen = () => {
      clearTimeout(this.#connectTimer);
      this.markOpen();
    };
    socket.onmessage = (event: MessageEvent<string | ArrayBuffer | Uint8Array>) => {
      const { data } = event;
      // A Node Buffer becomes a plain Uint8Array view of the same bytes: no copy, one type for users.
      const message: Message = typeof data === 'string' ? data : data instanceof Uint8Array ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
      this.counters.wireBytesIn! += wireSize(messageSize(message), false);
      this.deliver(message);
    };
    // Always keep an error listener: with `ws`, an 'error' without one would throw.
    socket.onerror = (event: Event) => {
      const message = (event as Event & { message?: unknown }).message;
      if (typeof message === 'string') this.#errorMessage = message;
    };
    socket.onclose = (event: CloseEvent) => this.#onClose(event);
    const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#connectTimer = setTimeout(() => {
      if (this.state !== 'connecting') return;
      const error = new ConnectError(`websocket to ${url} did not open within ${timeoutMs} ms`);
      this.#finish({ code: CloseCode.abnormal, reason: error.message, wasClean: false });
      socket.close();
    }, timeoutMs);
  }

  protected flush(): void {
    if (this.#socket.readyState !== OPEN) return;
    // Corked writes still count in bufferedAmount, so the limit holds.
    for (let written = 0; this.outbound.length > 0 && this.#socket.bufferedAmount < WIRE_BUFFER_LIMIT; written++) {
      if (written % MESSAGES_PER_WRITE === 0) {
        this.#socket.uncork?.();
        this.#socket.cork?.();
      }
      this.#write();
    }
    this.#socket.uncork?.();
    this.onFlushed();
    this.#pollWhileWaiting();
  }

  protected override sinkBufferedBytes(): number {
    return this.#socket.bufferedAmount;
  }

  /** `ws` stops reading its socket, so TCP holds the server back; a browser's WebSocket cannot. */
  protected override setReadingPaused(paused: boolean): void {
    if (paused) this.#socket.pause?.();
    else this.#socket.resume?.();
  }

  protected closeTransport(code: number, reason: string): void {
    // Once the server started closing, its close is the one reported.
    if (this.#socket.readyState <= OPEN) this.#requestedClose = { code, reason };
    clearTimeout(this.#pollTimer);
    if (this.#socket.readyState === OPEN) {
      // What was sent before close() goes out before the close frame.
      this.#socket.cork?.();
      while (this.outbound.length > 0) this.#write();
      this.#socket.uncork?.();
    }
    // Browsers only let scripts send 1000 or 3000–4999; other codes go out as 1000 (this side
    // still reports the code it asked for).
    const wireCode = code === CloseCode.normal || (code >= 3000 && code <= 4999) ? code : CloseCode.normal;
    this.#socket.close(wireCode, closeReasonForWire(reason));
  }

  #write(): void {
    const item = this.outbound.shift()!;
    this.#socket.send(item.prepared.message);
    this.countSent(item.prepared);
    this.counters.wireBytesOut! += wireSize(item.prepared.size, true);
  }

  /** Re-checks bufferedAmount while messages wait or the queue sits above its high-water mark. */
  #pollWhileWaiting(): void {
    if (this.#pollTimer !== undefined || (this.outbound.length === 0 && this.writable)) return;
    this.#pollTimer = setTimeout(() => {
      this.#pollTimer = undefined;
      this.flush();
    }, POLL_INTERVAL_MS);
  }

  #onClose(event: CloseEvent): void {
    const requested = this.#requestedClose;
    if (requested) {
      this.#finish({ ...requested, wasClean: event.wasClean });
      return;
    }
    const reason = event.reason || (this.state === 'connecting' ? new ConnectError(`websocket did not open${this.#errorMessage ? `: ${this.#errorMessage}` : ''}`).message : '');
    this.#finish({ code: event.code, reason, wasClean: event.wasClean });
  }

  #finish(info: { code: number; reason: string; wasClean: boolean }): void {
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#pollTimer);
    this.finishClose(info);
  }
}

function wireSize(payloadLength: number, masked: boolean): number {
  return payloadLength + frameHeaderSize(payloadLength, masked);
}

/** Opens a `websocket` client connection to `options.url` (http→ws, https→wss, path `/ws`). */
export function connectWebSocket(options: WebSocketClientOptions): Connection {
  return new WebSocketClientConnection(options);
}
