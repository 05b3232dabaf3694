import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeVarint, readVarint, VarintError, varintLength } from './varint.ts';

describe('QUIC varint', () => {
  it('encodes the RFC 9000 §A.1 examples', () => {
    expect(encodeVarint(37)).toEqual(Uint8Array.of(0x25));
    expect(encodeVarint(15293)).toEqual(Uint8Array.of(0x7b, 0xbd));
    expect(encodeVarint(494878333)).toEqual(Uint8Array.of(0x9d, 0x7f, 0x3e, 0x7d));
    // The RFC's 8-byte example (151288809941952652) exceeds 2^53: it must be refused, not rounded.
    expect(() => readVarint(Uint8Array.of(0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c), 0)).toThrow(VarintError);
    expect(encodeVarint(2 ** 40)).toEqual(Uint8Array.of(0xc0, 0, 1, 0, 0, 0, 0, 0));
  });

  it('reads a non-minimal encoding (0x41 as 40 41)', () => {
    expect(readVarint(Uint8Array.of(0x40, 0x41), 0)).toEqual({ value: 0x41, next: 2 });
  });

  it('asks for more bytes when truncated at any point', () => {
    const bytes = encodeVarint(494878333);
    for (let cut = 0; cut < bytes.length; cut++) expect(readVarint(bytes.subarray(0, cut), 0)).toBeNull();
  });

  it('rejects values it cannot represent', () => {
    expect(() => varintLength(-1)).toThrow(VarintError);
    expect(() => varintLength(1.5)).toThrow(VarintError);
    expect(() => readVarint(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 0)).toThrow(VarintError);
  });

  it('round-trips every safe value with the shortest length', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (value) => {
        const bytes = encodeVarint(value);
        expect(bytes.length).toBe(varintLength(value));
        expect(readVarint(bytes, 0)).toEqual({ value, next: bytes.length });
      }),
    );
  });
});
