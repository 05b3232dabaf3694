/** Terminal tables for the experiments' results. Pure: result in, text out. */
import type { BackpressureResult } from './backpressure.ts';
import type { HolResult } from './hol.ts';

/** Left-aligned first column, right-aligned others, two spaces apart. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

const ms = (micros: number) => (micros / 1000).toFixed(1);
const percent = (fraction: number | null) => (fraction === null ? '—' : `${(fraction * 100).toFixed(fraction > 0 && fraction < 0.01 ? 2 : 0)} %`);
const kib = (bytes: number) => `${Math.round(bytes / 1024)} KiB`;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

export function formatHol(result: HolResult): string {
  const { impairment: path, settings } = result;
  const lines = [
    `head-of-line: ${settings.flows} flows × ${settings.ratePerFlow} msg/s × ${settings.messageSize} B, ${settings.durationMs} ms (first ${settings.warmupMs} ms warm-up)`,
    `path: ${path.note}`,
    '',
    table(
      ['variant / flow', 'lane', 'p50 ms', 'p99 ms', 'max ms', 'stalls', 'stalled ms', 'max gap ms', 'lost'],
      result.variants.flatMap((variant) =>
        variant.flows.map((flow) => [
          `${variant.variant}${variant.impaired ? '' : ' (unimpaired)'} #${flow.flow}`,
          flow.lane,
          ms(flow.latency.p50),
          ms(flow.latency.p99),
          ms(flow.latency.max),
          String(flow.stalls),
          flow.stalledMs.toFixed(0),
          flow.maxGapMs.toFixed(0),
          percent(flow.lossRate),
        ]),
      ),
    ),
    '',
    table(
      ['variant', 'threshold ms', 'stall episodes', 'shared', 'shared by chance', 'losses stalling (chance)', 'flows per loss', 'lost', 'packets dropped c→s / s→c', 'QUIC lost / retransmitted', 'local datagram drops'],
      result.variants.map((variant) => [
        variant.error ? `${variant.variant} (error: ${variant.error})` : variant.variant,
        variant.thresholdMs.toFixed(1),
        String(variant.stalls.episodes),
        percent(variant.stalls.sharedFraction),
        percent(variant.stalls.chanceFraction),
        variant.afterLoss ? `${variant.afterLoss.stalling} / ${variant.afterLoss.drops} (${percent(variant.afterLoss.chanceStalling)})` : '—',
        variant.afterLoss?.flowsHeld == null ? '—' : variant.afterLoss.flowsHeld.toFixed(1),
        percent(variant.lossRate),
        variant.packetsDropped ? `${variant.packetsDropped.clientToServer} / ${variant.packetsDropped.serverToClient}` : '—',
        variant.transportStats?.packetsLost == null ? '—' : `${variant.transportStats.packetsLost} / ${variant.transportStats.packetsRetransmitted ?? '—'}`,
        variant.transport === 'webtransport' || variant.transport === 'webrtc' ? String(variant.transportStats?.dropped ?? '—') : '—',
      ]),
    ),
    '',
    'shared: stall episodes during which another flow was stalled too (one ordered lane: a loss holds every flow);',
    'shared by chance: the same with each flow\'s stalls moved in time, i.e. what independent stalls would give.',
    'losses stalling: the path\'s drops followed by a late message (TUN path: it logs when it drops), against instants picked evenly (chance);',
    'flows per loss: how many flows such a drop held back (one ordered lane: all of them; channels: the one whose data was lost).',
    'local datagram drops: datagrams the client\'s own stack dropped (WebTransport: a full datagram queue; WebRTC: a full unreliable channel buffer), not the path.',
  ];
  return lines.join('\n');
}

export function formatBackpressure(result: BackpressureResult): string {
  const s = result.settings;
  return [
    `backpressure: producer ${s.producerRate} × ${s.messageSize} B/s over ${s.producerTransport} for ${s.durationMs} ms; consumer ${s.consumerWorkMs} ms of CPU per message; server queue ${kib(s.highWaterMark)} high water, ${kib(s.maxQueuedBytes)} hard`,
    '',
    table(
      ['transport / policy', 'published', 'received', 'dropped', 'not queued', 'max queued', 'over high water at', 'latency p50 / max ms', 'peak server heap', 'close (server / consumer)'],
      result.runs.map((run) => [
        `${run.transport} ${run.policy}${run.error ? ` (error: ${run.error})` : ''}`,
        String(run.published),
        String(run.received),
        String(run.dropped),
        String(run.notQueued),
        `${kib(run.maxQueuedBytes)} / ${run.maxQueuedMessages}`,
        run.overHighWaterAtMs === null ? 'never' : `${run.overHighWaterAtMs} ms`,
        `${ms(run.latency.p50)} / ${ms(run.latency.max)}`,
        mb(run.peakServerHeapBytes),
        `${run.serverClose?.code ?? '—'} / ${run.consumerClose?.code ?? '—'}`,
      ]),
    ),
    '',
    'not queued: deliveries the server routed but neither queued nor counted as dropped (wait: refused by the full queue and lost, the router does not wait; disconnect: routed after the cut).',
  ].join('\n');
}
