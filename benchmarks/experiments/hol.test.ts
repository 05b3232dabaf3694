/**
 * Short real head-of-line runs: through the kernel path (namespaces + nftables; skipped with
 * canImpair()'s reason when not root) and through the userspace UDP relay (anywhere).
 */
import { describe, expect, it } from 'vitest';
import { canImpair } from '../impairment/netns.ts';
import { runHol, type HolResult, type HolVariantResult } from './hol.ts';

const capability = await canImpair();

function expectFourFlowsWithLatency(variant: HolVariantResult, lanes: string[]): void {
  expect(variant.error).toBeUndefined();
  expect(variant.flows.map((flow) => flow.lane)).toEqual(lanes);
  for (const flow of variant.flows) {
    expect(flow.sent).toBeGreaterThan(40);
    expect(flow.latency.count).toBe(flow.delivered);
    expect(flow.latency.p50).toBeGreaterThan(0);
    expect(flow.latency.p99).toBeGreaterThanOrEqual(flow.latency.p50);
  }
  expect(variant.thresholdMs).toBeGreaterThan(0);
}

function reliableDeliveredEverything(variant: HolVariantResult): void {
  expect(variant.lossRate).toBe(0);
  expect(variant.datagramLossRate).toBeNull();
}

describe.skipIf(!capability.ok)(`head-of-line over the kernel path (${capability.ok ? 'root' : (capability as { reason: string }).reason})`, () => {
  it('runs 4 flows per transport across 5 % loss: latency per flow, every reliable message delivered, datagram loss measured', async () => {
    const events: string[] = [];
    const result: HolResult = await runHol({
      lossPercent: 5,
      variants: ['websocket', 'webtransport-channels', 'webtransport-unreliable'],
      durationMs: 1_500,
      warmupMs: 300,
      onProgress: (event) => events.push(event.type),
    });
    expect(result.impairment.kind).toBe('netns');
    expect(events).toEqual(['path', 'variant-start', 'variant-done', 'variant-start', 'variant-done', 'variant-start', 'variant-done']);
    const [websocket, channels, datagrams] = result.variants as [HolVariantResult, HolVariantResult, HolVariantResult];
    expectFourFlowsWithLatency(websocket, ['reliable', 'reliable', 'reliable', 'reliable']);
    expectFourFlowsWithLatency(channels, ['channel:flow0', 'channel:flow1', 'channel:flow2', 'channel:flow3']);
    expectFourFlowsWithLatency(datagrams, ['unreliable', 'unreliable', 'unreliable', 'unreliable']);
    reliableDeliveredEverything(websocket);
    reliableDeliveredEverything(channels);
    // Each message crosses the path twice: ~10 % of ~240 datagrams lost on the path (none lost is
    // (0.9)^240); the client's stack may drop more locally on a loaded box (congestion-controlled queue).
    expect(datagrams.datagramLossRate).toBeGreaterThan(0);
    expect(datagrams.datagramLossRate).toBeLessThan(0.6);
    for (const variant of result.variants) {
      expect(variant.impaired).toBe(true);
      expect(variant.packetsDropped!.clientToServer + variant.packetsDropped!.serverToClient).toBeGreaterThan(0);
    }
    expect(channels.transportStats?.packetsLost).toBeGreaterThan(0);
    // The result is plain JSON for the lab.
    expect(JSON.parse(JSON.stringify(result))).toEqual(result);
  }, 60_000);
});

describe('head-of-line over the userspace UDP relay', () => {
  it('impairs WebTransport datagrams, runs WebSocket unimpaired and says why', async () => {
    const result = await runHol({ impairment: 'relay', lossPercent: 10, variants: ['websocket', 'webtransport-unreliable'], durationMs: 1_200, warmupMs: 200 });
    expect(result.impairment.kind).toBe('relay');
    expect(result.impairment.note).toMatch(/UDP only.*TCP transports ran unimpaired/);
    const [websocket, datagrams] = result.variants as [HolVariantResult, HolVariantResult];
    expect(websocket.impaired).toBe(false);
    expect(websocket.packetsDropped).toEqual({ clientToServer: 0, serverToClient: 0 });
    expectFourFlowsWithLatency(websocket, ['reliable', 'reliable', 'reliable', 'reliable']);
    reliableDeliveredEverything(websocket);
    expect(datagrams.impaired).toBe(true);
    expect(datagrams.packetsDropped!.clientToServer).toBeGreaterThan(0);
    expect(datagrams.datagramLossRate).toBeGreaterThan(0.05);
  }, 40_000);
});
