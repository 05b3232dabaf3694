/**
 * `npm run bench:micro`: tinybench micro-benchmarks of the pure pieces on the hot path — envelope
 * encode/decode (JSON and binary), varints, stream message framing — and the router's in-memory
 * fan-out (one publish to 1 000 subscribers whose connections only count what they get).
 */
import { Bench } from 'tinybench';
import { Router } from '../server/router.ts';
import { BaseConnection } from '../transports/base-connection.ts';
import { decodeEnvelope, encodeEnvelope, type Envelope } from '../transports/codec/envelope.ts';
import { frameMessage, MessageDeframer } from '../transports/codec/message-framing.ts';
import { encodeVarint, readVarint } from '../transports/codec/varint.ts';
import type { Message, TransportCapabilities } from '../transports/transport.ts';

/** A connection whose wire is a counter: measures the router and queue, not a socket. */
class CountingConnection extends BaseConnection {
  readonly transport = 'websocket' as const;
  readonly capabilities: TransportCapabilities = { unreliable: false, independentChannels: false, serverPush: true, binary: true, maxMessageSize: 1 << 21, maxUnreliableSize: 0 };
  delivered = 0;
  constructor() {
    super({ defaultPolicy: 'disconnect' });
    this.markOpen();
  }
  protected flush(): void {
    while (this.outbound.shift()) this.delivered++;
  }
  protected closeTransport(code: number, reason: string): void {
    this.finishClose({ code, reason, wasClean: true });
  }
  /** Feeds a frame in as if it arrived from the peer. */
  receive(message: Message): void {
    this.deliver(message);
  }
}

const json: Envelope = { t: 'publish', topic: 'prices', data: { symbol: 'EURUSD', bid: 1.0842, ask: 1.0844, ts: 1732406400000 }, id: 'k3Zf.17' };
const binary: Envelope = { t: 'publish', topic: 'moves', data: new Uint8Array(64).fill(7), id: 'k3Zf.18' };
const jsonFrame = encodeEnvelope(json);
const binaryFrame = encodeEnvelope(binary);
const framed = frameMessage(new Uint8Array(1024));

const router = new Router({ heartbeatMs: 3_600_000 });
const publisher = new CountingConnection();
const subscribers = Array.from({ length: 1000 }, () => new CountingConnection());
for (const connection of [publisher, ...subscribers]) {
  router.attach(connection);
  connection.receive(encodeEnvelope({ t: 'hello' }));
}
await new Promise((resolve) => setTimeout(resolve, 10));
for (const connection of subscribers) connection.receive(encodeEnvelope({ t: 'subscribe', topic: 'fan' }));
const fanOut = encodeEnvelope({ t: 'publish', topic: 'fan', data: new Uint8Array(64) });

const bench = new Bench({ name: 'switchyard micro', time: 500 });
bench
  .add('envelope encode JSON', () => void encodeEnvelope(json))
  .add('envelope decode JSON', () => void decodeEnvelope(jsonFrame))
  .add('envelope encode binary 64 B', () => void encodeEnvelope(binary))
  .add('envelope decode binary 64 B', () => void decodeEnvelope(binaryFrame))
  .add('varint encode+read', () => void readVarint(encodeVarint(494878333), 0))
  .add('frame+deframe 1 KiB', () => void new MessageDeframer(1 << 20).push(framed))
  .add('router fan-out to 1000 subscribers', async () => {
    publisher.receive(fanOut);
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
router.close();
