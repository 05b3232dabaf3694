/** Byte helpers shared by the codecs and transports (browser-safe). */

/** The parts laid end to end in one new array of `length` bytes (their summed length). */
export function concatBytes(parts: readonly Uint8Array[], length: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Parts shorter than this are copied together into one array before a write; longer ones are
 * written as they are. Copying a few KiB costs less than a write (or a writev entry) of its own;
 * copying a large payload costs more, and once per recipient it is what a fan-out must avoid.
 */
export const COPY_BELOW = 8 * 1024;

/**
 * The parts as few arrays for one write: each run of parts shorter than COPY_BELOW copied into one
 * array, longer parts passed through as they are (never copied). A lone part is passed through too.
 */
export function coalesce(parts: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < parts.length; ) {
    let end = i;
    let length = 0;
    while (end < parts.length && parts[end]!.length < COPY_BELOW) length += parts[end++]!.length;
    if (end - i > 1) {
      out.push(concatBytes(parts.slice(i, end), length));
      i = end;
    } else out.push(parts[i++]!);
  }
  return out;
}
