/** Terminal tables: alignment, and the figures a reader needs from a head-of-line result. */
import { describe, expect, it } from 'vitest';
import { summarizeMs } from './analysis.ts';
import { formatHol, table } from './format.ts';
import type { HolResult } from './hol.ts';

describe('experiment tables', () => {
  it('aligns the first column left and the others right', () => {
    expect(table(['name', 'n'], [['a', '1'], ['bbb', '22']]).split('\n')).toEqual(['name   n', '────  ──', 'a      1', 'bbb   22']);
  });

  it('shows per-flow latency in ms, stall sharing against chance, and an unimpaired variant as such', () => {
    const latency = summarizeMs([1, 2, 3, 40]);
    const result: HolResult = {
      experiment: 'head-of-line',
      startedAt: '2026-01-01T00:00:00.000Z',
      settings: { lossPercent: 2, variants: ['websocket'], flows: 1, ratePerFlow: 50, messageSize: 200, durationMs: 1000, warmupMs: 100, stallExtraMs: 10, stallThresholdMs: null },
      impairment: { kind: 'relay', lossPercent: 2, rateMbit: null, delayMs: null, note: 'relay note' },
      variants: [
        {
          variant: 'websocket',
          transport: 'websocket',
          impaired: false,
          thresholdMs: 12.5,
          flows: [{ flow: 0, lane: 'reliable', sent: 4, delivered: 4, lost: 0, lossRate: 0, latency, stalls: 1, stalledMs: 28, maxGapMs: 37, series: { sentAt: [0], latencyMs: [1] } }],
          stalls: { episodes: 4, shared: 3, sharedFraction: 0.75, chanceFraction: 0.25 },
          lossRate: 0,
          datagramLossRate: null,
          packetsDropped: { clientToServer: 0, serverToClient: 0 },
          transportStats: null,
        },
      ],
    };
    const text = formatHol(result);
    expect(text).toContain('path: relay note');
    expect(text).toMatch(/websocket \(unimpaired\) #0\s+reliable\s+2\.0\s+40\.0\s+40\.0\s+1\s+28\s+37\s+0 %/);
    expect(text).toMatch(/websocket\s+12\.5\s+4\s+75 %\s+25 %\s+—\s+—\s+0 %\s+0 \/ 0\s+—\s+—/);
  });
});
