/**
 * Message framing for byte streams (WebTransport streams carry bytes, not messages): each message
 * is `varint(length × 2 + isBinary)` followed by its bytes (UTF-8 for text). Pure: `frameMessage`
 * builds one frame; `MessageDeframer` takes chunks split anywhere and returns whole messages.
 */
import { ProtocolError } from '../errors.ts';
import type { PreparedMessage } from '../prepared-message.ts';
import type { Message } from '../transport.ts';
import { readVarint, varintLength, writeVarint } from './varint.ts';
import { allocBytes, COPY_BELOW, concatBytes } from './bytes.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** One message as a frame: header and payload in a single array. */
export function frameMessage(message: Message): Uint8Array {
  return frameBytes(typeof message === 'string' ? encoder.encode(message) : message, typeof message !== 'string');
}

/** A prepared message's frame, built once for all its recipients (a Framing of prepared-message.ts). */
export function framePrepared(prepared: PreparedMessage): Uint8Array {
  return frameBytes(prepared.bytes, !prepared.text);
}

/**
 * A prepared message's frame as parts, built once for all its recipients: a small message as one
 * array, a large one as its header and its own payload bytes (never copied), for writers that can
 * write several arrays at once.
 */
export function framePreparedParts(prepared: PreparedMessage): readonly Uint8Array[] {
  const payload = prepared.bytes;
  if (payload.length < COPY_BELOW) return [framePrepared(prepared)];
  const value = payload.length * 2 + (prepared.text ? 0 : 1);
  const header = new Uint8Array(varintLength(value));
  writeVarint(header, 0, value);
  return [header, payload];
}

function frameBytes(payload: Uint8Array, binary: boolean): Uint8Array {
  const header = payload.length * 2 + (binary ? 1 : 0);
  const frame = allocBytes(varintLength(header) + payload.length);
  frame.set(payload, writeVarint(frame, 0, header));
  return frame;
}

/** Incremental decoder of framed messages with a size limit enforced before buffering. */
export class MessageDeframer {
  /** Chunks not yet parsed; joined only once a whole message is there (no quadratic copying). */
  #chunks: Uint8Array[] = [];
  #length = 0;
  /** Bytes needed before the pending message is complete (0: unknown, try on every push). */
  #needed = 0;

  constructor(readonly maxMessageSize: number) {}

  /** Bytes held while waiting for the rest of a message. */
  get buffered(): number {
    return this.#length;
  }

  /** Adds a chunk; returns every message it completes. Throws ProtocolError on an oversized or bad frame. */
  push(chunk: Uint8Array): Message[] {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    if (this.#length < this.#needed) return [];
    const bytes = this.#chunks.length === 1 ? chunk : concatBytes(this.#chunks, this.#length);
    const messages: Message[] = [];
    let offset = 0;
    this.#needed = 0;
    for (;;) {
      const header = readVarint(bytes, offset);
      if (!header) break;
      const length = Math.floor(header.value / 2);
      if (length > this.maxMessageSize) {
        throw new ProtocolError('ERR_MESSAGE_TOO_LARGE', `framed message of ${length} bytes exceeds the limit of ${this.maxMessageSize}`, { closeCode: 1009 });
      }
      if (header.next + length > bytes.length) {
        this.#needed = header.next + length - offset;
        break;
      }
      const payload = bytes.subarray(header.next, header.next + length);
      if (header.value % 2 === 1) messages.push(payload.slice());
      else {
        try {
          messages.push(decoder.decode(payload));
        } catch (cause) {
          throw new ProtocolError('ERR_INVALID_UTF8', 'text message is not valid UTF-8', { cause, closeCode: 1007 });
        }
      }
      offset = header.next + length;
    }
    const rest = offset === bytes.length ? undefined : bytes.slice(offset);
    this.#chunks = rest ? [rest] : [];
    this.#length = rest?.length ?? 0;
    return messages;
  }
}

