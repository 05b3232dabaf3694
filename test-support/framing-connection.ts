/**
 * A server-side connection whose wire is memory: its flush frames each queued message the way the
 * WebSocket server does (`serverFrame` of its PreparedMessage) and keeps what it would have
 * written. For in-memory fan-outs through the router (the prepared-message suite, `npm run
 * bench:micro`): they count deliveries and check which buffers the writes share, without sockets.
 */
import { Router } from '../server/router.ts';
import { BaseConnection } from '../transports/base-connection.ts';
import { encodeEnvelope } from '../transports/codec/envelope.ts';
import type { Message, TransportCapabilities } from '../transports/transport.ts';
import { serverFrame } from '../transports/websocket/frame.ts';

export class FramingConnection extends BaseConnection {
  readonly transport = 'websocket' as const;
  readonly capabilities: TransportCapabilities = { unreliable: false, independentChannels: false, serverPush: true, binary: true, maxMessageSize: 4 << 20, maxUnreliableSize: 0 };
  /** Frames written, each as its parts, while `keep` is true; otherwise only counted. */
  readonly written: (readonly Uint8Array[])[] = [];
  keep = false;
  delivered = 0;

  constructor() {
    super({ defaultPolicy: 'disconnect', backpressure: { maxQueuedBytes: 64 << 20 } });
    this.markOpen();
  }

  /** Feeds a frame in as if it arrived from the peer. */
  receive(message: Message): void {
    this.deliver(message);
  }

  protected flush(): void {
    for (let item = this.outbound.shift(); item; item = this.outbound.shift()) {
      const frame = item.prepared.framed(serverFrame);
      if (this.keep) this.written.push(frame);
      this.countSent(item.prepared);
      this.delivered++;
    }
    this.onFlushed();
  }

  protected closeTransport(code: number, reason: string): void {
    this.finishClose({ code, reason, wasClean: true });
  }
}

/** A router with a publisher and subscribers of one topic, all on FramingConnections. */
export interface FanOut {
  router: Router;
  publisher: FramingConnection;
  subscribers: FramingConnection[];
}

/** Attaches the publisher and `count` subscribers of `topic`, each past its hello and subscribe. */
export async function startFanOut(count: number, topic: string): Promise<FanOut> {
  const router = new Router({ heartbeatMs: 3_600_000 });
  const publisher = new FramingConnection();
  const subscribers = Array.from({ length: count }, () => new FramingConnection());
  for (const connection of [publisher, ...subscribers]) {
    router.attach(connection);
    connection.receive(encodeEnvelope({ t: 'hello' }));
  }
  await new Promise((resolve) => setImmediate(resolve));
  for (const connection of subscribers) connection.receive(encodeEnvelope({ t: 'subscribe', topic }));
  await new Promise((resolve) => setImmediate(resolve));
  return { router, publisher, subscribers };
}

/**
 * Publishes `data` to `topic` with every subscriber keeping what it writes, as a socket holds a
 * frame until it is written: the frames written, each as its parts.
 */
export async function publishKept({ publisher, subscribers }: FanOut, topic: string, data: Uint8Array): Promise<(readonly Uint8Array[])[]> {
  for (const connection of subscribers) connection.keep = true;
  publisher.receive(encodeEnvelope({ t: 'publish', topic, data }));
  await new Promise((resolve) => setImmediate(resolve));
  return subscribers.flatMap((connection) => connection.written);
}

/** How many distinct buffers hold the parts of `frames` of at least `size` bytes: 1 if a payload is shared, one per frame if copied. */
export function payloadBuffers(frames: readonly (readonly Uint8Array[])[], size: number): number {
  return new Set(frames.flat().filter((part) => part.length >= size).map((part) => part.buffer)).size;
}
