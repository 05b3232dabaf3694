import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CapsuleReader, CapsuleType, decodeCloseSession, encodeCapsule, encodeCloseSession } from './capsules.ts';
import { H3ErrorCode } from './errors.ts';

describe('capsules', () => {
  it("encodes close(7, 'bye') exactly as Chromium does", () => {
    expect(encodeCloseSession(7, 'bye')).toEqual(Uint8Array.of(0x68, 0x43, 0x07, 0x00, 0x00, 0x00, 0x07, 0x62, 0x79, 0x65));
  });

  it('reads capsules split anywhere, several per chunk, skipping a GREASE capsule', () => {
    const grease = encodeCapsule(0x29 * 3 + 0x17, Uint8Array.of(1, 2, 3));
    const close = encodeCloseSession(4001, 'done');
    const drain = encodeCapsule(CapsuleType.DRAIN_WEBTRANSPORT_SESSION, new Uint8Array(0));
    const stream = Uint8Array.from([...grease, ...drain, ...close]);
    for (const step of [1, 2, 5, stream.length]) {
      const reader = new CapsuleReader();
      const seen: number[] = [];
      for (let i = 0; i < stream.length; i += step) {
        reader.push(stream.subarray(i, i + step));
        for (let capsule = reader.next(); capsule; capsule = reader.next()) {
          seen.push(capsule.type);
          if (capsule.type === CapsuleType.CLOSE_WEBTRANSPORT_SESSION) expect(decodeCloseSession(capsule.payload)).toEqual({ code: 4001, reason: 'done' });
        }
      }
      expect(seen).toEqual([0x29 * 3 + 0x17, CapsuleType.DRAIN_WEBTRANSPORT_SESSION, CapsuleType.CLOSE_WEBTRANSPORT_SESSION]);
      expect(reader.atBoundary).toBe(true);
    }
  });

  it('skips a GREASE capsule whose type exceeds 2^53', () => {
    const reader = new CapsuleReader();
    reader.push(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0x01, 0x00, ...encodeCloseSession(3, 'x')));
    expect(reader.next()!.payload).toEqual(Uint8Array.of(0));
    expect(decodeCloseSession(reader.next()!.payload)).toEqual({ code: 3, reason: 'x' });
  });

  it('cuts a reason over 1024 bytes at a character boundary', () => {
    const capsule = encodeCloseSession(1, 'é'.repeat(600));
    const reader = new CapsuleReader();
    reader.push(capsule);
    const { reason } = decodeCloseSession(reader.next()!.payload);
    expect(reason).toBe('é'.repeat(512));
  });

  it('rejects malformed close capsules and oversized capsules', () => {
    expect(() => decodeCloseSession(Uint8Array.of(0, 0))).toThrow(expect.objectContaining({ h3Code: H3ErrorCode.MESSAGE_ERROR }));
    expect(() => decodeCloseSession(Uint8Array.of(0, 0, 0, 1, 0xff))).toThrow(expect.objectContaining({ h3Code: H3ErrorCode.MESSAGE_ERROR }));
    const reader = new CapsuleReader({ maxPayload: 10 });
    reader.push(Uint8Array.of(0x00, 0x40, 0x20));
    expect(() => reader.next()).toThrow(expect.objectContaining({ h3Code: H3ErrorCode.EXCESSIVE_LOAD }));
  });

  it('round-trips close codes and reasons', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.string({ maxLength: 200 }), (code, reason) => {
        const reader = new CapsuleReader();
        reader.push(encodeCloseSession(code, reason));
        expect(decodeCloseSession(reader.next()!.payload)).toEqual({ code, reason });
      }),
    );
  });
});
