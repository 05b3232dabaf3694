/**
 * The slow consumer of the backpressure experiment, in its own process (forked with IPC): it
 * subscribes to a topic and spends `workMs` of CPU on every message (a busy wait: the event loop is
 * blocked, so it reads from its connection no faster than it works, and the transport's own flow
 * control — TCP window, QUIC stream credit, the next long-poll — pushes back on the server).
 *
 * Messages carry the producer's send time (epoch ms from `performance.timeOrigin + now()`, the same
 * wall clock in every process of this machine) and a sequence number.
 *
 * IPC out: `ready {id}`, then `progress {received, missing, latencies}` every `sampleMs` (latencies
 * since the previous one; a consumer busy with a backlog reports late, as it would answer anything
 * late), and `closed {code, reason, wasClean}`.
 */
import { createClient } from '../../transports/node-webtransport.ts';
import type { Delivery } from '../../transports/client.ts';
import type { TransportName } from '../../transports/transport.ts';

export interface ConsumerOptions {
  url: string;
  transport: TransportName;
  topic: string;
  workMs: number;
  sampleMs: number;
}

export type ConsumerMessage =
  | { type: 'ready'; id: string }
  | { type: 'progress'; received: number; missing: number; latencies: number[] }
  | { type: 'closed'; code: number; reason: string; wasClean: boolean };

const options = JSON.parse(process.argv[2]!) as ConsumerOptions;
// With a callback, a send racing the runner's disconnect fails quietly instead of crashing.
const post = (message: ConsumerMessage) => {
  if (process.connected) process.send!(message, undefined, undefined, () => undefined);
};
const now = () => performance.timeOrigin + performance.now();

const client = createClient({ url: options.url, transports: options.transport, reconnect: false });
let received = 0;
let lastSeq = -1;
let missing = 0;
let window: number[] = [];
client.on('message', (delivery: Delivery) => {
  if (delivery.kind !== 'topic' || !(delivery.data instanceof Uint8Array)) return;
  const view = new DataView(delivery.data.buffer, delivery.data.byteOffset, 12);
  const latency = now() - view.getFloat64(0);
  const seq = view.getUint32(8);
  // Sequence gaps are messages the server dropped (or never queued) for this consumer.
  if (seq > lastSeq + 1) missing += seq - lastSeq - 1;
  lastSeq = Math.max(lastSeq, seq);
  received++;
  window.push(latency);
  for (const until = performance.now() + options.workMs; performance.now() < until; );
});
client.on('close', (info) => post({ type: 'closed', code: info.code, reason: info.reason, wasClean: info.wasClean }));

await client.connect();
await client.subscribe(options.topic);
post({ type: 'ready', id: client.id! });
setInterval(() => {
  post({ type: 'progress', received, missing, latencies: window });
  window = [];
}, options.sampleMs);
process.on('disconnect', () => process.exit(0));
