import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { H3Error, H3ErrorCode } from './errors.ts';
import { huffmanEncode } from './huffman.ts';
import { checkEncoderStream, decodeFieldSection, encodeFieldSection, STATIC_TABLE } from './qpack.ts';

function h3Code(fn: () => unknown): number {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(H3Error);
    return (error as H3Error).h3Code;
  }
  throw new Error('expected an H3Error');
}

describe('QPACK static table', () => {
  it('has the 99 entries of RFC 9204 Appendix A at their indices', () => {
    expect(STATIC_TABLE).toHaveLength(99);
    expect(STATIC_TABLE[0]).toEqual([':authority', '']);
    expect(STATIC_TABLE[1]).toEqual([':path', '/']);
    expect(STATIC_TABLE[15]).toEqual([':method', 'CONNECT']);
    expect(STATIC_TABLE[23]).toEqual([':scheme', 'https']);
    expect(STATIC_TABLE[25]).toEqual([':status', '200']);
    expect(STATIC_TABLE[27]).toEqual([':status', '404']);
    expect(STATIC_TABLE[68]).toEqual([':status', '403']);
    expect(STATIC_TABLE[90]).toEqual(['origin', '']);
    expect(STATIC_TABLE[98]).toEqual(['x-frame-options', 'sameorigin']);
  });
});

describe('QPACK field sections', () => {
  it("decodes Chromium's WebTransport CONNECT, built line by line", () => {
    const huffmanString = (text: string, flagBits: number, prefixBits: number) => {
      const bytes = huffmanEncode(text);
      const max = (1 << prefixBits) - 1;
      // RFC 7541 §5.1: a length that fills the prefix continues in the next byte (< 128 here).
      const length = bytes.length < max ? [bytes.length] : [max, bytes.length - max];
      return [flagBits | (1 << prefixBits) | length[0]!, ...length.slice(1), ...bytes];
    };
    const raw = (text: string, flagBits: number) => [flagBits | text.length, ...Buffer.from(text)];
    const section = Uint8Array.from([
      0x00, 0x00,
      0xc0 | 23, // :scheme https (indexed, static)
      0xc0 | 15, // :method CONNECT
      0x50 | 0, ...huffmanString('127.0.0.1:4433', 0, 7), // :authority, name reference 0, Huffman value
      0x50 | 1, ...raw('/echo', 0), // :path, name reference 1
      ...huffmanString(':protocol', 0x20, 3), ...huffmanString('webtransport', 0, 7), // literal name
      ...huffmanString('sec-webtransport-http3-draft02', 0x20, 3), ...raw('1', 0),
      0x5f, 90 - 15, ...huffmanString('http://localhost:8080', 0, 7), // origin: index 90 needs the 4-bit prefix continuation
    ]);
    expect(decodeFieldSection(section)).toEqual([
      [':scheme', 'https'],
      [':method', 'CONNECT'],
      [':authority', '127.0.0.1:4433'],
      [':path', '/echo'],
      [':protocol', 'webtransport'],
      ['sec-webtransport-http3-draft02', '1'],
      ['origin', 'http://localhost:8080'],
    ]);
  });

  it('encodes a 200 response as one indexed line', () => {
    expect(encodeFieldSection([[':status', '200']])).toEqual(Uint8Array.of(0x00, 0x00, 0xc0 | 25));
  });

  it('round-trips random field sections', () => {
    const token = fc.stringMatching(/^[a-z0-9-]{1,20}$/);
    const value = fc.string({ maxLength: 40 }).map((s) => s.replace(/[^\x20-\x7e]/g, 'x'));
    const staticField = fc.constantFrom(...STATIC_TABLE);
    const field = fc.oneof(fc.tuple(token, value), staticField, staticField.chain(([n]) => value.map((v) => [n, v] as const)));
    fc.assert(
      fc.property(fc.array(field, { maxLength: 12 }), (fields) => {
        expect(decodeFieldSection(encodeFieldSection(fields))).toEqual(fields.map(([n, v]) => [n, v]));
      }),
    );
  });

  it.each([
    ['a non-zero Required Insert Count', [0x01, 0x00], H3ErrorCode.QPACK_DECOMPRESSION_FAILED],
    ['a dynamic indexed line', [0x00, 0x00, 0x80], H3ErrorCode.QPACK_DECOMPRESSION_FAILED],
    ['a dynamic name reference', [0x00, 0x00, 0x40, 0x00], H3ErrorCode.QPACK_DECOMPRESSION_FAILED],
    ['a post-base line', [0x00, 0x00, 0x10], H3ErrorCode.QPACK_DECOMPRESSION_FAILED],
    ['a static index out of range', [0x00, 0x00, 0xff, 0x30], H3ErrorCode.QPACK_DECOMPRESSION_FAILED],
    ['a truncated string', [0x00, 0x00, 0x51, 0x05, 0x61], H3ErrorCode.QPACK_DECOMPRESSION_FAILED],
    ['an integer that never ends', [0x00, 0x00, 0xff, 0xff, 0xff], H3ErrorCode.QPACK_DECOMPRESSION_FAILED],
    ['an overflowing integer', [0x00, 0x00, 0xff, ...new Array(10).fill(0xff), 0x7f], H3ErrorCode.QPACK_DECOMPRESSION_FAILED],
    ['an uppercase name', [0x00, 0x00, 0x21, 0x41, 0x00], H3ErrorCode.MESSAGE_ERROR],
  ])('rejects %s', (_what, bytes, code) => {
    expect(h3Code(() => decodeFieldSection(Uint8Array.from(bytes)))).toBe(code);
  });

  it('rejects a field section over the size limit', () => {
    const big = encodeFieldSection([['x-big', 'v'.repeat(2000)]]);
    expect(h3Code(() => decodeFieldSection(big, { maxFieldSectionSize: 1000 }))).toBe(H3ErrorCode.EXCESSIVE_LOAD);
  });

  it('never throws anything but H3Error on random input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        try {
          decodeFieldSection(bytes);
        } catch (error) {
          expect(error).toBeInstanceOf(H3Error);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('QPACK encoder stream', () => {
  it('accepts capacity 0, waits on a partial instruction, rejects inserts and other capacities', () => {
    expect(checkEncoderStream(Uint8Array.of(0x20, 0x20))).toBe(2);
    expect(checkEncoderStream(Uint8Array.of(0x3f))).toBe(0);
    expect(h3Code(() => checkEncoderStream(Uint8Array.of(0x3f, 0x01)))).toBe(H3ErrorCode.QPACK_ENCODER_STREAM_ERROR);
    expect(h3Code(() => checkEncoderStream(Uint8Array.of(0xc0)))).toBe(H3ErrorCode.QPACK_ENCODER_STREAM_ERROR);
  });
});
