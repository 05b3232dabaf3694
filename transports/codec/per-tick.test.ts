import { describe, expect, it } from 'vitest';
import { lastValueThisTick } from './per-tick.ts';

describe('lastValueThisTick', () => {
  it('computes once per input within a tick, and again in the next tick', async () => {
    let calls = 0;
    const encode = lastValueThisTick((text: string) => {
      calls++;
      return new TextEncoder().encode(text);
    });
    const message = 'fan-out';
    const first = encode(message);
    expect(encode(message)).toBe(first);
    expect(calls).toBe(1);
    encode('other');
    expect(calls).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(encode(message)).not.toBe(first);
    expect(calls).toBe(3);
  });
});
