/**
 * RFC 6455 §5.2 frame layout, as pure functions over bytes (browser-safe). `ws` parses what
 * arrives; the server writes its own data frames, so a batch of frames is built straight into the
 * one buffer that leaves in one write.
 */

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
