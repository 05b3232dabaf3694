import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../errors.ts';
import { frameMessage, MessageDeframer } from './message-framing.ts';

describe('message framing', () => {
  it('frames text and binary with a varint of length × 2 + isBinary', () => {
    expect(frameMessage('hi')).toEqual(Uint8Array.of(4, 0x68, 0x69));
    expect(frameMessage(Uint8Array.of(9))).toEqual(Uint8Array.of(3, 9));
    expect(frameMessage('')).toEqual(Uint8Array.of(0));
  });

  it('reassembles messages split at every byte', () => {
    const stream = new Uint8Array([...frameMessage('héllo'), ...frameMessage(new Uint8Array(100).fill(7)), ...frameMessage('')]);
    const deframer = new MessageDeframer(1024);
    const out = [];
    for (const byte of stream) out.push(...deframer.push(Uint8Array.of(byte)));
    expect(out).toEqual(['héllo', new Uint8Array(100).fill(7), '']);
    expect(deframer.buffered).toBe(0);
  });

  it('refuses an oversized frame from its header alone', () => {
    const deframer = new MessageDeframer(10);
    expect(() => deframer.push(Uint8Array.of(0x40, 22 * 2))).toThrow(expect.objectContaining({ code: 'ERR_MESSAGE_TOO_LARGE', closeCode: 1009 }));
  });

  it('refuses invalid UTF-8 in a text frame', () => {
    expect(() => new MessageDeframer(10).push(Uint8Array.of(2, 0xff))).toThrow(ProtocolError);
  });

  it('round-trips random message sequences through random chunking', () => {
    const message = fc.oneof(fc.string(), fc.uint8Array({ maxLength: 300 }));
    fc.assert(
      fc.property(fc.array(message, { maxLength: 20 }), fc.array(fc.nat(50), { minLength: 1 }), (messages, cuts) => {
        const stream = Uint8Array.from(messages.flatMap((m) => [...frameMessage(m)]));
        const deframer = new MessageDeframer(1 << 20);
        const out = [];
        let offset = 0;
        for (let i = 0; offset < stream.length; i++) {
          const size = cuts[i % cuts.length]! + 1;
          out.push(...deframer.push(stream.subarray(offset, offset + size)));
          offset += size;
        }
        expect(out).toEqual(messages);
      }),
    );
  });
});
