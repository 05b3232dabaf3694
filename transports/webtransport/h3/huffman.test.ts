import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { H3Error } from './errors.ts';
import { huffmanDecode, huffmanEncode, huffmanEncodedLength } from './huffman.ts';

const hex = (h: string) => Uint8Array.from(h.match(/../g)!.map((b) => Number.parseInt(b, 16)));

// RFC 7541 Appendix C.4 and C.6 examples.
const FIXTURES: [string, string][] = [
  ['www.example.com', 'f1e3c2e5f23a6ba0ab90f4ff'],
  ['no-cache', 'a8eb10649cbf'],
  ['custom-key', '25a849e95ba97d7f'],
  ['custom-value', '25a849e95bb8e8b4bf'],
  ['302', '6402'],
  ['private', 'aec3771a4b'],
  ['Mon, 21 Oct 2013 20:13:21 GMT', 'd07abe941054d444a8200595040b8166e082a62d1bff'],
  ['https://www.example.com', '9d29ad171863c78f0b97c8e9ae82ae43d3'],
];

describe('Huffman code (RFC 7541 Appendix B)', () => {
  it.each(FIXTURES)('encodes and decodes %s', (text, bytes) => {
    expect(huffmanEncode(text)).toEqual(hex(bytes));
    expect(huffmanEncodedLength(text)).toBe(bytes.length / 2);
    expect(huffmanDecode(hex(bytes))).toBe(text);
  });

  it('round-trips every octet string', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (octets) => {
        const text = String.fromCharCode(...octets);
        expect(huffmanDecode(huffmanEncode(text))).toBe(text);
      }),
    );
  });

  it('rejects padding that is too long, not all ones, or an EOS symbol', () => {
    // "0" is 00000 (5 bits): 0x07 pads with 3 ones correctly; 0x00 pads with zeros.
    expect(huffmanDecode(Uint8Array.of(0x07))).toBe('0');
    expect(() => huffmanDecode(Uint8Array.of(0x00))).toThrow(H3Error);
    // A whole byte of ones is padding longer than 7 bits.
    expect(() => huffmanDecode(Uint8Array.of(0x07, 0xff))).toThrow(H3Error);
    // EOS (30 ones) explicitly encoded.
    expect(() => huffmanDecode(Uint8Array.of(0xff, 0xff, 0xff, 0xff))).toThrow(H3Error);
  });
});
