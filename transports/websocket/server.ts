/**
 * The `websocket` transport, server side: `ws` in noServer mode on the shared HTTP(S) server.
 * `ws` does the handshake, parses what arrives and sends control frames; this file maps its
 * socket onto BaseConnection (lifecycle, the bounded queue, counters) and writes data frames
 * itself: each message framed once for all its recipients (its PreparedMessage keeps the frame),
 * at most two writes per flush, a large payload written as it is rather than copied.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { BaseConnection, DEFAULT_MAX_MESSAGE_SIZE, WIRE_BUFFER_LIMIT } from '../base-connection.ts';
import type { HttpTransportServer } from '../http-transport-server.ts';
import type { CloseInfo, Connection, ServerTransportOptions, TransportCapabilities, TransportStats } from '../transport.ts';
import { CloseCode } from '../transport.ts';
import { closeReasonForWire, DEFAULT_WEBSOCKET_PATH } from './client.ts';
import { COPY_BELOW } from '../codec/bytes.ts';
import type { PreparedMessage } from '../prepared-message.ts';
import { frameHeaderSize, Opcode, serverFrame, writeServerFrameHeader } from './frame.ts';

export interface WebSocketServerOptions extends ServerTransportOptions {
  /** Path of the upgrade endpoint. Default `/ws`. */
  path?: string;
  /**
   * How long a close handshake may take before the socket is destroyed (ms). A slow consumer
   * closed with 4008 usually never reads the close frame, so this bounds its lifetime. Default 5 000.
   */
  closeTimeoutMs?: number;
}

const DEFAULT_CLOSE_TIMEOUT_MS = 5_000;

/** Close codes ws may send on its own, for a frame it rejected (it sends them without a reason). */
const RECEIVER_CLOSE_REASONS: Record<number, string> = {
  [CloseCode.protocolError]: 'protocol error: invalid frame',
  [CloseCode.invalidPayload]: 'invalid UTF-8 in a text message',
};

/** Codes ws (RFC 6455 §7.4) accepts in an outgoing close frame. */
function isSendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/**
 * A `ws` socket that names the cause when ws itself closes the connection (a frame over
 * maxPayload, a protocol error): ws sends those codes with an empty reason. It also remembers the
 * close it sent, so the server side can report it when the peer never answers.
 */
function reasonedWebSocketClass(maxMessageSize: number) {
  return class ReasonedWebSocket extends WebSocket {
    sentClose: { code: number; reason: string } | undefined;
    override close(code?: number, data?: string | Buffer): void {
      if (this.readyState === WebSocket.OPEN && this.sentClose === undefined && code !== undefined) {
        const reason = data !== undefined ? data.toString() : code === CloseCode.messageTooBig ? `message too big: the limit is ${maxMessageSize} bytes` : (RECEIVER_CLOSE_REASONS[code] ?? '');
        this.sentClose = { code, reason };
        super.close(code, reason);
        return;
      }
      super.close(code, data);
    }
  };
}
type ReasonedWebSocket = InstanceType<ReturnType<typeof reasonedWebSocketClass>>;

/** A message's frame (serverFrame) as Buffers: a socket takes them as they are, without a Buffer view made per write. */
const nodeServerFrame = (prepared: PreparedMessage): readonly Buffer[] => serverFrame(prepared).map((part) => Buffer.from(part.buffer, part.byteOffset, part.byteLength));

/**
 * The last batch framed (`batchFrames`), kept until the current flush round ends: in a fan-out
 * every subscriber's flush holds the same messages in the same order, so the batch is framed and
 * copied once and the same chunks are written to every socket (as a lone message's frame is
 * shared through its PreparedMessage).
 */
let lastBatch: { items: readonly PreparedMessage[]; chunks: readonly Uint8Array[] } | undefined;
const forgetLastBatch = (): void => void (lastBatch = undefined);

/**
 * Several messages' frames for one write: framed into one buffer, small payloads copied in, a
 * large one (COPY_BELOW or more) written as it is, so a payload is never copied per recipient
 * unless it is small. The same messages as the previous batch of this flush round get its chunks.
 */
function batchFrames(items: readonly PreparedMessage[]): readonly Uint8Array[] {
  if (lastBatch && sameMessages(lastBatch.items, items)) return lastBatch.chunks;
  let copied = 0;
  for (const prepared of items) {
    const header = frameHeaderSize(prepared.size, false);
    copied += prepared.size < COPY_BELOW ? header + prepared.size : header;
  }
  const out = Buffer.allocUnsafe(copied);
  const chunks: Uint8Array[] = [];
  let offset = 0;
  let start = 0;
  for (const prepared of items) {
    const payload = prepared.bytes;
    offset = writeServerFrameHeader(out, offset, prepared.text ? Opcode.text : Opcode.binary, payload.length);
    if (payload.length < COPY_BELOW) {
      out.set(payload, offset);
      offset += payload.length;
    } else {
      chunks.push(out.subarray(start, offset), payload);
      start = offset;
    }
  }
  if (start < offset) chunks.push(out.subarray(start, offset));
  // Flushes of one round run in one callback: the batch is forgotten once they are all done.
  if (!lastBatch) queueMicrotask(forgetLastBatch);
  lastBatch = { items, chunks };
  return chunks;
}

