/**
 * The lab's server-side API (`/lab/...`): what the browser cannot see for itself.
 *
 * - A **wire tap**: a TCP relay on a loopback port in front of this server that records every byte
 *   both ways. The Learn page points a real browser WebSocket at it, so the upgrade request and
 *   response and every RFC 6455 frame shown are Chromium's and the server's actual bytes. Like any
 *   RFC 6455 §5.4 intermediary it may split large server messages into fragments (to show 0x0
 *   continuation frames) and can send a ping of its own (Chromium's pong is its real answer).
 * - **HTTP captures** of long-polling and polling: a browser fetch to the tap's port would be
 *   cross-origin, so a Node client in this process runs the exchange through a tap instead.
 * - **WebTransport CONNECTs** as the HTTP/3 layer decoded them (headers, time, status).
 * - **Server-side stats** of a client's connection (wire bytes, queue, drops), by client id.
 *
 * Parsing is done by the pure functions at the top (bytes in, records out); the relay only moves
 * bytes and feeds them in.
 */
import type http from 'node:http';
import net from 'node:net';
import type { Router } from '../../server/router.ts';
import { createClient } from '../../transports/node-client.ts';
import type { TransportName } from '../../transports/transport.ts';
import { WebRtcConnection } from '../../transports/webrtc/connection.ts';
import type { ConnectRequest } from '../../transports/webtransport/engine/h3-connection.ts';
import { applyMask, frameHeaderSize, Opcode, readFrameHeader, writeFrameHeader } from '../../transports/websocket/frame.ts';
import { createExperimentsApi } from './experiments-api.ts';
import { readBody } from '../../transports/http-body.ts';

// ——— pure codecs ———

/** RFC 6455 opcodes by number. */
export const OPCODE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Opcode).map(([name, code]) => [code, name]));

/** One WebSocket frame as it was on the wire; `payload` is unmasked. */
export interface WebSocketFrame {
  fin: boolean;
  /** RSV1-3 bits (non-zero only with extensions such as permessage-deflate). */
  rsv: number;
  opcode: number;
  masked: boolean;
  /** Header bytes (2–14): base header, extended length, masking key. */
  headerLength: number;
  payload: Uint8Array;
}

/**
 * Decodes the complete frames at the start of `bytes` (with the transport's frame codec). Returns
 * them and how many bytes they took; a trailing partial frame is left for the next call (feed it
 * again with more bytes).
 */
export function decodeWebSocketFrames(bytes: Uint8Array): { frames: WebSocketFrame[]; consumed: number } {
  const frames: WebSocketFrame[] = [];
  let at = 0;
  for (;;) {
    const read = readFrameHeader(bytes, at);
    if (!read || bytes.length - at < read.headerLength + read.header.payloadLength) break;
    const { header, headerLength } = read;
    const payload = bytes.slice(at + headerLength, at + headerLength + header.payloadLength);
    if (header.maskKey) applyMask(payload, header.maskKey);
    frames.push({ fin: header.fin, rsv: header.rsv, opcode: header.opcode, masked: header.maskKey !== undefined, headerLength, payload });
    at += headerLength + header.payloadLength;
  }
  return { frames, consumed: at };
}

/** Builds one frame. With `maskKey` the payload is masked (client to server frames must be). */
export function encodeWebSocketFrame(frame: { fin: boolean; opcode: number; payload: Uint8Array; maskKey?: Uint8Array }): Uint8Array {
  const { payload, maskKey } = frame;
  const out = new Uint8Array(frameHeaderSize(payload.length, maskKey !== undefined) + payload.length);
  const at = writeFrameHeader(out, 0, { fin: frame.fin, rsv: 0, opcode: frame.opcode, maskKey, payloadLength: payload.length });
  out.set(payload, at);
  if (maskKey) applyMask(out.subarray(at), maskKey);
  return out;
}

