import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../errors.ts';
import { decodeBatch, encodeBatch, type Batch } from './batch.ts';

describe('polling batch codec', () => {
  it('encodes a literal batch', () => {
    // firstSeq 7, two messages ("hi" as text, 0x09 as binary), no close
    expect(encodeBatch({ firstSeq: 7, messages: ['hi', Uint8Array.of(9)] })).toEqual(Uint8Array.of(7, 2, 4, 0x68, 0x69, 3, 9));
    // an empty batch with a close record: code 4002 (varint 0x4fa2), reason "x"
    expect(encodeBatch({ firstSeq: 0, messages: [], close: { code: 4002, reason: 'x' } })).toEqual(Uint8Array.of(0, 0, 0x4f, 0xa2, 2, 0x78));
  });

  it('reports truncation at every cut point', () => {
    const body = encodeBatch({ firstSeq: 300, messages: ['abc', new Uint8Array(40)], close: { code: 1000, reason: 'done' } });
    for (let cut = 0; cut < body.length; cut++) {
      let error: unknown;
      try {
        const decoded = decodeBatch(body.subarray(0, cut), 1 << 20);
        // A cut exactly after the messages is a valid batch without a close record.
        expect(decoded.close).toBeUndefined();
        continue;
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ProtocolError);
    }
  });

  it('names what is wrong with a bad tail', () => {
    // close code 1000 (varint 0x43e8) with a binary reason (header 3: 1 byte, binary)
    expect(() => decodeBatch(Uint8Array.of(0, 0, 0x43, 0xe8, 3, 1), 100)).toThrow(expect.objectContaining({ code: 'ERR_BATCH_BAD_CLOSE' }));
    // a byte after the close record
    expect(() => decodeBatch(Uint8Array.of(0, 0, 0x43, 0xe8, 0, 9), 100)).toThrow(expect.objectContaining({ code: 'ERR_BATCH_TRAILING_BYTES' }));
    // invalid UTF-8 in a text message
    expect(() => decodeBatch(Uint8Array.of(0, 1, 2, 0xff), 100)).toThrow(ProtocolError);
  });

  it('carries a close reason as long as a message may be', () => {
    const close = { code: 4000, reason: 'r'.repeat(5000) };
    expect(decodeBatch(encodeBatch({ firstSeq: 1, messages: [], close }), 1 << 20)).toEqual({ firstSeq: 1, messages: [], close });
  });

  it('refuses a message over the limit with 1009', () => {
    const body = encodeBatch({ firstSeq: 0, messages: [new Uint8Array(100)] });
    expect(() => decodeBatch(body, 50)).toThrow(expect.objectContaining({ code: 'ERR_MESSAGE_TOO_LARGE', closeCode: 1009 }));
  });

  it('round-trips random batches and never throws anything but ProtocolError on garbage', () => {
    const batch: fc.Arbitrary<Batch> = fc.record(
      {
        firstSeq: fc.nat(),
        messages: fc.array(fc.oneof(fc.string(), fc.uint8Array({ maxLength: 50 })), { maxLength: 10 }),
        close: fc.record({ code: fc.integer({ min: 1000, max: 4999 }), reason: fc.string({ maxLength: 30 }) }),
      },
      { requiredKeys: ['firstSeq', 'messages'] },
    );
    fc.assert(
      fc.property(batch, (b) => {
        expect(decodeBatch(encodeBatch(b), 1 << 20)).toEqual(b);
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 30 }), (garbage) => {
        try {
          decodeBatch(garbage, 1 << 20);
        } catch (error) {
          expect(error).toBeInstanceOf(ProtocolError);
        }
      }),
    );
  });
});
