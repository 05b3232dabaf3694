/**
 * A server-side connection whose wire is memory: its flush frames each queued message the way the
 * WebSocket server does (`serverFrame` of its PreparedMessage) and keeps what it would have
 * written. For in-memory fan-outs (the prepared-message suite, `npm run bench:micro`): they can
 * count deliveries and check which buffers the writes share, without sockets.
 */
import { BaseConnection } from '../transports/base-connection.ts';
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
      this.countSent(item);
      this.delivered++;
    }
    this.onFlushed();
  }

  protected closeTransport(code: number, reason: string): void {
    this.finishClose({ code, reason, wasClean: true });
  }
}
