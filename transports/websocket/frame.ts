/**
 * RFC 6455 §5.2 frame layout, as pure functions over bytes (browser-safe). `ws` parses what
 * arrives; the server builds its own data frames so a fan-out message is framed once for all its
 * recipients and a batch of frames leaves in one write.
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

/** One final (FIN), unmasked frame — the server-to-client form — header and payload in one array. */
export function encodeServerFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const length = payload.byteLength;
  const header = frameHeaderSize(length, false);
  const frame = new Uint8Array(header + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) frame[1] = length;
  else if (length < 0x10000) {
    frame[1] = 126;
    frame[2] = length >>> 8;
    frame[3] = length & 0xff;
  } else {
    frame[1] = 127;
    // Lengths stay far below 2^53 (maxPayload bounds them); the top 32 bits come from a division.
    new DataView(frame.buffer).setUint32(2, Math.floor(length / 2 ** 32));
    new DataView(frame.buffer).setUint32(6, length >>> 0);
  }
  frame.set(payload, header);
  return frame;
}
