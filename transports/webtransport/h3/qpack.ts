/**
 * QPACK (RFC 9204) without a dynamic table: we advertise QPACK_MAX_TABLE_CAPACITY = 0, so a peer
 * may only use the static table and literals. Field sections are encoded and decoded here; the
 * encoder/decoder streams only need checking that nobody tries to insert. Field octets are
 * treated as Latin-1 (HTTP field names and the values WebTransport uses are ASCII). Pure functions.
 */
import { H3Error, H3ErrorCode } from './errors.ts';
import { huffmanDecode, huffmanEncode, huffmanEncodedLength } from './huffman.ts';

export type Field = readonly [name: string, value: string];

/** RFC 9204 Appendix A, index 0–98; "name" alone means an empty value. */
export const STATIC_TABLE: readonly Field[] = [
  ':authority', ':path: /', 'age: 0', 'content-disposition', 'content-length: 0', 'cookie', 'date', 'etag',
  'if-modified-since', 'if-none-match', 'last-modified', 'link', 'location', 'referer', 'set-cookie',
  ':method: CONNECT', ':method: DELETE', ':method: GET', ':method: HEAD', ':method: OPTIONS', ':method: POST', ':method: PUT',
  ':scheme: http', ':scheme: https',
  ':status: 103', ':status: 200', ':status: 304', ':status: 404', ':status: 503',
  'accept: */*', 'accept: application/dns-message', 'accept-encoding: gzip, deflate, br', 'accept-ranges: bytes',
  'access-control-allow-headers: cache-control', 'access-control-allow-headers: content-type', 'access-control-allow-origin: *',
  'cache-control: max-age=0', 'cache-control: max-age=2592000', 'cache-control: max-age=604800', 'cache-control: no-cache',
  'cache-control: no-store', 'cache-control: public, max-age=31536000', 'content-encoding: br', 'content-encoding: gzip',
  'content-type: application/dns-message', 'content-type: application/javascript', 'content-type: application/json',
  'content-type: application/x-www-form-urlencoded', 'content-type: image/gif', 'content-type: image/jpeg', 'content-type: image/png',
  'content-type: text/css', 'content-type: text/html; charset=utf-8', 'content-type: text/plain', 'content-type: text/plain;charset=utf-8',
  'range: bytes=0-', 'strict-transport-security: max-age=31536000', 'strict-transport-security: max-age=31536000; includesubdomains',
  'strict-transport-security: max-age=31536000; includesubdomains; preload', 'vary: accept-encoding', 'vary: origin',
  'x-content-type-options: nosniff', 'x-xss-protection: 1; mode=block',
  ':status: 100', ':status: 204', ':status: 206', ':status: 302', ':status: 400', ':status: 403', ':status: 421', ':status: 425', ':status: 500',
  'accept-language', 'access-control-allow-credentials: FALSE', 'access-control-allow-credentials: TRUE', 'access-control-allow-headers: *',
  'access-control-allow-methods: get', 'access-control-allow-methods: get, post, options', 'access-control-allow-methods: options',
  'access-control-expose-headers: content-length', 'access-control-request-headers: content-type', 'access-control-request-method: get',
  'access-control-request-method: post', 'alt-svc: clear', 'authorization',
  "content-security-policy: script-src 'none'; object-src 'none'; base-uri 'none'", 'early-data: 1', 'expect-ct', 'forwarded', 'if-range',
  'origin', 'purpose: prefetch', 'server', 'timing-allow-origin: *', 'upgrade-insecure-requests: 1', 'user-agent', 'x-forwarded-for',
  'x-frame-options: deny', 'x-frame-options: sameorigin',
].map((entry): Field => {
  // Names may start with ':' (pseudo-headers), so split at the first ': ' after the first character.
  const split = entry.indexOf(': ', 1);
  return split < 0 ? [entry, ''] : [entry.slice(0, split), entry.slice(split + 2)];
});

const exactIndex = new Map<string, number>();
const nameIndex = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], index) => {
  const key = `${name}\u0000${value}`;
  if (!exactIndex.has(key)) exactIndex.set(key, index);
  if (!nameIndex.has(name)) nameIndex.set(name, index);
});

function failure(message: string): H3Error {
  return new H3Error(H3ErrorCode.QPACK_DECOMPRESSION_FAILED, 'ERR_QPACK', message);
}

/** RFC 7541 §5.1 integer with an N-bit prefix; `first` holds the flag bits above the prefix. */
function writePrefixInt(out: number[], first: number, prefixBits: number, value: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(first | value);
    return;
  }
  out.push(first | max);
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
}

function readPrefixInt(bytes: Uint8Array, offset: number, prefixBits: number): { value: number; next: number } {
  if (offset >= bytes.length) throw failure('field section ends inside an integer');
  const max = (1 << prefixBits) - 1;
  let value = bytes[offset]! & max;
  let next = offset + 1;
  if (value < max) return { value, next };
  for (let multiplier = 1; ; multiplier *= 128) {
    if (next >= bytes.length) throw failure('field section ends inside an integer');
    const byte = bytes[next++]!;
    value += (byte & 0x7f) * multiplier;
    if (value > Number.MAX_SAFE_INTEGER) throw failure('integer overflow');
    if ((byte & 0x80) === 0) return { value, next };
  }
}