/**
 * Splits an unfragmented data frame into fragments of at most `maxPayload` bytes (first keeps the
 * opcode, the rest are 0x0 continuations, only the last has FIN), as RFC 6455 §5.4 lets an
 * intermediary do when no extension is in use. Other frames come back unchanged.
 */
export function fragmentFrame(frame: WebSocketFrame, maxPayload: number): WebSocketFrame[] {
  const splittable = frame.fin && frame.rsv === 0 && (frame.opcode === 0x1 || frame.opcode === 0x2) && frame.payload.length > maxPayload;
  if (!splittable) return [frame];
  const parts: WebSocketFrame[] = [];
  for (let at = 0; at < frame.payload.length; at += maxPayload) {
    const payload = frame.payload.subarray(at, at + maxPayload);
    const fin = at + maxPayload >= frame.payload.length;
    parts.push({ fin, rsv: 0, opcode: at === 0 ? frame.opcode : Opcode.continuation, masked: false, headerLength: frameHeaderSize(payload.length, false), payload });
  }
  return parts;
}

/** One HTTP/1.1 message head and where its body ends. */
export interface HttpMessage {
  /** Request line or status line. */
  startLine: string;
  headers: [string, string][];
  /** Bytes of head (with the blank line) and body together. */
  length: number;
  bodyLength: number;
}

const CRLFCRLF = [13, 10, 13, 10];

