/**
 * QUIC variable-length integers (RFC 9000 §16): the top two bits of the first byte give the
 * length (1, 2, 4 or 8 bytes) for 6-, 14-, 30- or 62-bit values. Used by HTTP/3, WebTransport
 * and Switchyard's own batch and binary-envelope framing, so there is one codec for all of them.
 * Pure functions over bytes.
 */
import { ProtocolError } from '../errors.ts';

/** Largest value a varint can hold (2^62 - 1). */
export const VARINT_MAX = 2n ** 62n - 1n;
/** Largest varint value that is still a safe JavaScript number. */
const SAFE_MAX = Number.MAX_SAFE_INTEGER;

/** A value out of varint range, either way: a protocol error when it comes off the wire. */
export class VarintError extends ProtocolError {
  constructor(message: string) {
    super('ERR_VARINT_RANGE', message);
  }
}

/** Bytes needed to encode `value`. */
export function varintLength(value: number): 1 | 2 | 4 | 8 {
  if (!Number.isInteger(value) || value < 0 || value > SAFE_MAX) throw new VarintError(`not a varint value: ${value}`);
  if (value < 0x40) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x4000_0000) return 4;
  return 8;
}

/** Writes `value` at `offset` in `out`; returns the offset after it. */
export function writeVarint(out: Uint8Array, offset: number, value: number): number {
  const length = varintLength(value);
  if (offset + length > out.length) throw new VarintError('buffer too small for varint');
  switch (length) {
    case 1:
      out[offset] = value;
      break;
    case 2:
      out[offset] = 0x40 | (value >>> 8);
      out[offset + 1] = value & 0xff;
      break;
    case 4:
      out[offset] = 0x80 | (value >>> 24);
      out[offset + 1] = (value >>> 16) & 0xff;
      out[offset + 2] = (value >>> 8) & 0xff;
      out[offset + 3] = value & 0xff;
      break;
    case 8: {
      const high = Math.floor(value / 0x1_0000_0000);
      const low = value >>> 0;
      out[offset] = 0xc0 | (high >>> 24);
      out[offset + 1] = (high >>> 16) & 0xff;
      out[offset + 2] = (high >>> 8) & 0xff;
      out[offset + 3] = high & 0xff;
      out[offset + 4] = low >>> 24;
      out[offset + 5] = (low >>> 16) & 0xff;
      out[offset + 6] = (low >>> 8) & 0xff;
      out[offset + 7] = low & 0xff;
      break;
    }
  }
  return offset + length;
}

/** Encodes one varint into a fresh array. */
export function encodeVarint(value: number): Uint8Array {
  const out = new Uint8Array(varintLength(value));
  writeVarint(out, 0, value);
  return out;
}

/** A decoded varint and the offset just after it. */
export interface VarintRead {
  value: number;
  next: number;
}

/**
 * Reads a varint at `offset`. Returns `null` when the bytes end before the varint does
 * (the caller waits for more); throws VarintError when the value exceeds 2^53 - 1.
 */
export function readVarint(bytes: Uint8Array, offset: number): VarintRead | null {
  const read = readVarintType(bytes, offset);
  if (read && read.value > SAFE_MAX) throw new VarintError('varint exceeds 2^53 - 1');
  return read;
}

/**
 * Reads a varint that may exceed 2^53 − 1, such as the random GREASE frame, capsule, setting and
 * stream types peers send (0x1f·N + 0x21): above 2^53 the value is approximate, which is enough to
 * tell it is none of the (small) types we know. Never use it for lengths or ids.
 */
export function readVarintType(bytes: Uint8Array, offset: number): VarintRead | null {
  if (offset >= bytes.length) return null;
  const first = bytes[offset]!;
  const length = 1 << (first >>> 6);
  if (offset + length > bytes.length) return null;
  let value = first & 0x3f;
  for (let i = 1; i < length; i++) value = value * 256 + bytes[offset + i]!;
  return { value, next: offset + length };
}
