/** Byte helpers shared by the codecs and transports (browser-safe). */

/** The parts laid end to end in one new array of `length` bytes (their summed length). */
export function concatBytes(parts: readonly Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
