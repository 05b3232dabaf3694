/**
 * The HPACK/QPACK Huffman code (RFC 7541 Appendix B). The code is canonical, so the table is just
 * each symbol's code length (symbols 0–255, then EOS); codes are derived from the lengths in
 * order of (length, symbol), exactly as the RFC's table lists them. Pure functions.
 */
import { H3Error, H3ErrorCode } from './errors.ts';

/** Code length in bits of symbols 0..255 and EOS (256), RFC 7541 Appendix B. */
const CODE_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30, // EOS
];

const EOS = 256;
const codes = new Uint32Array(257);
/** Symbols sorted by (length, symbol): the canonical order. */
const sortedSymbols: number[] = [];
/** Per length: first code, index into sortedSymbols of that code, and how many codes. */
const firstCode = new Array<number>(31).fill(0);
const firstIndex = new Array<number>(31).fill(0);
const countOfLength = new Array<number>(31).fill(0);

{
  for (let symbol = 0; symbol <= EOS; symbol++) sortedSymbols.push(symbol);
  sortedSymbols.sort((a, b) => CODE_LENGTHS[a]! - CODE_LENGTHS[b]! || a - b);
  let code = 0;
  let length = CODE_LENGTHS[sortedSymbols[0]!]!;
  sortedSymbols.forEach((symbol, index) => {
    const symbolLength = CODE_LENGTHS[symbol]!;
    if (index > 0) code = (code + 1) * 2 ** (symbolLength - length);
    length = symbolLength;
    if (countOfLength[length] === 0) {
      firstCode[length] = code;
      firstIndex[length] = index;
    }
    countOfLength[length]!++;
    codes[symbol] = code;
  });
}

function decodeError(message: string): H3Error {
  return new H3Error(H3ErrorCode.QPACK_DECOMPRESSION_FAILED, 'ERR_QPACK_HUFFMAN', message);
}

/** Decodes Huffman-coded bytes to a Latin-1 string of the decoded octets. */
export function huffmanDecode(bytes: Uint8Array): string {
  let out = '';
  let code = 0;
  let length = 0;
  for (const byte of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      code = code * 2 + ((byte >> bit) & 1);
      length++;
      if (length > 30) throw decodeError('invalid Huffman code');
      const offset = code - firstCode[length]!;
      if (countOfLength[length]! > 0 && offset >= 0 && offset < countOfLength[length]!) {
        const symbol = sortedSymbols[firstIndex[length]! + offset]!;
        if (symbol === EOS) throw decodeError('EOS inside a Huffman string');
        out += String.fromCharCode(symbol);
        code = 0;
        length = 0;
      }
    }
  }
  // Padding: fewer than 8 bits, all ones (the most significant bits of EOS).
  if (length > 7) throw decodeError('Huffman padding longer than 7 bits');
  if (code !== 2 ** length - 1) throw decodeError('Huffman padding is not all ones');
  return out;
}

/** Bytes the Huffman encoding of `text` (octets: char codes 0–255) takes. */
export function huffmanEncodedLength(text: string): number {
  let bits = 0;
  for (let i = 0; i < text.length; i++) bits += CODE_LENGTHS[text.charCodeAt(i) & 0xff]!;
  return Math.ceil(bits / 8);
}

/** Huffman-encodes the octets of `text` (char codes 0–255), padding with ones. */
export function huffmanEncode(text: string): Uint8Array {
  const out = new Uint8Array(huffmanEncodedLength(text));
  let accumulator = 0; // at most 7 + 30 bits: safe as a double
  let bits = 0;
  let offset = 0;
  for (let i = 0; i < text.length; i++) {
    const symbol = text.charCodeAt(i) & 0xff;
    const length = CODE_LENGTHS[symbol]!;
    accumulator = accumulator * 2 ** length + codes[symbol]!;
    bits += length;
    while (bits >= 8) {
      bits -= 8;
      const byte = Math.floor(accumulator / 2 ** bits);
      out[offset++] = byte;
      accumulator -= byte * 2 ** bits;
    }
  }
  if (bits > 0) out[offset] = (accumulator * 2 ** (8 - bits)) | ((1 << (8 - bits)) - 1);
  return out;
}
