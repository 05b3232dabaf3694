/**
 * RFC 6455 §5.2 frame layout, as pure functions over bytes (browser-safe). `ws` parses what
 * arrives; the server writes its own data frames: each message's frame is built once, for all its
 * recipients, from its prepared message.
 */
import { COPY_BELOW } from '../codec/bytes.ts';
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

/**
 * Writes the header of one final (FIN), unmasked frame — the server-to-client form — at `offset`
 * (`frameHeaderSize(length, false)` bytes) and returns the offset where its payload goes.
 */
export function writeServerFrameHeader(out: Uint8Array, offset: number, opcode: number, length: number): number {
  out[offset] = 0x80 | opcode;
  if (length < 126) {
    out[offset + 1] = length;
    return offset + 2;
  }
  if (length < 0x10000) {
    out[offset + 1] = 126;
    out[offset + 2] = length >>> 8;
    out[offset + 3] = length & 0xff;
    return offset + 4;
  }
  out[offset + 1] = 127;
  // Lengths stay far below 2^53 (maxPayload bounds them): the top 32 bits come from a division.
  const view = new DataView(out.buffer, out.byteOffset + offset + 2, 8);
  view.setUint32(0, Math.floor(length / 2 ** 32));
  view.setUint32(4, length >>> 0);
  return offset + 10;
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
    const header = new Uint8Array(headerSize);
    writeServerFrameHeader(header, 0, opcode, payload.length);
    return [header, payload];
  }
  const frame = new Uint8Array(headerSize + payload.length);
  frame.set(payload, writeServerFrameHeader(frame, 0, opcode, payload.length));
  return [frame];
}
