/**
 * The client side of the head-of-line experiment, in its own process (inside the client namespace
 * when the path is impaired by the kernel). Reads one WorkerCommand per stdin line, answers one
 * WorkerReply per stdout line. Each run: one Switchyard client, `flows` flows of numbered
 * messages sent to itself through the server at a fixed rate, each flow on the lane the variant
 * gives it; send and arrival times are taken here, on this process's one clock.
 *
 * The flows' schedules are staggered (flow i starts i/flows of a period later) so their messages
 * leave in different packets: four flows written in the same tick would share a QUIC packet, and a
 * loss of that packet would stall all four on any transport.
 */
import { createInterface } from 'node:readline';
import type { Delivery } from '../../transports/client.ts';
import { createClient } from '../../transports/node-webrtc.ts';
import { webtransport } from '../../transports/node-webtransport.ts';
import { HEADER_BYTES, isUnreliable, VARIANT_LAYOUT, type WorkerCommand, type WorkerReply } from './hol-variants.ts';

/** How long to wait for stragglers after the last send: reliable lanes may need an RTO or two. */
const RELIABLE_TAIL_MS = 3_000;
/** Datagrams either come within a round trip or never. */
const UNRELIABLE_TAIL_MS = 500;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function run(command: WorkerCommand): Promise<WorkerReply> {
  const layout = VARIANT_LAYOUT[command.variant];
  const client = createClient({
    url: command.url,
    transports: layout.transport,
    reconnect: false,
    connectors: { webtransport },
    transportOptions: {
      ...(command.webTransportUrl ? { webTransportUrl: command.webTransportUrl } : {}),
      ...(command.certificateSha256 ? { certificateSha256: command.certificateSha256 } : {}),
    },
  });
  const perFlow = Math.floor((command.ratePerFlow * command.durationMs) / 1000);
  const flows = Array.from({ length: command.flows }, () => ({ sentAt: [] as number[], receivedAt: new Array<number | null>(perFlow).fill(null) }));
  let t0 = 0;
  let monotonicT0Ms = 0;
  let received = 0;
  client.on('message', (delivery: Delivery) => {
    if (delivery.kind !== 'send' || !(delivery.data instanceof Uint8Array)) return;
    const now = performance.now() - t0;
    const view = new DataView(delivery.data.buffer, delivery.data.byteOffset, HEADER_BYTES);
    const series = flows[view.getUint8(0)];
    const seq = view.getUint32(1);
    if (!series || series.receivedAt[seq] !== null) return;
    series.receivedAt[seq] = now;
    received++;
  });
  try {
    await client.connect();
    const self = client.id!;
    // Open every lane before the clock starts, so stream setup is not counted as a stall (flow 255: ignored on arrival).
    const opener = new Uint8Array(HEADER_BYTES).fill(255);
    await Promise.all(Array.from({ length: command.flows }, (_, flow) => client.send(self, opener, { lane: layout.lane(flow) }).catch(() => undefined)));
    await sleep(100);
    const interval = 1000 / command.ratePerFlow / command.flows;
    const total = perFlow * command.flows;
    t0 = performance.now();
    monotonicT0Ms = Number(process.hrtime.bigint()) / 1e6;
    for (let m = 0; m < total; m++) {
      const due = m * interval;
      // Never early: the schedule (flows staggered, fixed rate) is kept from below.
      for (let wait = due - (performance.now() - t0); wait > 0; wait = due - (performance.now() - t0)) await sleep(wait);
      const flow = m % command.flows;
      const seq = Math.floor(m / command.flows);
      const payload = new Uint8Array(Math.max(command.messageSize, HEADER_BYTES));
      const view = new DataView(payload.buffer);
      view.setUint8(0, flow);
      view.setUint32(1, seq);
      // Latency runs from the actual send: sends are never awaited here (the schedule cannot be
      // held back by the transport), so the intended time would only add this timer's ~1 ms slack.
      flows[flow]!.sentAt.push(performance.now() - t0);
      void client.send(self, payload, { lane: layout.lane(flow) }).catch(() => undefined);
    }
    const tail = isUnreliable(command.variant) ? UNRELIABLE_TAIL_MS : RELIABLE_TAIL_MS;
    for (const deadline = performance.now() + tail; received < total && performance.now() < deadline; ) await sleep(20);
    const stats = client.stats();
    return {
      variant: command.variant,
      flows,
      monotonicT0Ms,
      stats: stats ? { packetsLost: stats.packetsLost, packetsRetransmitted: stats.packetsRetransmitted, rttMs: stats.rttMs, dropped: stats.dropped } : null,
    };
  } catch (error) {
    return { variant: command.variant, error: (error as Error).message, flows, stats: null };
  } finally {
    client.close();
  }
}

const commands = createInterface({ input: process.stdin });
// The runner closes stdin when it is done, or dies (Ctrl-C): stop at once, even mid-run.
commands.on('close', () => process.exit(0));
for await (const line of commands) {
  if (!line.trim()) continue;
  const reply = await run(JSON.parse(line) as WorkerCommand);
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}
