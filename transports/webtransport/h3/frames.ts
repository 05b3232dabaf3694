/**
 * HTTP/3 frames (RFC 9114 §7) and the stream/setting identifiers WebTransport needs. Pure:
 * `FrameReader` takes stream bytes split anywhere and yields frames; DATA payload is handed out in
 * pieces as it arrives, so a large DATA frame is never buffered whole.
 */
import { readVarint, readVarintType, varintLength, writeVarint } from '../../codec/varint.ts';
import { H3Error, H3ErrorCode } from './errors.ts';

export const FrameType = { DATA: 0x0, HEADERS: 0x1, CANCEL_PUSH: 0x3, SETTINGS: 0x4, PUSH_PROMISE: 0x5, GOAWAY: 0x7, MAX_PUSH_ID: 0xd } as const;

/** Unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2, WebTransport). */
export const StreamType = { CONTROL: 0x00, PUSH: 0x01, QPACK_ENCODER: 0x02, QPACK_DECODER: 0x03, WEBTRANSPORT_UNI: 0x54 } as const;

/** First varint of a bidirectional WebTransport stream (in place of a frame type). */
export const WEBTRANSPORT_BIDI_SIGNAL = 0x41;

export const Setting = {
  QPACK_MAX_TABLE_CAPACITY: 0x01,
  MAX_FIELD_SECTION_SIZE: 0x06,
  QPACK_BLOCKED_STREAMS: 0x07,
  ENABLE_CONNECT_PROTOCOL: 0x08,
  H3_DATAGRAM: 0x33,
  H3_DATAGRAM_DRAFT04: 0xffd277,
  ENABLE_WEBTRANSPORT_DRAFT02: 0x2b603742,
  WEBTRANSPORT_MAX_SESSIONS_DRAFT07: 0xc671706a,
} as const;

/** Reserved (GREASE) frame, stream and setting types: 0x1f × N + 0x21. */
export function isReservedType(type: number): boolean {
  return type >= 0x21 && (type - 0x21) % 0x1f === 0;
}

/** HTTP/2 frame types that HTTP/3 forbids (RFC 9114 §7.2.8). */
const HTTP2_FRAME_TYPES = new Set([0x2, 0x6, 0x8, 0x9]);
/** HTTP/2 setting ids that HTTP/3 forbids (RFC 9114 §7.2.4.1). */
const HTTP2_SETTINGS = new Set([0x2, 0x3, 0x4, 0x5]);

export function encodeFrameHeader(type: number, payloadLength: number): Uint8Array {
  const header = new Uint8Array(varintLength(type) + varintLength(payloadLength));
  writeVarint(header, writeVarint(header, 0, type), payloadLength);
  return header;
}

export function encodeFrame(type: number, payload: Uint8Array): Uint8Array {
  const header = encodeFrameHeader(type, payload.length);
  const frame = new Uint8Array(header.length + payload.length);
  frame.set(header);
  frame.set(payload, header.length);
  return frame;
}

export type FrameEvent =
  /** A whole frame other than DATA (unknown and reserved types included: the caller skips them). */
  | { kind: 'frame'; type: number; payload: Uint8Array }
  /** A piece of a DATA frame's payload; `end` on the last piece of that frame. */
  | { kind: 'data'; chunk: Uint8Array; end: boolean };

export class FrameReader {
  readonly #maxFramePayload: number;
  #buffer: Uint8Array = new Uint8Array(0);
  /** DATA payload bytes still to come of the current DATA frame. */
  #dataRemaining = 0;

  constructor(options: { maxFramePayload?: number } = {}) {
    this.#maxFramePayload = options.maxFramePayload ?? 64 * 1024;
  }

  /** Bytes held that are not yet a whole frame. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /** True between frames: the stream may end here without truncating a frame. */
  get atBoundary(): boolean {
    return this.#buffer.length === 0 && this.#dataRemaining === 0;
  }

