/**
 * RFC 6455 §5.2 frame layout, as pure functions over bytes (browser-safe). `ws` parses what
 * arrives; the server writes its own data frames: each message's frame is built once, for all its
 * recipients, from its prepared message. The lab's wire tap reads and writes frames of both
 * directions with the same functions.
 */
import { allocBytes, COPY_BELOW } from '../codec/bytes.ts';
import type { PreparedMessage } from '../prepared-message.ts';

export const Opcode = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/**
 * Header size of one unfragmented frame: 2 bytes, plus 2 or 8 bytes of extended length, plus the
 * 4-byte masking key on client-to-server frames.
 */
export function frameHeaderSize(payloadLength: number, masked: boolean): number {
  const extended = payloadLength < 126 ? 0 : payloadLength < 0x10000 ? 2 : 8;
  return 2 + extended + (masked ? 4 : 0);
}

/** The fields of a frame header (RFC 6455 §5.2). */
export interface FrameHeader {
  fin: boolean;
  /** RSV1-3 bits (non-zero only with extensions such as permessage-deflate). */
  rsv: number;
  opcode: number;
  /** Masking key of a client-to-server frame; absent on server-to-client frames. */
  maskKey?: Uint8Array | undefined;
  payloadLength: number;
}

/**
 * Writes a frame header at `offset` (`frameHeaderSize(length, !!maskKey)` bytes) and returns the
 * offset where its payload goes.
 */
export function writeFrameHeader(out: Uint8Array, offset: number, header: FrameHeader): number {
  const { payloadLength: length, maskKey } = header;
  out[offset] = (header.fin ? 0x80 : 0) | ((header.rsv & 0x7) << 4) | (header.opcode & 0x0f);
  const mask = maskKey ? 0x80 : 0;
  let at: number;
  if (length < 126) {
    out[offset + 1] = mask | length;
    at = offset + 2;
  } else if (length < 0x10000) {
    out[offset + 1] = mask | 126;
    out[offset + 2] = length >>> 8;
    out[offset + 3] = length & 0xff;
    at = offset + 4;
  } else {
    out[offset + 1] = mask | 127;
    // Lengths stay far below 2^53 (maxPayload bounds them): the top 32 bits come from a division.
    const view = new DataView(out.buffer, out.byteOffset + offset + 2, 8);
    view.setUint32(0, Math.floor(length / 2 ** 32));
    view.setUint32(4, length >>> 0);
    at = offset + 10;
  }
  if (maskKey) {
    out.set(maskKey.subarray(0, 4), at);
    at += 4;
  }
  return at;
}

/**
 * Writes the header of one final (FIN), unmasked frame — the server-to-client form — at `offset`
 * (`frameHeaderSize(length, false)` bytes) and returns the offset where its payload goes.
 */
export function writeServerFrameHeader(out: Uint8Array, offset: number, opcode: number, length: number): number {
  return writeFrameHeader(out, offset, { fin: true, rsv: 0, opcode, payloadLength: length });
}

/**
 * Reads the frame header at `offset` of `bytes`: the header and its size, or null while it is
 * incomplete. Whether the payload has fully arrived is the caller's to check.
 */
export function readFrameHeader(bytes: Uint8Array, offset: number): { header: FrameHeader; headerLength: number } | null {
  if (bytes.length - offset < 2) return null;
  const b0 = bytes[offset]!;
  const b1 = bytes[offset + 1]!;
  const masked = (b1 & 0x80) !== 0;
  let payloadLength = b1 & 0x7f;
  let headerLength = 2;
  if (payloadLength === 126) {
    if (bytes.length - offset < 4) return null;
    payloadLength = (bytes[offset + 2]! << 8) | bytes[offset + 3]!;
    headerLength = 4;
  } else if (payloadLength === 127) {
    if (bytes.length - offset < 10) return null;
    const view = new DataView(bytes.buffer, bytes.byteOffset + offset + 2, 8);
    payloadLength = view.getUint32(0) * 2 ** 32 + view.getUint32(4);
    headerLength = 10;
  }
  if (masked) {
    if (bytes.length - offset < headerLength + 4) return null;
    headerLength += 4;
  }
  const maskKey = masked ? bytes.slice(offset + headerLength - 4, offset + headerLength) : undefined;
  return { header: { fin: (b0 & 0x80) !== 0, rsv: (b0 >> 4) & 0x7, opcode: b0 & 0x0f, maskKey, payloadLength }, headerLength };
}

/** XORs `payload` with the 4-byte masking key, in place (masking and unmasking are the same operation). */
export function applyMask(payload: Uint8Array, maskKey: Uint8Array): Uint8Array {
  for (let i = 0; i < payload.length; i++) payload[i]! ^= maskKey[i & 3]!;
  return payload;
}

/**
 * A prepared message's server frame, built once and written to every recipient: a small message
 * as one array (header and payload), a large one as its header and its payload, the payload
 * being the message's own bytes (never copied, as `ws` writes `[header, payload]`).
 */
export function serverFrame(prepared: PreparedMessage): readonly Uint8Array[] {
  const payload = prepared.bytes;
  const opcode = prepared.text ? Opcode.text : Opcode.binary;
  const headerSize = frameHeaderSize(payload.length, false);
  if (payload.length >= COPY_BELOW) {
    const header = allocBytes(headerSize);
    writeServerFrameHeader(header, 0, opcode, payload.length);
    return [header, payload];
  }
  const frame = allocBytes(headerSize + payload.length);
  frame.set(payload, writeServerFrameHeader(frame, 0, opcode, payload.length));
  return [frame];
}
