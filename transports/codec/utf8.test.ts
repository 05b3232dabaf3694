import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { utf8Length, writeUtf8 } from './utf8.ts';

const encoder = new TextEncoder();
/** Any UTF-16 code units, lone surrogates included (TextEncoder writes those as U+FFFD). */
const anyText = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code)) });

describe('utf8', () => {
  it('sizes 1-, 2-, 3- and 4-byte characters and lone surrogates as TextEncoder encodes them', () => {
    for (const text of ['', 'id-42', 'é', '€', '😀', '\ud800', 'a\udc00b', 'Zürich 😀 €']) expect(utf8Length(text)).toBe(encoder.encode(text).length);
  });

  it('writes exactly the bytes TextEncoder makes, at an offset, for any text', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const length = utf8Length(text);
        expect(length).toBe(encoder.encode(text).length);
        const out = new Uint8Array(length + 3).fill(0xee);
        expect(writeUtf8(out, 2, text, length)).toBe(2 + length);
        expect([...out.subarray(2, 2 + length)]).toEqual([...encoder.encode(text)]);
        expect(out[0]).toBe(0xee);
        expect(out[length + 2]).toBe(0xee);
      }),
    );
  });
});
