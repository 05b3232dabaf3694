/**
 * `npm run bench:micro`: tinybench micro-benchmarks of the pure pieces on the hot path — envelope
 * encode/decode (JSON and binary), varints, stream message framing — and the router's in-memory
 * fan-out (one publish to 1 000 subscribers whose connections frame it as the WebSocket server
 * does and count it). Then one 1 MiB publish to the same 1 000: how many copies of its payload the
 * frames written hold (distinct buffers of at least 1 MiB), and the ArrayBuffer memory it added.
 */
import { Bench } from 'tinybench';
import { decodeEnvelope, encodeEnvelope, type Envelope } from '../transports/codec/envelope.ts';
import { frameMessage, MessageDeframer } from '../transports/codec/message-framing.ts';
import { encodeVarint, readVarint } from '../transports/codec/varint.ts';
import { payloadBuffers, publishKept, startFanOut } from '../test-support/framing-connection.ts';

const json: Envelope = { t: 'publish', topic: 'prices', data: { symbol: 'EURUSD', bid: 1.0842, ask: 1.0844, ts: 1732406400000 }, id: 'k3Zf.17' };
const binary: Envelope = { t: 'publish', topic: 'moves', data: new Uint8Array(64).fill(7), id: 'k3Zf.18' };
const jsonFrame = encodeEnvelope(json);
const binaryFrame = encodeEnvelope(binary);
const framed = frameMessage(new Uint8Array(1024));

const fanOut = await startFanOut(1000, 'fan');
const smallPublish = encodeEnvelope({ t: 'publish', topic: 'fan', data: new Uint8Array(64) });

const bench = new Bench({ name: 'switchyard micro', time: 500 });
bench
  .add('envelope encode JSON', () => void encodeEnvelope(json))
  .add('envelope decode JSON', () => void decodeEnvelope(jsonFrame))
  .add('envelope encode binary 64 B', () => void encodeEnvelope(binary))
  .add('envelope decode binary 64 B', () => void decodeEnvelope(binaryFrame))
  .add('varint encode+read', () => void readVarint(encodeVarint(494878333), 0))
  .add('frame+deframe 1 KiB', () => void new MessageDeframer(1 << 20).push(framed))
  .add('router fan-out to 1000 subscribers', async () => {
    fanOut.publisher.receive(smallPublish);
    await Promise.resolve(); // let the queues flush (one microtask per tick, as on a real server)
  });

await bench.run();
const rows = bench.tasks.map((task) => {
  const result = task.result as { throughput?: { mean: number }; latency?: { mean: number; p99?: number } } | undefined;
  return {
    task: task.name,
    'ops/s': Math.round(result?.throughput?.mean ?? 0).toLocaleString('en-US'),
    'mean µs': ((result?.latency?.mean ?? 0) * 1000).toFixed(3),
    'p99 µs': ((result?.latency?.p99 ?? 0) * 1000).toFixed(3),
  };
});
console.table(rows);
const fanTask = bench.tasks.find((task) => task.name.startsWith('router fan-out'));
const perSecond = ((fanTask?.result as { throughput?: { mean: number } } | undefined)?.throughput?.mean ?? 0) * 1000;
console.log(`router fan-out: ${Math.round(perSecond).toLocaleString('en-US')} deliveries/s in memory (1 publish → 1000 queues)`);

// One 1 MiB publish to the 1000, every frame kept as a socket would hold it until written.
const arrayBuffersBefore = process.memoryUsage().arrayBuffers;
const frames = await publishKept(fanOut, 'fan', new Uint8Array(1 << 20).fill(1));
const arrayBuffersAdded = process.memoryUsage().arrayBuffers - arrayBuffersBefore;
console.log(
  `1 MiB fan-out to ${fanOut.subscribers.length} in-memory connections: ${frames.length} frames written, ${payloadBuffers(frames, 1 << 20)} distinct payload buffer(s) among them, ` +
    `${(arrayBuffersAdded / 2 ** 20).toFixed(1)} MiB of ArrayBuffer memory added (per-recipient copies would be ${fanOut.subscribers.length} buffers, ~${fanOut.subscribers.length} MiB)`,
);
fanOut.router.close();
