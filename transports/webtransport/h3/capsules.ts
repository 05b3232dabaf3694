/**
 * Capsules (RFC 9297) on the WebTransport CONNECT stream, carried inside HTTP/3 DATA frames: a
 * varint type, a varint length, the payload. Capsules may be split across DATA frames and one
 * DATA frame may hold several, so the reader is incremental. Pure.
 */
import { readVarintType, varintLength, writeVarint } from '../../codec/varint.ts';
import { H3Error, H3ErrorCode } from './errors.ts';
import { readFrameLength } from './frames.ts';

export const CapsuleType = { DATAGRAM: 0x00, CLOSE_WEBTRANSPORT_SESSION: 0x2843, DRAIN_WEBTRANSPORT_SESSION: 0x78ae } as const;

/** Longest close reason the draft allows, in UTF-8 bytes. */
export const MAX_CLOSE_REASON_BYTES = 1024;

export function encodeCapsule(type: number, payload: Uint8Array): Uint8Array {
  const capsule = new Uint8Array(varintLength(type) + varintLength(payload.length) + payload.length);
  const offset = writeVarint(capsule, writeVarint(capsule, 0, type), payload.length);
  capsule.set(payload, offset);
  return capsule;
}

export class CapsuleReader {
  readonly #maxPayload: number;
  #buffer: Uint8Array = new Uint8Array(0);

  constructor(options: { maxPayload?: number } = {}) {
    this.#maxPayload = options.maxPayload ?? 64 * 1024;
  }

  push(bytes: Uint8Array): void {
    const joined = new Uint8Array(this.#buffer.length + bytes.length);
    joined.set(this.#buffer);
    joined.set(bytes, this.#buffer.length);
    this.#buffer = joined;
  }

  /** True when no partial capsule is held (the stream may end here cleanly). */
  get atBoundary(): boolean {
    return this.#buffer.length === 0;
  }

  next(): { type: number; payload: Uint8Array } | null {
    const type = readVarintType(this.#buffer, 0); // GREASE capsule types may exceed 2^53
    const length = type && readFrameLength(this.#buffer, type.next);
    if (!type || !length) return null;
    if (length.value > this.#maxPayload) throw new H3Error(H3ErrorCode.EXCESSIVE_LOAD, 'ERR_CAPSULE_TOO_LARGE', `capsule of ${length.value} bytes exceeds ${this.#maxPayload}`);
    const end = length.next + length.value;
    if (this.#buffer.length < end) return null;
    const payload = this.#buffer.slice(length.next, end);
    this.#buffer = this.#buffer.subarray(end);
    return { type: type.value, payload };
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * CLOSE_WEBTRANSPORT_SESSION: 32-bit code and UTF-8 reason. A reason over 1024 bytes is cut at a
 * character boundary rather than refused, so a close always goes out.
 */
export function encodeCloseSession(code: number, reason: string): Uint8Array {
  if (!Number.isInteger(code) || code < 0 || code > 0xffff_ffff) throw new RangeError(`close code must be a uint32, got ${code}`);
  let text = encoder.encode(reason);
  if (text.length > MAX_CLOSE_REASON_BYTES) {
    let end = MAX_CLOSE_REASON_BYTES;
    while ((text[end]! & 0xc0) === 0x80) end--;
    text = text.subarray(0, end);
  }
  const payload = new Uint8Array(4 + text.length);
  new DataView(payload.buffer).setUint32(0, code);
  payload.set(text, 4);
  return encodeCapsule(CapsuleType.CLOSE_WEBTRANSPORT_SESSION, payload);
}

export function decodeCloseSession(payload: Uint8Array): { code: number; reason: string } {
  if (payload.length < 4) throw new H3Error(H3ErrorCode.MESSAGE_ERROR, 'ERR_CLOSE_CAPSULE', 'close capsule shorter than its code');
  if (payload.length - 4 > MAX_CLOSE_REASON_BYTES) throw new H3Error(H3ErrorCode.MESSAGE_ERROR, 'ERR_CLOSE_CAPSULE', 'close reason over 1024 bytes');
  const code = new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0);
  try {
    return { code, reason: decoder.decode(payload.subarray(4)) };
  } catch (cause) {
    throw new H3Error(H3ErrorCode.MESSAGE_ERROR, 'ERR_CLOSE_CAPSULE', 'close reason is not UTF-8', { cause });
  }
}