function sameMessages(a: readonly PreparedMessage[], b: readonly PreparedMessage[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Server end of one WebSocket.
 *
 * Stats: `wireBytesIn/Out` are the socket's bytesRead/bytesWritten, so they include the HTTP
 * upgrade request and 101 response and every frame header and control frame (under TLS: the
 * plaintext bytes, TLS records not included).
 */
class WebSocketServerConnection extends BaseConnection {
  readonly transport = 'websocket' as const;
  readonly capabilities: TransportCapabilities;
  readonly #ws: ReasonedWebSocket;
  readonly #socket: Duplex & Partial<Pick<Socket, 'bytesRead' | 'bytesWritten'>>;
  #requestedClose: { code: number; reason: string } | undefined;
  /**
   * The socket's writableLength as of our last write or the last completion of one: it changes
   * only then (ws's few bytes of control frames aside), and a fan-out asks for it for every
   * recipient, so it is read once per write rather than once per delivery.
   */
  #sinkBytes = 0;
  readonly #afterBatch = (error?: Error | null) => {
    this.#sinkBytes = this.#socket.writableLength;
    if (error) return;
    this.onFlushed();
    if (this.outbound.length > 0) this.requestFlush();
  };

  constructor(ws: ReasonedWebSocket, socket: Duplex, capabilities: TransportCapabilities, options: WebSocketServerOptions) {
    super({ backpressure: options.backpressure, laneFallback: options.laneFallback, defaultPolicy: 'disconnect', flushTiming: 'after-io' });
    this.capabilities = capabilities;
    this.#ws = ws;
    this.#socket = socket;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      // A plain Uint8Array view (no copy): binary stays bytes, text is decoded once (ws validated it).
      this.deliver(isBinary ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : data.toString('utf8'));
    });
    // Receiver errors are fatal: ws already sent the close (with our reason); 'close' follows.
    ws.on('error', () => undefined);
    ws.on('close', (code: number, reason: Buffer) => this.#onClose(code, reason.toString('utf8')));
    // The upgrade is complete: the connection is open from the start.
    this.markOpen();
  }

  override stats(): TransportStats {
    const stats = super.stats();
    stats.wireBytesIn = this.#socket.bytesRead ?? null;
    stats.wireBytesOut = this.#socket.bytesWritten ?? null;
    return stats;
  }

  /**
   * Bytes in the socket's write buffer (not yet handed to the kernel). ws's own sender queues
   * nothing without compression, so this is its bufferedAmount, as of the last write (#sinkBytes).
   */
  protected override sinkBufferedBytes(): number {
    return this.#sinkBytes;
  }

  protected flush(): void {
    if (this.#ws.readyState !== WebSocket.OPEN) return;
    if (this.outbound.length === 0) {
      this.onFlushed();
      return;
    }
    // Everything queued this turn in one write: under load, one syscall (and under TLS one
    // record) per connection per turn rather than per message. Splitting off the first answers
    // for a pipelining peer cost a second write (and TLS record) per flush and, with clients that
    // write per message, bought no throughput (issue 13: 0.08 against 0.04 writes per echo).
    this.#writeFrames(WIRE_BUFFER_LIMIT - this.#socket.writableLength);
    this.onFlushed();
  }

  /** Stops reading the socket: TCP flow control then holds the peer back. */
  protected override setReadingPaused(paused: boolean): void {
    if (paused) this.#ws.pause();
    else this.#ws.resume();
  }

  protected closeTransport(code: number, reason: string): void {
    // Once the peer (or ws) started closing, that close is the one reported.
    if (this.#ws.readyState === WebSocket.OPEN) {
      this.#requestedClose = { code, reason };
      if (code === CloseCode.slowConsumer) {
        // The consumer is being dropped for not reading: its backlog would never arrive.
        this.counters.dropped += this.outbound.length;
        this.outbound.clear();
      } else {
        // What was sent before close() goes out before the close frame.
        this.#writeFrames(Infinity);
      }
    }
    this.#ws.close(isSendableCloseCode(code) ? code : CloseCode.normal, closeReasonForWire(reason));
  }

  /** Ends the connection without a close handshake (shutdown grace period over). */
  terminate(): void {
    this.#ws.terminate();
  }

  /**
   * Writes queued messages until `room` bytes are used (at least one message), in one write (a
   * writev when a large payload rides along). A message alone goes out as its PreparedMessage's
   * frame, built once however many connections send it; several as `batchFrames`, built once for
   * every connection of the flush round with the same messages. The write carries a callback that runs once Node's buffer took it: that resumes the flush and releases
   * drain waiters whether or not the socket ever reported 'drain' (it only does above its own
   * 16 KiB high-water mark).
   */
  #writeFrames(room: number): void {
    const items: PreparedMessage[] = [];
    let bytes = 0;
    // The websocket has one lane: its messages are taken without a QueuedMessage each.
    while (this.outbound.length > 0 && bytes < room) {
      const prepared = this.outbound.shiftPrepared()!;
      items.push(prepared);
      bytes += frameHeaderSize(prepared.size, false) + prepared.size;
      this.countSent(prepared);
    }
    if (items.length === 0) return;
    this.#write(items.length === 1 ? items[0]!.framed(nodeServerFrame) : batchFrames(items));
  }

  /** One write of `chunks` (corked into a writev when there are several), with the flush's callback. */
  #write(chunks: readonly Uint8Array[]): void {
    const last = chunks.length - 1;
    if (last > 0) this.#socket.cork();
    for (let i = 0; i < last; i++) this.#socket.write(chunks[i]!);
    this.#socket.write(chunks[last]!, this.#afterBatch);
    if (last > 0) this.#socket.uncork();
    this.#sinkBytes = this.#socket.writableLength;
  }

  #onClose(code: number, reason: string): void {
    // ws reports 1006 when no close frame came back.
    const wasClean = code !== CloseCode.abnormal;
    let info: CloseInfo;
    if (this.#requestedClose) info = { ...this.#requestedClose, wasClean };
    else if (wasClean) info = { code, reason, wasClean };
    else if (this.#ws.sentClose) info = { ...this.#ws.sentClose, wasClean };
    else info = { code, reason: reason || 'connection lost', wasClean };
    this.finishClose(info);
  }
}

