/**
 * Real head-of-line runs: the effect itself across the TUN path (2 % loss, 20 ms each way, fixed
 * seed; skipped with canForward()'s reason when not root), the nftables path (namespaces, loss
 * only; canImpair()'s reason) and the userspace UDP relay (anywhere).
 */
import { describe, expect, it } from 'vitest';
import { canImpair } from '../impairment/netns.ts';
import { canForward } from '../impairment/tun-path.ts';
import { isUnreliable } from './hol-variants.ts';
import { runHol, type HolResult, type HolVariant, type HolVariantResult } from './hol.ts';

const capability = await canImpair();
const forwarding = await canForward();
const reason = (c: { ok: boolean; reason?: string }) => (c.ok ? 'root' : c.reason);

describe.skipIf(!forwarding.ok)(`head-of-line blocking across the TUN path (${reason(forwarding)})`, () => {
  it('at 2 % loss + 20 ms each way (seed 1), one ordered lane stalls every flow per loss, WebTransport channels only one, datagrams none (WebTransport and WebRTC); at 0 % nothing is dropped or lost', async (context) => {
    const run = (lossPercent: number, durationMs: number) => runHol({ impairment: 'tun', lossPercent, delayMs: 20, seed: 1, durationMs, warmupMs: 500 });
    const at = (result: HolResult, variant: HolVariant) => result.variants.find((v) => v.variant === variant)!;

    const clean = await run(0, 1_500);
    for (const variant of clean.variants) {
      expect(variant.error).toBeUndefined();
      expect(variant.packetsDropped).toEqual({ clientToServer: 0, serverToClient: 0 });
      expect(variant.afterLoss!.drops).toBe(0);
      const sent = variant.flows.reduce((sum, flow) => sum + flow.sent, 0);
      expect(variant.lossRate).toBe(isUnreliable(variant.variant) ? (variant.transportStats?.dropped ?? 0) / sent : 0);
    }
    // Stalls are timing: on a machine so loaded that, without loss, a message takes more than two
    // round trips, scheduling hiccups drown the effect of a loss. Say so rather than assert noise.
    const slowest = Math.max(...clean.variants.filter((v) => v.variant !== 'long-polling').map((v) => Math.max(...v.flows.map((f) => f.latency.p50 / 1000))));
    if (slowest > 80) return context.skip(`this machine is too loaded to time stalls: a median message took ${Math.round(slowest)} ms over a 40 ms round trip without loss`);

    const lossy = await run(2, 3_500);
    expect(lossy.impairment).toMatchObject({ kind: 'tun', lossPercent: 2, delayMs: 20, seed: 1 });
    for (const variant of lossy.variants) {
      expect(variant.error).toBeUndefined();
      // ~2 % of the packets each way; long-polling sends the fewest (a POST's answer carries what was queued).
      expect(variant.afterLoss!.drops, variant.variant).toBeGreaterThan(5);
    }
    for (const name of ['websocket', 'webtransport-reliable', 'webrtc-reliable'] as const) {
      const { stalls, afterLoss, lossRate } = at(lossy, name);
      expect(lossRate).toBe(0);
      // Stalls shared across flows, above what independent stalls would share by chance.
      expect(stalls.sharedFraction!).toBeGreaterThanOrEqual(0.9);
      expect(stalls.sharedFraction!).toBeGreaterThan(stalls.chanceFraction!);
      // Most losses stall, well above chance, and each stalls (nearly) all 4 flows.
      expect(afterLoss!.stalling / afterLoss!.drops).toBeGreaterThan(afterLoss!.chanceStalling);
      expect(afterLoss!.flowsHeld!).toBeGreaterThanOrEqual(3);
    }
    const channels = at(lossy, 'webtransport-channels');
    expect(channels.lossRate).toBe(0);
    // A loss holds back the flow whose data it carried: markedly fewer flows per loss, fewer shared stalls.
    const fewest = Math.min(at(lossy, 'websocket').afterLoss!.flowsHeld!, at(lossy, 'webtransport-reliable').afterLoss!.flowsHeld!);
    expect(channels.afterLoss!.flowsHeld!).toBeLessThan(fewest - 1);
    expect(channels.stalls.sharedFraction!).toBeLessThan(at(lossy, 'webtransport-reliable').stalls.sharedFraction!);
    // WebRTC's channels are SCTP streams of one association: a loss holds back its own stream's
    // deliveries, but congestion control is the association's, so other channels may wait too. Over
    // 10 s the experiment shows fewer flows per loss than one ordered channel (2.1 against 3.9, 64 %
    // against 99 % shared stalls); over these 3 s on a loaded 2-core machine the difference was
    // within noise (3.5 against 3.2 in one run), so only delivery is asserted here.
    expect(at(lossy, 'webrtc-channels').lossRate).toBe(0);
    // Datagrams (WebTransport's, and WebRTC's unordered maxRetransmits-0 channel): a loss is a lost
    // message, never a wait; the loss is the path's, twice (there and back), within 4.5 standard errors.
    for (const name of ['webtransport-unreliable', 'webrtc-unreliable'] as const) {
      const datagrams = at(lossy, name);
      expect(datagrams.afterLoss!.stalling / datagrams.afterLoss!.drops, name).toBeLessThan(datagrams.afterLoss!.chanceStalling + 0.25);
      const expected = 1 - 0.98 ** 2;
      const sent = datagrams.flows.reduce((sum, flow) => sum + flow.sent, 0);
      const local = datagrams.transportStats?.dropped ?? 0;
      expect(Math.abs(datagrams.lossRate - local / sent - expected), name).toBeLessThan(4.5 * Math.sqrt((expected * (1 - expected)) / sent));
    }
    // (Stalls left at 0 % are the machine's scheduling hiccups, on every transport alike: not
    // asserted, their number depends on the machine's load, not on the transport.)
  }, 180_000);
});

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

describe.skipIf(!capability.ok)(`head-of-line over the nftables path (${reason(capability)})`, () => {
  it('runs 4 flows per transport across 5 % loss: latency per flow, every reliable message delivered, datagram loss measured', async () => {
    const events: string[] = [];
    const result: HolResult = await runHol({
      impairment: 'netns',
      lossPercent: 5,
      variants: ['websocket', 'webtransport-channels', 'webtransport-unreliable'],
      durationMs: 1_500,
      warmupMs: 300,
      onProgress: (event) => events.push(event.type),
    });
    expect(result.impairment.kind).toBe('netns');
    expect(result.impairment.note).toMatch(/cannot delay/);
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
