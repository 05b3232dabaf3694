/** Byte helpers shared by the codecs and transports (browser-safe). */

/** Arrays up to this size are carved from a shared slab (allocBytes). */
const SLAB_BELOW = 512;
const SLAB_SIZE = 8192;
let slab = new ArrayBuffer(SLAB_SIZE);
let slabUsed = 0;

/**
 * A new zero-filled array of `length` bytes. Small ones (under 512 bytes: envelopes, frames of
 * short messages) are views into a shared 8 KiB slab, as Node's Buffer.allocUnsafe pools them: a
 * typed array over 64 bytes otherwise gets a backing store of its own, which costs several times
 * the encoding it holds. A view keeps its slab alive, so a retained small array holds at most
 * 8 KiB, as with Node's pool. Callers must not rely on `.buffer` being theirs alone.
 */
export function allocBytes(length: number): Uint8Array {
  if (length >= SLAB_BELOW) return new Uint8Array(length);
  if (slabUsed + length > SLAB_SIZE) {
    slab = new ArrayBuffer(SLAB_SIZE);
    slabUsed = 0;
  }
  const out = new Uint8Array(slab, slabUsed, length);
  // 8-byte aligned, so a DataView or wider typed array over an array stays aligned.
  slabUsed = (slabUsed + length + 7) & ~7;
  return out;
}

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