  /** Hands over the bytes not yet parsed (between frames), e.g. when a stream changes hands. */
  takeBuffered(): Uint8Array {
    if (this.#dataRemaining > 0) throw new H3Error(H3ErrorCode.FRAME_ERROR, 'ERR_H3_HANDOVER', 'cannot hand over a stream in the middle of a DATA frame');
    const rest = this.#buffer;
    this.#buffer = new Uint8Array(0);
    return rest;
  }

  push(bytes: Uint8Array): void {
    if (this.#buffer.length === 0) this.#buffer = bytes;
    else {
      const joined = new Uint8Array(this.#buffer.length + bytes.length);
      joined.set(this.#buffer);
      joined.set(bytes, this.#buffer.length);
      this.#buffer = joined;
    }
  }

  /** The next frame or DATA piece, or null until more bytes arrive. */
  next(): FrameEvent | null {
    if (this.#dataRemaining > 0) {
      if (this.#buffer.length === 0) return null;
      const take = Math.min(this.#dataRemaining, this.#buffer.length);
      const chunk = this.#buffer.subarray(0, take);
      this.#buffer = this.#buffer.subarray(take);
      this.#dataRemaining -= take;
      return { kind: 'data', chunk, end: this.#dataRemaining === 0 };
    }
    const type = readVarintType(this.#buffer, 0); // GREASE types may exceed 2^53
    const length = type && readFrameLength(this.#buffer, type.next);
    if (!type || !length) return null;
    if (HTTP2_FRAME_TYPES.has(type.value)) throw new H3Error(H3ErrorCode.FRAME_UNEXPECTED, 'ERR_H3_HTTP2_FRAME', `HTTP/2 frame type 0x${type.value.toString(16)} in HTTP/3`);
    if (type.value === FrameType.DATA) {
      this.#buffer = this.#buffer.subarray(length.next);
      if (length.value === 0) return { kind: 'data', chunk: new Uint8Array(0), end: true };
      this.#dataRemaining = length.value;
      return this.next();
    }
    if (length.value > this.#maxFramePayload) {
      throw new H3Error(H3ErrorCode.EXCESSIVE_LOAD, 'ERR_H3_FRAME_TOO_LARGE', `frame 0x${type.value.toString(16)} of ${length.value} bytes exceeds ${this.#maxFramePayload}`);
    }
    if (this.#buffer.length < length.next + length.value) return null;
    const payload = this.#buffer.slice(length.next, length.next + length.value);
    this.#buffer = this.#buffer.subarray(length.next + length.value);
    return { kind: 'frame', type: type.value, payload };
  }
}

/** A frame or capsule length: a varint over 2^53 is a length no one can send, so a FRAME_ERROR. */
export function readFrameLength(bytes: Uint8Array, offset: number): { value: number; next: number } | null {
  const length = readVarintType(bytes, offset);
  if (length && length.value > Number.MAX_SAFE_INTEGER) throw new H3Error(H3ErrorCode.FRAME_ERROR, 'ERR_H3_LENGTH', 'length beyond 2^53');
  return length;
}

/** SETTINGS payload from (id, value) pairs. */
export function encodeSettings(settings: Iterable<readonly [number, number]>): Uint8Array {
  const parts: number[] = [];
  for (const [id, value] of settings) {
    for (const n of [id, value]) {
      const bytes = new Uint8Array(varintLength(n));
      writeVarint(bytes, 0, n);
      parts.push(...bytes);
    }
  }
  return Uint8Array.from(parts);
}

export function decodeSettings(payload: Uint8Array): Map<number, number> {
  const settings = new Map<number, number>();
  let offset = 0;
  while (offset < payload.length) {
    // GREASE setting ids and values are random 62-bit numbers: read them without the 2^53 check.
    const id = readVarintType(payload, offset);
    const value = id && readVarintType(payload, id.next);
    if (!id || !value) throw new H3Error(H3ErrorCode.FRAME_ERROR, 'ERR_H3_SETTINGS_TRUNCATED', 'SETTINGS frame ends inside a setting');
    if (settings.has(id.value)) throw new H3Error(H3ErrorCode.SETTINGS_ERROR, 'ERR_H3_SETTINGS_DUPLICATE', `setting 0x${id.value.toString(16)} sent twice`);
    if (HTTP2_SETTINGS.has(id.value)) throw new H3Error(H3ErrorCode.SETTINGS_ERROR, 'ERR_H3_SETTINGS_HTTP2', `HTTP/2 setting 0x${id.value.toString(16)} in HTTP/3`);
    settings.set(id.value, value.value);
    offset = value.next;
  }
  return settings;
}

/** GOAWAY payload: the stream (or push) id from which requests will not be processed. */
export function encodeGoaway(id: number): Uint8Array {
  const payload = new Uint8Array(varintLength(id));
  writeVarint(payload, 0, id);
  return payload;
}

export function decodeGoaway(payload: Uint8Array): number {
  const id = readVarint(payload, 0);
  if (!id || id.next !== payload.length) throw new H3Error(H3ErrorCode.FRAME_ERROR, 'ERR_H3_GOAWAY', 'malformed GOAWAY');
  return id.value;
}