/**
 * The `websocket` transport on the shared HTTP(S) server: answers upgrades on `path` (default
 * `/ws`), hands each socket over as an open Connection, closes all with 1001 on `close()`.
 * Server-side `wireBytesIn/Out` include the HTTP upgrade request and response.
 */
export class WebSocketTransportServer implements HttpTransportServer {
  readonly name = 'websocket' as const;
  readonly path: string;
  readonly #wss: WebSocketServer;
  readonly #options: WebSocketServerOptions;
  readonly #capabilities: TransportCapabilities;
  readonly #connections = new Set<WebSocketServerConnection>();
  readonly #closeTimeoutMs: number;
  #handler: ((connection: Connection) => void) | undefined;
  #closing = false;

  constructor(options: WebSocketServerOptions = {}) {
    this.#options = options;
    this.path = options.path ?? DEFAULT_WEBSOCKET_PATH;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.#capabilities = {
      unreliable: false,
      independentChannels: false,
      serverPush: true,
      binary: true,
      maxMessageSize,
      maxUnreliableSize: 0,
    };
    // `closeTimeout` (ws ≥ 8.18) is missing from @types/ws, hence the separate object.
    const wsOptions = {
      noServer: true,
      // ws rejects an oversized frame from its header, before buffering it, with 1009.
      maxPayload: maxMessageSize,
      perMessageDeflate: false,
      clientTracking: false,
      closeTimeout: this.#closeTimeoutMs,
      WebSocket: reasonedWebSocketClass(maxMessageSize),
    };
    this.#wss = new WebSocketServer(wsOptions);
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  onConnection(handler: (connection: Connection) => void): void {
    this.#handler = handler;
  }

  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const pathname = (request.url ?? '/').split('?')[0];
    if (pathname !== this.path) return false;
    if (this.#closing) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return true;
    }
    // An invalid handshake is answered (400) and closed by ws itself.
    this.#wss.handleUpgrade(request, socket, head, (ws) => {
      const connection = new WebSocketServerConnection(ws as ReasonedWebSocket, socket, this.#capabilities, this.#options);
      this.#connections.add(connection);
      void connection.closed.then(() => this.#connections.delete(connection));
      this.#handler?.(connection);
    });
    return true;
  }

  async close(): Promise<void> {
    this.#closing = true;
    const connections = [...this.#connections];
    for (const connection of connections) connection.close(CloseCode.goingAway, 'server shutting down');
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#closeTimeoutMs);
    });
    await Promise.race([Promise.all(connections.map((c) => c.closed)), grace]);
    clearTimeout(timer);
    for (const connection of this.#connections) connection.terminate();
    await Promise.all(connections.map((c) => c.closed));
    this.#wss.close();
  }
}
