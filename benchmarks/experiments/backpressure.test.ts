/**
 * A short real backpressure run per server policy, consumer on WebSocket over loopback: each
 * policy's observable effect (drops counted, refusals lost and counted, 4008 on both sides) and a
 * queue that stays bounded.
 */
import { describe, expect, it } from 'vitest';
import { runBackpressure, type BackpressureRun } from './backpressure.ts';

const MAX_QUEUED = 256 * 1024;
/** The hard limit, plus what the WebSocket connection lets its socket buffer hold (256 KiB), plus one message. */
const QUEUE_BOUND = MAX_QUEUED + 256 * 1024 + 16 * 1024;

describe('backpressure experiment (websocket consumer, loopback)', () => {
  it('shows each policy: drops for drop-*, uncounted refusals for wait, 4008 for disconnect, queue bounded', async () => {
    const samples: string[] = [];
    const common = { transports: ['websocket'] as const, durationMs: 1_000, maxQueuedBytes: MAX_QUEUED, onSample: (run: { policy: string }, sample: { t: number }) => samples.push(`${run.policy}@${sample.t}`) };
    const result = await runBackpressure({ ...common, policies: ['wait', 'drop-oldest', 'drop-newest'], drainMs: 300 });
    // The consumer sees the close only after working through what the kernel had already buffered for it.
    const cut = await runBackpressure({ ...common, policies: ['disconnect'], drainMs: 5_000 });
    const all: BackpressureRun[] = [...result.runs, ...cut.runs];
    const run = (policy: string) => all.find((r) => r.policy === policy)!;
    expect(all.map((r) => [r.transport, r.policy, r.error])).toEqual([
      ['websocket', 'wait', undefined],
      ['websocket', 'drop-oldest', undefined],
      ['websocket', 'drop-newest', undefined],
      ['websocket', 'disconnect', undefined],
    ]);
    for (const r of all) {
      expect(r.published).toBe(1_000);
      expect(r.maxQueuedBytes).toBeLessThanOrEqual(QUEUE_BOUND);
      // A point every ~50 ms; on two cores busy with the whole suite a run took only 5 (the disconnect run ends early).
      expect(r.timeline.length).toBeGreaterThanOrEqual(3);
      expect(r.peakServerHeapBytes).toBeGreaterThan(0);
    }
    expect(samples.length).toBe(all.reduce((sum, r) => sum + r.timeline.length, 0));

    // wait: the queue fills and stays at its limit; refused deliveries are lost, and the router counts each.
    expect(run('wait').dropped).toBe(0);
    expect(run('wait').notQueued).toBeGreaterThan(0);
    expect(run('wait').timeline.at(-1)!.refused).toBe(run('wait').notQueued);
    expect(run('wait').overHighWaterAtMs).not.toBeNull();
    expect(run('wait').serverClose).toBeNull();
    for (const policy of ['drop-oldest', 'drop-newest']) {
      expect(run(policy).dropped).toBeGreaterThan(0);
      expect(run(policy).notQueued).toBe(0);
      expect(run(policy).serverClose).toBeNull();
      expect(run(policy).received).toBeLessThan(1_000);
    }
    expect(run('disconnect').serverClose?.code).toBe(4008);
    expect(run('disconnect').consumerClose?.code).toBe(4008);
    expect(run('disconnect').received).toBeLessThan(1_000);
  }, 40_000);
});
