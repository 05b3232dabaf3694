/**
 * HTTP/3 and WebTransport error codes (RFC 9114 §8.1, RFC 9204 §6, draft-ietf-webtrans-http3),
 * the error class for protocol violations, and the mapping of WebTransport application error
 * codes into the HTTP/3 code space and back.
 */
import { ProtocolError } from '../../errors.ts';

export const H3ErrorCode = {
  NO_ERROR: 0x100,
  GENERAL_PROTOCOL_ERROR: 0x101,
  INTERNAL_ERROR: 0x102,
  STREAM_CREATION_ERROR: 0x103,
  CLOSED_CRITICAL_STREAM: 0x104,
  FRAME_UNEXPECTED: 0x105,
  FRAME_ERROR: 0x106,
  EXCESSIVE_LOAD: 0x107,
  ID_ERROR: 0x108,
  SETTINGS_ERROR: 0x109,
  MISSING_SETTINGS: 0x10a,
  REQUEST_REJECTED: 0x10b,
  REQUEST_CANCELLED: 0x10c,
  REQUEST_INCOMPLETE: 0x10d,
  MESSAGE_ERROR: 0x10e,
  CONNECT_ERROR: 0x10f,
  QPACK_DECOMPRESSION_FAILED: 0x200,
  QPACK_ENCODER_STREAM_ERROR: 0x201,
  QPACK_DECODER_STREAM_ERROR: 0x202,
  WT_SESSION_GONE: 0x170d7b68,
} as const;

/** A violation of HTTP/3, QPACK or WebTransport: `h3Code` is what to send to the peer. */
export class H3Error extends ProtocolError {
  readonly h3Code: number;
  constructor(h3Code: number, code: string, message: string, options: { cause?: unknown } = {}) {
    super(code, message, options);
    this.h3Code = h3Code;
  }
}

const WT_FIRST = 0x52e4a40fa8db;
const WT_LAST = 0x52e5ac983162; // webTransportCodeToHttp3(2^32 - 1)

/** WebTransport application error code (0 … 2^32−1) → HTTP/3 error code, skipping GREASE points. */
export function webTransportCodeToHttp3(code: number): number {
  if (!Number.isInteger(code) || code < 0 || code > 0xffff_ffff) throw new RangeError(`not a WebTransport error code: ${code}`);
  return WT_FIRST + code + Math.floor(code / 0x1e);
}

/** HTTP/3 error code → WebTransport application code, or null outside the range or on a GREASE point. */
export function http3ToWebTransportCode(h3Code: number): number | null {
  if (h3Code < WT_FIRST || h3Code > WT_LAST || (h3Code - 0x21) % 0x1f === 0) return null;
  const shifted = h3Code - WT_FIRST;
  return shifted - Math.floor(shifted / 0x1f);
}