function indexOfSequence(bytes: Uint8Array, sequence: number[], from: number): number {
  outer: for (let i = from; i <= bytes.length - sequence.length; i++) {
    for (let j = 0; j < sequence.length; j++) if (bytes[i + j] !== sequence[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * Reads the HTTP/1.1 message at the start of `bytes` (head, then a body framed by Content-Length or
 * chunked encoding; none otherwise). Null while it is incomplete.
 */
export function readHttpMessage(bytes: Uint8Array): HttpMessage | null {
  const end = indexOfSequence(bytes, CRLFCRLF, 0);
  if (end < 0) return null;
  const lines = new TextDecoder('latin1').decode(bytes.subarray(0, end)).split('\r\n');
  const headers = lines.slice(1).map((line): [string, string] => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon).trim(), line.slice(colon + 1).trim()];
  });
  const header = (name: string) => headers.find(([key]) => key.toLowerCase() === name)?.[1];
  const headLength = end + 4;
  let bodyLength = 0;
  if (header('transfer-encoding')?.toLowerCase().includes('chunked')) {
    let at = headLength;
    for (;;) {
      const lineEnd = indexOfSequence(bytes, [13, 10], at);
      if (lineEnd < 0) return null;
      const size = Number.parseInt(new TextDecoder().decode(bytes.subarray(at, lineEnd)), 16);
      at = lineEnd + 2 + size + 2;
      if (at > bytes.length) return null;
      if (size === 0) break; // no trailers are used here
    }
    bodyLength = at - headLength;
  } else {
    bodyLength = Number(header('content-length') ?? 0);
    if (bytes.length < headLength + bodyLength) return null;
  }
  return { startLine: lines[0]!, headers, length: headLength + bodyLength, bodyLength };
}

/** Short human view of a frame's payload: text, close code and reason, or hex. */
export function previewPayload(opcode: number, payload: Uint8Array, text: boolean): string {
  if (opcode === 0x8) {
    if (payload.length < 2) return '(no code)';
    return `${(payload[0]! << 8) | payload[1]!} ${new TextDecoder().decode(payload.subarray(2))}`.trim();
  }
  if (text || opcode === 0x9 || opcode === 0xa) {
    const shown = new TextDecoder().decode(payload.subarray(0, 120));
    return payload.length > 120 ? `${shown}…` : shown;
  }
  const hex = [...payload.subarray(0, 24)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  return payload.length > 24 ? `${hex} …` : hex;
}

// ——— the wire tap ———

export type Direction = 'client→server' | 'server→client';

export type TapRecord =
  | { kind: 'http'; connection: number; direction: Direction; t: number; startLine: string; headers: [string, string][]; bodyLength: number; wireBytes: number }
  | {
      kind: 'frame';
      connection: number;
      direction: Direction;
      t: number;
      opcode: number;
      opcodeName: string;
      fin: boolean;
      rsv: number;
      masked: boolean;
      payloadLength: number;
      wireBytes: number;
      preview: string;
      /** `tap` for frames the tap made (fragments, its ping); `peer` for the endpoint's own bytes. */
      origin: 'peer' | 'tap';
    };

const MAX_RECORDS = 2_000;
const TAP_LIFETIME_MS = 120_000;
const MAX_TAPS = 8;

/** Parses one direction of a tapped connection: HTTP messages, then frames after an upgrade. */
class DirectionParser {
  phase: 'http' | 'frames' = 'http';
  #pending = new Uint8Array(0);
  /** Opcode of the data message in progress (for previews of its continuations). */
  #messageOpcode = 0;

  constructor(
    readonly direction: Direction,
    readonly connection: number,
    readonly record: (record: TapRecord) => void,
    readonly clock: () => number,
  ) {}

  /** Takes bytes; returns the complete units they finish, as their own byte ranges. */
  feed(bytes: Uint8Array): { http: HttpMessage[]; frames: { frame: WebSocketFrame; bytes: Uint8Array }[]; rawHttp: Uint8Array[] } {
    const joined = new Uint8Array(this.#pending.length + bytes.length);
    joined.set(this.#pending);
    joined.set(bytes, this.#pending.length);
    const out = { http: [] as HttpMessage[], frames: [] as { frame: WebSocketFrame; bytes: Uint8Array }[], rawHttp: [] as Uint8Array[] };
    let at = 0;
    while (this.phase === 'http') {
      const message = readHttpMessage(joined.subarray(at));
      if (!message) break;
      out.http.push(message);
      out.rawHttp.push(joined.subarray(at, at + message.length));
      at += message.length;
      this.recordHttp(message);
      const upgrade = message.headers.some(([name, value]) => name.toLowerCase() === 'upgrade' && value.toLowerCase() === 'websocket');
      if (upgrade && (this.direction === 'client→server' || message.startLine.includes(' 101 '))) this.phase = 'frames';
    }
    if (this.phase === 'frames') {
      const { frames, consumed } = decodeWebSocketFrames(joined.subarray(at));
      let offset = at;
      for (const frame of frames) {
        const size = frame.headerLength + frame.payload.length;
        out.frames.push({ frame, bytes: joined.subarray(offset, offset + size) });
        offset += size;
      }
      at += consumed;
    }
    this.#pending = joined.slice(at);
    return out;
  }

  recordHttp(message: HttpMessage): void {
    this.record({ kind: 'http', connection: this.connection, direction: this.direction, t: this.clock(), startLine: message.startLine, headers: message.headers, bodyLength: message.bodyLength, wireBytes: message.length });
  }

  recordFrame(frame: WebSocketFrame, origin: 'peer' | 'tap'): void {
    if (frame.opcode === 0x1 || frame.opcode === 0x2) this.#messageOpcode = frame.opcode;
    const text = frame.opcode === 0x1 || (frame.opcode === 0x0 && this.#messageOpcode === 0x1);
    this.record({
      kind: 'frame',
      connection: this.connection,
      direction: this.direction,
      t: this.clock(),
      opcode: frame.opcode,
      opcodeName: OPCODE_NAMES[frame.opcode] ?? 'reserved',
      fin: frame.fin,
      rsv: frame.rsv,
      masked: frame.masked,
      payloadLength: frame.payload.length,
      wireBytes: frame.headerLength + frame.payload.length,
      preview: previewPayload(frame.opcode, frame.payload, text),
      origin,
    });
  }
}

export interface TapOptions {
  /** Split server data frames above this many payload bytes into fragments (0: never). */
  fragmentAbove?: number;
}

/**
 * A recording TCP relay: listens on `host`:0 and forwards each connection to `host`:`port`.
 * Client bytes pass through untouched; server bytes pass through frame by frame once upgraded
 * (so the tap can fragment them or slip in a ping between frames).
 */
export class WireTap {
  readonly records: TapRecord[] = [];
  readonly #server: net.Server;
  readonly #started = performance.now();
  readonly #toClients = new Set<{ socket: net.Socket; parser: DirectionParser }>();
  readonly #sockets = new Set<net.Socket>();
  #connections = 0;
  dropped = 0;

  constructor(
    readonly host: string,
    readonly port: number,
    readonly options: TapOptions = {},
  ) {
    this.#server = net.createServer({ noDelay: true }, (client) => this.#relay(client));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, this.host, resolve);
    });
    return (this.#server.address() as net.AddressInfo).port;
  }

  /** Sends a ping of the tap's own to every upgraded client (their pongs are recorded). */
  ping(payload = 'switchyard lab tap'): number {
    let sent = 0;
    for (const { socket, parser } of this.#toClients) {
      if (parser.phase !== 'frames' || socket.destroyed) continue;
      const frame: WebSocketFrame = { fin: true, rsv: 0, opcode: 0x9, masked: false, headerLength: 2, payload: new TextEncoder().encode(payload) };
      socket.write(encodeWebSocketFrame(frame));
      parser.recordFrame(frame, 'tap');
      sent++;
    }
    return sent;
  }

  close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #record = (record: TapRecord) => {
    if (this.records.length < MAX_RECORDS) this.records.push(record);
    else this.dropped++;
  };

  #clock = () => Math.round((performance.now() - this.#started) * 100) / 100;

  #relay(client: net.Socket): void {
    const id = ++this.#connections;
    const upstream = net.connect({ host: this.host, port: this.port, noDelay: true });
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    const up = new DirectionParser('client→server', id, this.#record, this.#clock);
    const down = new DirectionParser('server→client', id, this.#record, this.#clock);
    const entry = { socket: client, parser: down };
    this.#toClients.add(entry);
    client.on('close', () => this.#toClients.delete(entry));
    client.on('data', (bytes: Buffer) => {
      upstream.write(bytes);
      for (const { frame } of up.feed(bytes).frames) up.recordFrame(frame, 'peer');
    });
    upstream.on('data', (bytes: Buffer) => {
      const { rawHttp, frames } = down.feed(bytes);
      for (const raw of rawHttp) client.write(raw);
      for (const { frame, bytes: original } of frames) {
        const parts = this.options.fragmentAbove ? fragmentFrame(frame, this.options.fragmentAbove) : [frame];
        if (parts.length === 1) {
          client.write(original);
          down.recordFrame(frame, 'peer');
          continue;
        }
        for (const part of parts) {
          client.write(encodeWebSocketFrame(part));
          down.recordFrame(part, 'tap');
        }
      }
    });
    // Bytes of a message still incomplete wait in the parser; the client gets them once whole.
  }
}

// ——— the HTTP API ———

/** A WebTransport CONNECT as the server's HTTP/3 layer decoded it. */
export interface ConnectRecord {
  at: number;
  path: string;
  authority: string;
  origin: string | undefined;
  headers: [string, string][];
  status: number;
}

export interface LabApiOptions {
  router: Router;
  host: string;
  /** The server's TCP port (known once it listens). */
  port: () => number;
  /** Whether `/lab/experiments` may start experiments on this machine (they build namespaces as root). */
  experiments: boolean;
  /** Folder of the built lab the plugin serves (the live network's server serves the same). */
  staticDir?: string | undefined;
}

export interface LabApi {
  /** Answers a `/lab/...` request. */
  handle(request: http.IncomingMessage, response: http.ServerResponse): void;
  /** Records a WebTransport CONNECT and the status the server answered. */
  recordConnect(request: ConnectRequest, status: number): void;
  close(): Promise<void>;
}

const MAX_CONNECTS = 50;
/** Longest wait for a captured session's close exchange. */
const CAPTURE_CLOSE_TIMEOUT_MS = 2_000;

function send(response: http.ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
}

/** The JSON object a request carries; {} for anything else (too big, not JSON, not an object). */
async function readJson(request: http.IncomingMessage): Promise<Record<string, unknown>> {
  const body = await readBody(request, 64 * 1024).catch(() => undefined);
  try {
    const value: unknown = JSON.parse(body?.length ? Buffer.from(body).toString('utf8') : '{}');
    return value && typeof value === 'object' ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/**
 * The lab API answers only its own pages: no other origin (a page anywhere on the web the
 * developer happens to visit), and bodies only as `application/json`, which a cross-site form
 * cannot send and a cross-site fetch cannot send without a preflight we never grant.
 */
export function crossSiteRefusal(request: http.IncomingMessage): { status: number; code: 'ERR_CROSS_ORIGIN' | 'ERR_CONTENT_TYPE'; message: string } | undefined {
  const origin = request.headers.origin;
  if (origin !== undefined) {
    let host: string | undefined;
    try {
      host = new URL(origin).host;
    } catch {
      host = undefined;
    }
    if (host === undefined || host !== request.headers.host?.toLowerCase()) return { status: 403, code: 'ERR_CROSS_ORIGIN', message: `the lab answers its own pages only, not ${origin}` };
  }
  const type = request.headers['content-type']?.split(';')[0]!.trim().toLowerCase();
  if (type !== undefined && type !== 'application/json') return { status: 415, code: 'ERR_CONTENT_TYPE', message: 'the lab API takes application/json bodies only' };
  return undefined;
}

export function createLabApi(options: LabApiOptions): LabApi {
  const taps = new Map<string, { tap: WireTap; timer: ReturnType<typeof setTimeout> }>();
  const connects: ConnectRecord[] = [];
  let nextTap = 1;
  const experiments = createExperimentsApi(options.staticDir);
  // Taps connect to the server on loopback when it listens on every interface.
  const tapHost = options.host === '0.0.0.0' || options.host === '::' ? '127.0.0.1' : options.host;

  async function openTap(tapOptions: TapOptions): Promise<{ id: string; port: number; tap: WireTap }> {
    if (taps.size >= MAX_TAPS) {
      // The oldest tap makes room: a lab page left open must not exhaust the server.
      const [oldest] = taps.keys();
      await closeTap(oldest!);
    }
    const id = String(nextTap++);
    const tap = new WireTap(tapHost, options.port(), tapOptions);
    const port = await tap.listen();
    const timer = setTimeout(() => void closeTap(id), TAP_LIFETIME_MS);
    timer.unref();
    taps.set(id, { tap, timer });
    return { id, port, tap };
  }

  async function closeTap(id: string): Promise<boolean> {
    const entry = taps.get(id);
    if (!entry) return false;
    taps.delete(id);
    clearTimeout(entry.timer);
    await entry.tap.close();
    return true;
  }

  /** One real long-polling or polling session from a Node client through a tap: open, one message to itself, close. */
  async function captureHttp(transport: TransportName, size: number): Promise<{ records: TapRecord[]; roundTripMs: number }> {
    const { id, port, tap } = await openTap({});
    const client = createClient({ url: `http://${tapHost.includes(':') ? `[${tapHost}]` : tapHost}:${port}`, transports: transport, reconnect: false });
    try {
      await client.connect();
      const arrived = new Promise<void>((resolve) => client.on('message', () => resolve()));
      const started = performance.now();
      await client.send(client.id!, new Uint8Array(size));
      await arrived;
      const roundTripMs = Math.round((performance.now() - started) * 100) / 100;
      // The connection closes once the server answered its close request, which the tap records
      // before passing it on; bounded in case the answer never comes.
      const closed = client.connection!.closed;
      client.close();
      await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, CAPTURE_CLOSE_TIMEOUT_MS).unref())]);
      return { records: [...tap.records], roundTripMs };
    } finally {
      client.close();
      await closeTap(id);
    }
  }

  async function route(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://lab');
    const parts = url.pathname.split('/').filter(Boolean); // ['lab', ...]
    const method = request.method ?? 'GET';
    const refused = crossSiteRefusal(request);
    if (refused) return send(response, refused.status, { error: { code: refused.code, message: refused.message } });
    if (parts[1] === 'experiments') {
      if (!options.experiments) return send(response, 403, { error: { code: 'ERR_EXPERIMENTS_OFF', message: 'this server does not run experiments for the lab: start it on a loopback address, or with --lab-experiments' } });
      return experiments.handle(request, response, parts.slice(2), url.searchParams);
    }
    if (parts[1] === 'taps') {
      if (parts.length === 2 && method === 'POST') {
        const body = await readJson(request);
        const fragmentAbove = typeof body.fragmentAbove === 'number' && body.fragmentAbove > 0 ? Math.max(16, Math.floor(body.fragmentAbove)) : 0;
        const { id, port } = await openTap({ fragmentAbove });
        return send(response, 201, { id, port, fragmentAbove, lifetimeMs: TAP_LIFETIME_MS });
      }
      const entry = taps.get(parts[2] ?? '');
      if (!entry) return send(response, 404, { error: { code: 'ERR_NO_TAP', message: 'no such tap (taps live two minutes)' } });
      if (parts.length === 3 && method === 'GET') return send(response, 200, { records: entry.tap.records, dropped: entry.tap.dropped });
      if (parts.length === 4 && parts[3] === 'ping' && method === 'POST') return send(response, 200, { pings: entry.tap.ping() });
      if (parts.length === 3 && method === 'DELETE') return send(response, 200, { closed: await closeTap(parts[2]!) });
    }
    if (parts[1] === 'http-capture' && method === 'POST') {
      const body = await readJson(request);
      const transport = body.transport === 'polling' ? 'polling' : body.transport === 'long-polling' ? 'long-polling' : undefined;
      if (!transport) return send(response, 400, { error: { code: 'ERR_BAD_TRANSPORT', message: 'transport must be long-polling or polling' } });
      const size = typeof body.size === 'number' ? Math.min(Math.max(1, Math.floor(body.size)), 65_536) : 64;
      return send(response, 200, await captureHttp(transport, size));
    }
    if (parts[1] === 'clients' && parts[2] && method === 'GET') {
      const connection = options.router.clients.get(decodeURIComponent(parts[2]))?.connection;
      if (!connection) return send(response, 404, { error: { code: 'ERR_UNKNOWN_CLIENT', message: 'no connected client with that id' } });
      // WebRTC's counters come from an asynchronous getStats(): wait for a sample of now, so a page's before/after snapshots differ.
      const stats = connection instanceof WebRtcConnection ? await connection.currentStats() : connection.stats();
      return send(response, 200, { transport: connection.transport, state: connection.state, queued: connection.queued, writable: connection.writable, stats, at: Date.now() });
    }
    if (parts[1] === 'webtransport' && parts[2] === 'connects' && method === 'GET') {
      const tag = url.searchParams.get('tag');
      return send(response, 200, { connects: tag ? connects.filter((c) => c.path.includes(`lab=${tag}`)) : connects });
    }
    send(response, 404, { error: { code: 'ERR_NOT_FOUND', message: `no lab route for ${method} ${url.pathname}` } });
  }

  return {
    handle(request, response) {
      route(request, response).catch((error: unknown) => {
        if (!response.headersSent) send(response, 500, { error: { code: 'ERR_LAB', message: (error as Error).message } });
      });
    },
    recordConnect(request, status) {
      connects.push({ at: Date.now(), path: request.path, authority: request.authority, origin: request.origin, headers: request.headers, status });
      if (connects.length > MAX_CONNECTS) connects.shift();
    },
    async close() {
      await Promise.all([...[...taps.keys()].map(closeTap), experiments.close()]);
    },
  };
}
