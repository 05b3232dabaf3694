/**
 * The body of a long-polling or polling request or response: a run of messages with the sequence
 * number of the first, and (downstream only) an optional close record.
 *
 *     varint(firstSeq) varint(count) frame × count [varint(closeCode) frame(reason)]
 *
 * Frames are those of codec/message-framing.ts (varint(length × 2 + isBinary) + bytes). Sequence
 * numbers let the receiver drop what it already has, so a retried request never delivers twice and
 * a lost response is simply sent again. Pure functions; decode errors are ProtocolErrors.
 */
import { ProtocolError } from '../errors.ts';
import type { Message } from '../transport.ts';
import { concatBytes } from './bytes.ts';
import { frameMessage, MessageDeframer } from './message-framing.ts';
import { readVarint, varintLength, writeVarint } from './varint.ts';

/** Most messages in one upstream batch unless the server announces otherwise. */
export const DEFAULT_MAX_BATCH_MESSAGES = 1024;

export interface Batch {
  firstSeq: number;
  messages: Message[];
  close?: { code: number; reason: string };
}

export function encodeBatch(batch: Batch): Uint8Array<ArrayBuffer> {
  const parts = batchParts(batch.firstSeq, batch.messages.map((message) => [frameMessage(message)]), batch.close);
  let length = 0;
  for (const part of parts) length += part.length;
  return concatBytes(parts, length);
}

/**
 * A batch as the parts of its body, in order: the head, each message's frame (given as its parts),
 * the close record. The frames are passed through, not copied: a server builds each message's
 * frame once (`framePreparedParts`) and sends the same one in every response that carries it,
 * resends included.
 */
export function batchParts(firstSeq: number, frames: readonly (readonly Uint8Array[])[], close?: { code: number; reason: string }): Uint8Array[] {
  const head = new Uint8Array(varintLength(firstSeq) + varintLength(frames.length));
  writeVarint(head, writeVarint(head, 0, firstSeq), frames.length);
  const parts: Uint8Array[] = [head];
  for (const frame of frames) parts.push(...frame);
  if (close) {
    const code = new Uint8Array(varintLength(close.code));
    writeVarint(code, 0, close.code);
    parts.push(code, frameMessage(close.reason));
  }
  return parts;
}

function truncated(): ProtocolError {
  return new ProtocolError('ERR_BATCH_TRUNCATED', 'batch body ends before its records do');
}

/**
 * Decodes a whole body. `maxMessageSize` bounds each message and the close reason; a count over
 * `maxMessages` is refused (ERR_BATCH_TOO_MANY, close code 1009) before any message is read.
 */
export function decodeBatch(bytes: Uint8Array, maxMessageSize: number, maxMessages = Infinity): Batch {
  const first = readVarint(bytes, 0);
  const count = first && readVarint(bytes, first.next);
  if (!first || !count) throw truncated();
  if (count.value > maxMessages) throw new ProtocolError('ERR_BATCH_TOO_MANY', `batch of ${count.value} messages exceeds the limit of ${maxMessages}`, { closeCode: 1009 });
  let offset = count.next;
  const messages: Message[] = [];
  for (let i = 0; i < count.value; i++) {
    const next = oneFrame(bytes, offset, maxMessageSize);
    messages.push(next.message);
    offset = next.offset;
  }
  if (offset === bytes.length) return { firstSeq: first.value, messages };
  const code = readVarint(bytes, offset);
  if (!code) throw truncated();
  const reason = oneFrame(bytes, code.next, maxMessageSize);
  if (typeof reason.message !== 'string') throw new ProtocolError('ERR_BATCH_BAD_CLOSE', 'close reason must be text');
  if (reason.offset !== bytes.length) throw new ProtocolError('ERR_BATCH_TRAILING_BYTES', 'bytes after the close record');
  return { firstSeq: first.value, messages, close: { code: code.value, reason: reason.message } };
}

/** Reads exactly one framed message at `offset`. */
function oneFrame(bytes: Uint8Array, offset: number, maxMessageSize: number): { message: Message; offset: number } {
  const header = readVarint(bytes, offset);
  if (!header) throw truncated();
  const end = header.next + Math.floor(header.value / 2);
  if (end > bytes.length) {
    if (end - header.next > maxMessageSize) throw new ProtocolError('ERR_MESSAGE_TOO_LARGE', `message exceeds ${maxMessageSize} bytes`, { closeCode: 1009 });
    throw truncated();
  }
  const [message] = new MessageDeframer(maxMessageSize).push(bytes.subarray(offset, end));
  return { message: message!, offset: end };
}
