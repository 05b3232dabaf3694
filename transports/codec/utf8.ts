/** UTF-8 sizes and writes without an intermediate encoded copy (browser-safe). */

const encoder = new TextEncoder();

/** UTF-8 byte length of a string without encoding it. */
export function utf8Length(text: string): number {
  let length = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) length += 1;
    else if (c < 0x800) length += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        length += 4;
        i++;
      } else length += 3;
    } else length += 3;
  }
  return length;
}

/**
 * Writes `text` as UTF-8 at `offset` (the caller sized `out` with utf8Length) and returns the
 * offset after it. ASCII, the usual case for ids and topics, is copied char by char: cheaper than
 * an encoder call for short strings.
 */
export function writeUtf8(out: Uint8Array, offset: number, text: string, length: number): number {
  if (length === text.length) for (let i = 0; i < length; i++) out[offset + i] = text.charCodeAt(i);
  else encoder.encodeInto(text, out.subarray(offset, offset + length));
  return offset + length;
}
