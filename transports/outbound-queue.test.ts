import { describe, expect, it } from 'vitest';
import { OutboundQueue } from './base-connection.ts';
import { PreparedMessage } from './prepared-message.ts';

const message = (i: number) => new PreparedMessage(`m${i}`);
const texts = (items: (PreparedMessage | undefined)[]) => items.map((prepared) => prepared?.message);

describe('OutboundQueue', () => {
  it('keeps order while its ring wraps around and grows, and counts messages and bytes', () => {
    const queue = new OutboundQueue();
    const out: (PreparedMessage | undefined)[] = [];
    let pushed = 0;
    // Fill past the initial 16 slots with the head moved, so growing must unwrap the ring.
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 13 * (round + 1); i++) queue.push(message(pushed++), 'reliable');
      for (let i = 0; i < 7 * (round + 1); i++) out.push(queue.shiftPrepared());
    }
    expect(queue.length).toBe(pushed - out.length);
    let waiting = 0;
    for (let i = out.length; i < pushed; i++) waiting += `m${i}`.length;
    expect(queue.bytes).toBe(waiting);
    while (queue.length > 0) out.push(queue.shiftPrepared());
    expect(texts(out)).toEqual([...Array(pushed).keys()].map((i) => `m${i}`));
    expect(queue.bytes).toBe(0);
    expect(queue.shiftPrepared()).toBeUndefined();
    expect(queue.shift()).toBeUndefined();
  });

  it('works on after a burst emptied it (the ring shrinks back)', () => {
    const queue = new OutboundQueue();
    for (let i = 0; i < 5000; i++) queue.push(message(i), 'reliable');
    for (let i = 0; i < 5000; i++) expect(queue.shiftPrepared()?.message).toBe(`m${i}`);
    for (let i = 0; i < 40; i++) queue.push(message(i), 'reliable');
    expect(texts([...Array(40)].map(() => queue.shiftPrepared()))).toEqual([...Array(40).keys()].map((i) => `m${i}`));
    expect(queue.length).toBe(0);
  });

  it('gives the oldest message across lanes with its lane, and serves one lane alone', () => {
    const queue = new OutboundQueue();
    queue.push(message(0), 'reliable');
    queue.push(message(1), 'channel:a');
    queue.push(message(2), 'reliable');
    queue.push(message(3), 'channel:a');
    expect(queue.lanes()).toEqual(['reliable', 'channel:a']);
    expect(queue.shiftLane('channel:a')).toMatchObject({ lane: 'channel:a', prepared: { message: 'm1' } });
    expect(queue.peek()).toMatchObject({ lane: 'reliable', prepared: { message: 'm0' } });
    expect(queue.shift()).toMatchObject({ lane: 'reliable', prepared: { message: 'm0' } });
    expect(queue.shift()).toMatchObject({ lane: 'reliable', prepared: { message: 'm2' } });
    expect(queue.shift()).toMatchObject({ lane: 'channel:a', prepared: { message: 'm3' } });
    expect(queue.lanes()).toEqual([]);
    expect(queue.length).toBe(0);
  });

  it('starts over after clear, on any lane', () => {
    const queue = new OutboundQueue();
    queue.push(message(0), 'reliable');
    queue.clear();
    expect([queue.length, queue.bytes, queue.shift()]).toEqual([0, 0, undefined]);
    queue.push(message(1), 'channel:b');
    expect(queue.shift()).toMatchObject({ lane: 'channel:b', prepared: { message: 'm1' } });
  });
});
