import { describe, expect, it } from 'vitest';
import { onceThisTick } from './per-tick.ts';

describe('onceThisTick', () => {
  it('computes once per input within a tick, for several inputs in turn, and again in the next tick', async () => {
    const seen: string[] = [];
    const encode = onceThisTick((text: string) => {
      seen.push(text);
      return new TextEncoder().encode(text);
    });
    const first = encode('a');
    const second = encode('b');
    // A second recipient's flush asks for the same messages in the same order.
    expect(encode('a')).toBe(first);
    expect(encode('b')).toBe(second);
    expect(seen).toEqual(['a', 'b']);
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(encode('a')).not.toBe(first);
    expect(seen).toEqual(['a', 'b', 'a']);
  });

  it('keys bytes by identity: equal contents in another array are encoded again', () => {
    let calls = 0;
    const frame = onceThisTick((bytes: Uint8Array) => (calls++, bytes.length));
    frame(new Uint8Array(2));
    frame(new Uint8Array(2));
    expect(calls).toBe(2);
  });
});
