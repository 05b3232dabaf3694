/**
 * How messages ride a reliable data channel (`reliable`, `channel:<name>`), sans-IO.
 *
 * SCTP caps one data-channel message at the negotiated `max-message-size` (libwebrtc closes the
 * channel on a larger send), so a larger message goes as chunks. The channel keeps each chunk's
 * boundary and its text/binary kind, which makes the common case free:
 * - a text message that fits goes as one text message, unchanged (a text message on the wire is
 *   always a whole message);
 * - everything else goes as binary chunks, each led by one kind byte:
 *   `0` a whole binary message, `1` a chunk with more to follow, `2` the last chunk of a binary
 *   message, `3` the last chunk of a text message (UTF-8), `4` a close: u16 code, UTF-8 reason,
 *   `5` a batch: several small messages framed as on WebTransport streams (codec/message-framing.ts).
 *   A burst of small messages queued in one tick leaves as one batch: each data-channel send is a
 *   call into the WebRTC stack's own thread (about 0.15 ms in wrtc), so per-message sends would
 *   cap a connection at a few thousand messages a second.
 * The `unreliable` channel carries messages as they are (never split: larger ones are refused).
 */
import { concatBytes } from '../codec/bytes.ts';
import { ProtocolError } from '../errors.ts';
import { frameMessage, MessageDeframer } from '../codec/message-framing.ts';
import type { Message } from '../transport.ts';
import { CloseCode } from '../transport.ts';

export const CHUNK_WHOLE_BINARY = 0;
export const CHUNK_MORE = 1;
export const CHUNK_LAST_BINARY = 2;
export const CHUNK_LAST_TEXT = 3;
export const CHUNK_CLOSE = 4;
export const CHUNK_BATCH = 5;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * The wire messages for one message, none larger than `maxWireMessage` bytes (the SCTP limit).
 * `size` is the message's payload size (UTF-8 length for text, already measured by the caller).
 */
export function chunkMessage(message: Message, size: number, maxWireMessage: number): (string | Uint8Array)[] {
  if (typeof message === 'string' && size <= maxWireMessage) return [message];
  const payload = typeof message === 'string' ? encoder.encode(message) : message;
  const room = maxWireMessage - 1;
  if (typeof message !== 'string' && payload.length <= room) return [withKind(CHUNK_WHOLE_BINARY, payload)];
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < payload.length || chunks.length === 0; offset += room) {
    const end = Math.min(offset + room, payload.length);
    const last = end === payload.length;
    chunks.push(withKind(last ? (typeof message === 'string' ? CHUNK_LAST_TEXT : CHUNK_LAST_BINARY) : CHUNK_MORE, payload.subarray(offset, end)));
  }
  return chunks;
}

/** A close frame: kind, u16 code, reason (cut to 123 bytes, as WebSocket does). */
export function closeFrame(code: number, reason: string): Uint8Array {
  const text = encoder.encode(reason).subarray(0, 123);
  const frame = new Uint8Array(3 + text.length);
  frame[0] = CHUNK_CLOSE;
  frame[1] = code >> 8;
  frame[2] = code & 0xff;
  frame.set(text, 3);
  return frame;
}

/** Several messages in one wire message (the caller keeps the total under the SCTP limit). */
export function batchFrame(messages: readonly Message[]): Uint8Array {
  const frames = messages.map(frameMessage);
  let length = 1;
  for (const frame of frames) length += frame.length;
  const batch = new Uint8Array(length);
  batch[0] = CHUNK_BATCH;
  let offset = 1;
  for (const frame of frames) {
    batch.set(frame, offset);
    offset += frame.length;
  }
  return batch;
}

function withKind(kind: number, payload: Uint8Array): Uint8Array {
  const chunk = new Uint8Array(payload.length + 1);
  chunk[0] = kind;
  chunk.set(payload, 1);
  return chunk;
}

export type Reassembled = { kind: 'messages'; messages: Message[] } | { kind: 'close'; code: number; reason: string } | undefined;

/** Joins one reliable channel's chunks back into messages; holds at most `maxMessageSize` bytes. */
export class ChunkAssembler {
  #parts: Uint8Array[] = [];
  #length = 0;

  constructor(readonly maxMessageSize: number) {}

  /** One wire message in; a whole message (or a close) out, or undefined while a message is incomplete. */
  push(wire: string | Uint8Array): Reassembled {
    if (typeof wire === 'string') {
      if (this.#length > 0 || this.#parts.length > 0) throw new ProtocolError('ERR_CHUNK_INTERLEAVED', 'a text message arrived inside a chunked message');
      return { kind: 'messages', messages: [wire] };
    }
    if (wire.length === 0) throw new ProtocolError('ERR_CHUNK_EMPTY', 'a binary data-channel message must start with its kind byte');
    const kind = wire[0]!;
    const payload = wire.subarray(1);
    if (kind === CHUNK_CLOSE) {
      if (payload.length < 2) throw new ProtocolError('ERR_CHUNK_CLOSE', 'a close frame needs a code');
      return { kind: 'close', code: (payload[0]! << 8) | payload[1]!, reason: decodeText(payload.subarray(2)) };
    }
    if (kind === CHUNK_BATCH) {
      if (this.#parts.length > 0) throw new ProtocolError('ERR_CHUNK_INTERLEAVED', 'a batch arrived inside a chunked message');
      const deframer = new MessageDeframer(this.maxMessageSize);
      const messages = deframer.push(payload);
      if (deframer.buffered > 0) throw new ProtocolError('ERR_CHUNK_BATCH', 'a batch ends inside a message');
      return { kind: 'messages', messages };
    }
    if (kind > CHUNK_LAST_TEXT) throw new ProtocolError('ERR_CHUNK_KIND', `unknown chunk kind ${kind}`);
    if (this.#length + payload.length > this.maxMessageSize) {
      throw new ProtocolError('ERR_MESSAGE_TOO_LARGE', `message over ${this.maxMessageSize} bytes`, { closeCode: CloseCode.messageTooBig });
    }
    if (kind === CHUNK_WHOLE_BINARY) {
      if (this.#parts.length > 0) throw new ProtocolError('ERR_CHUNK_INTERLEAVED', 'a whole message arrived inside a chunked message');
      return { kind: 'messages', messages: [payload.slice()] };
    }
    this.#parts.push(payload.slice());
    this.#length += payload.length;
    if (kind === CHUNK_MORE) return undefined;
    // One part needs no copy.
    const whole = this.#parts.length === 1 ? this.#parts[0]! : concatBytes(this.#parts, this.#length);
    this.#parts = [];
    this.#length = 0;
    return { kind: 'messages', messages: [kind === CHUNK_LAST_TEXT ? decodeText(whole) : whole] };
  }
}

function decodeText(bytes: Uint8Array): string {
  try {
    return decoder.decode(bytes);
  } catch (error) {
    throw new ProtocolError('ERR_INVALID_UTF8', 'text is not valid UTF-8', { cause: error, closeCode: CloseCode.invalidPayload });
  }
}