/** A string literal: H flag at bit `prefixBits`, length with that prefix, then the octets. */
function writeString(out: number[], first: number, prefixBits: number, text: string): void {
  const huffmanLength = huffmanEncodedLength(text);
  if (huffmanLength < text.length) {
    writePrefixInt(out, first | (1 << prefixBits), prefixBits, huffmanLength);
    out.push(...huffmanEncode(text));
    return;
  }
  writePrefixInt(out, first, prefixBits, text.length);
  for (let i = 0; i < text.length; i++) out.push(text.charCodeAt(i) & 0xff);
}

function readString(bytes: Uint8Array, offset: number, prefixBits: number, limit: number): { text: string; next: number } {
  const huffman = (bytes[offset]! >> prefixBits) & 1;
  const { value: length, next } = readPrefixInt(bytes, offset, prefixBits);
  if (length > limit) throw new H3Error(H3ErrorCode.EXCESSIVE_LOAD, 'ERR_QPACK_TOO_LARGE', `field of ${length} bytes exceeds ${limit}`);
  if (next + length > bytes.length) throw failure('field section ends inside a string');
  const raw = bytes.subarray(next, next + length);
  return { text: huffman ? huffmanDecode(raw) : String.fromCharCode(...raw), next: next + length };
}

/** Encodes a field section using the static table where it matches, literals otherwise. */
export function encodeFieldSection(fields: readonly Field[]): Uint8Array {
  const out: number[] = [0x00, 0x00]; // Required Insert Count 0, Delta Base 0: static table only
  for (const [name, value] of fields) {
    const exact = exactIndex.get(`${name}\u0000${value}`);
    if (exact !== undefined) {
      writePrefixInt(out, 0xc0, 6, exact); // 11xxxxxx: indexed, static
      continue;
    }
    const named = nameIndex.get(name);
    if (named !== undefined) writePrefixInt(out, 0x50, 4, named); // 0101xxxx: literal, static name reference
    else writeString(out, 0x20, 3, name); // 001NHxxx: literal name
    writeString(out, 0x00, 7, value);
  }
  return Uint8Array.from(out);
}

/** Decodes a field section that uses only the static table and literals. */
export function decodeFieldSection(bytes: Uint8Array, options: { maxFieldSectionSize?: number } = {}): [string, string][] {
  const limit = options.maxFieldSectionSize ?? 16 * 1024;
  const requiredInsertCount = readPrefixInt(bytes, 0, 8);
  if (requiredInsertCount.value !== 0) throw failure('field section references the dynamic table, whose capacity is 0');
  let offset = readPrefixInt(bytes, requiredInsertCount.next, 7).next; // Delta Base: meaningless without the dynamic table
  const fields: [string, string][] = [];
  let size = 0;
  while (offset < bytes.length) {
    const first = bytes[offset]!;
    let name: string;
    let value: string;
    if (first & 0x80) {
      if (!(first & 0x40)) throw failure('indexed field line refers to the dynamic table');
      const index = readPrefixInt(bytes, offset, 6);
      [name, value] = staticEntry(index.value);
      offset = index.next;
    } else if (first & 0x40) {
      if (!(first & 0x10)) throw failure('name reference refers to the dynamic table');
      const index = readPrefixInt(bytes, offset, 4);
      name = staticEntry(index.value)[0];
      const literal = readString(bytes, index.next, 7, limit);
      value = literal.text;
      offset = literal.next;
    } else if (first & 0x20) {
      const literalName = readString(bytes, offset, 3, limit);
      const literalValue = readString(bytes, literalName.next, 7, limit);
      name = literalName.text;
      value = literalValue.text;
      offset = literalValue.next;
    } else {
      throw failure('post-base field line refers to the dynamic table');
    }
    if (name !== name.toLowerCase()) throw new H3Error(H3ErrorCode.MESSAGE_ERROR, 'ERR_H3_FIELD_NAME', `field name '${name}' is not lowercase`);
    size += name.length + value.length + 32; // RFC 9114 §4.2.2 field section size
    if (size > limit) throw new H3Error(H3ErrorCode.EXCESSIVE_LOAD, 'ERR_QPACK_TOO_LARGE', `field section exceeds ${limit} bytes`);
    fields.push([name, value]);
  }
  return fields;
}

function staticEntry(index: number): Field {
  const entry = STATIC_TABLE[index];
  if (!entry) throw failure(`static table index ${index} out of range`);
  return entry;
}

/**
 * Checks the peer's QPACK encoder stream. With our capacity 0 the only acceptable instruction is
 * Set Dynamic Table Capacity to 0 (001xxxxx); inserts are errors. Returns bytes consumed.
 */
export function checkEncoderStream(bytes: Uint8Array): number {
  let offset = 0;
  while (offset < bytes.length) {
    const first = bytes[offset]!;
    if ((first & 0xe0) !== 0x20) throw new H3Error(H3ErrorCode.QPACK_ENCODER_STREAM_ERROR, 'ERR_QPACK_INSERT', 'insert into a dynamic table of capacity 0');
    let capacity;
    try {
      capacity = readPrefixInt(bytes, offset, 5);
    } catch {
      return offset; // incomplete: wait for more bytes
    }
    if (capacity.value !== 0) throw new H3Error(H3ErrorCode.QPACK_ENCODER_STREAM_ERROR, 'ERR_QPACK_CAPACITY', `dynamic table capacity ${capacity.value} exceeds our 0`);
    offset = capacity.next;
  }
  return offset;
}
