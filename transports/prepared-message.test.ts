/**
 * One prepared message through the fan-out: the router hands every recipient the same object, and
 * each transport's framing of it is built once and never copies a large payload.
 */
import { describe, expect, it } from 'vitest';
import { payloadBuffers, publishKept, startFanOut } from '../test-support/framing-connection.ts';
import { batchParts, decodeBatch } from './codec/batch.ts';
import { COPY_BELOW, concatBytes } from './codec/bytes.ts';
import { decodeEnvelope } from './codec/envelope.ts';
import { framePrepared, framePreparedParts, MessageDeframer } from './codec/message-framing.ts';
import { PreparedMessage, prepare } from './prepared-message.ts';
import type { Message } from './transport.ts';
import { serverFrame } from './websocket/frame.ts';

/** Byte equality without the matcher's element-by-element diffing (slow at these sizes). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

function joined(parts: readonly Uint8Array[]): Uint8Array {
  return concatBytes(parts, parts.reduce((sum, part) => sum + part.length, 0));
}

describe('PreparedMessage', () => {
  it('knows its UTF-8 size and bytes, encodes text once and keeps binary as it is', () => {
    const text = new PreparedMessage('héllo ✓');
    expect(text.size).toBe(new TextEncoder().encode('héllo ✓').length);
    expect(text.text).toBe(true);
    expect(text.bytes).toBe(text.bytes);
    expect(new TextDecoder().decode(text.bytes)).toBe('héllo ✓');

    const bytes = Uint8Array.of(1, 2, 3);
    const binary = new PreparedMessage(bytes);
    expect(binary.size).toBe(3);
    expect(binary.text).toBe(false);
    expect(binary.bytes).toBe(bytes);
    expect(prepare(binary)).toBe(binary);
  });

  it('builds each framing once, on first use, whatever the order of transports asking', () => {
    const prepared = new PreparedMessage('x');
    let calls = 0;
    const counted = (message: PreparedMessage) => (calls++, message.size);
    expect(prepared.framed(serverFrame)).toBe(prepared.framed(serverFrame));
    expect(prepared.framed(counted)).toBe(1);
    expect(prepared.framed(counted)).toBe(1);
    expect(prepared.framed(framePrepared)).toBe(prepared.framed(framePrepared));
    expect(prepared.framed(serverFrame)).toBe(prepared.framed(serverFrame));
    expect(calls).toBe(1);
  });
});

describe('framings of a prepared message', () => {
  const sizes = [0, 125, 126, COPY_BELOW - 1, COPY_BELOW, 0x10000];

  it('WebSocket: a small frame is one array, a large one its header and the payload itself (not a copy)', () => {
    for (const size of sizes) {
      for (const message of [new Uint8Array(size).fill(7), 'a'.repeat(size)] as Message[]) {
        const prepared = new PreparedMessage(message);
        const parts = serverFrame(prepared);
        const frame = joined(parts);
        const extended = size < 126 ? 0 : size < 0x10000 ? 2 : 8;
        expect(frame.length).toBe(2 + extended + size);
        expect(frame[0]).toBe(0x80 | (typeof message === 'string' ? 1 : 2));
        expect(sameBytes(frame.subarray(2 + extended), prepared.bytes)).toBe(true);
        if (size >= COPY_BELOW) expect(parts[1]).toBe(prepared.bytes);
        else expect(parts).toHaveLength(1);
      }
    }
  });

  it('long-polling: a batch built from the frames decodes to the messages, large payloads passed through', () => {
    const messages: Message[] = sizes.flatMap((size) => [new Uint8Array(size).fill(3), 'b'.repeat(size)]);
    const prepared = messages.map((message) => new PreparedMessage(message));
    const frames = prepared.map((message) => message.framed(framePreparedParts));
    const parts = batchParts(9, frames, { code: 4000, reason: 'bye' });
    for (const message of prepared) if (message.size >= COPY_BELOW) expect(parts).toContain(message.bytes);
    const batch = decodeBatch(joined(parts), 1 << 20);
    expect(batch.firstSeq).toBe(9);
    expect(batch.close).toEqual({ code: 4000, reason: 'bye' });
    expect(batch.messages.map((m, i) => (typeof m === 'string' ? m === messages[i] : sameBytes(m, messages[i] as Uint8Array)))).toEqual(messages.map(() => true));
  });

  it('streams: the one-array frame deframes to the message', () => {
    for (const message of ['ünïcode', Uint8Array.of(0, 255)] as Message[]) {
      expect(new MessageDeframer(1024).push(new PreparedMessage(message).framed(framePrepared))).toEqual([message]);
    }
  });
});

describe('a fan-out through the router', () => {
  it('writes a 1 MiB publish to 1000 recipients from one frame: encoded and framed once, the payload never copied', async () => {
    const fanOut = await startFanOut(1000, 'big');
    const data = new Uint8Array(1 << 20).fill(42);
    const frames = await publishKept(fanOut, 'big', data);

    expect(frames).toHaveLength(1000);
    expect(new Set(frames).size).toBe(1);
    expect(payloadBuffers(frames, 1 << 20)).toBe(1);
    const [header, payload] = frames[0]!;
    expect(header!.length).toBe(10);
    const delivery = decodeEnvelope(payload!);
    expect(delivery.t === 'message' && delivery.data instanceof Uint8Array && sameBytes(delivery.data, data)).toBe(true);
    fanOut.router.close();
  });
});
