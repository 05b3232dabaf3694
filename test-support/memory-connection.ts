/**
 * An in-memory Connection pair for pure-logic unit suites (the router's): two ends joined without
 * a wire. It is a `BaseConnection`, so the contract in transports/transport.ts (lifecycle, lanes,
 * size limits, the bounded queue and its slow-consumer policy, counters, events) is the real one;
 * only the bytes move in memory. Everything happens in microtasks: no timers, no I/O, so it runs
 * the same under fake timers.
 */
import { BaseConnection } from '../transports/base-connection.ts';
import type { BackpressureOptions, CloseInfo, Lane, Message, TransportCapabilities, TransportName } from '../transports/transport.ts';

export interface MemoryConnectionOptions {
  /** The transport this end stands in for (what `connection.transport` says). Default 'websocket'. */
  transport?: TransportName;
  /** Overrides of the capabilities (default: reliable only, 2 MiB messages). */
  capabilities?: Partial<TransportCapabilities>;
  backpressure?: BackpressureOptions;
}

const DEFAULT_CAPABILITIES: TransportCapabilities = {
  unreliable: false,
  independentChannels: false,
  serverPush: true,
  binary: true,
  maxMessageSize: 2 * 1024 * 1024,
  maxUnreliableSize: 0,
};

export class MemoryConnection extends BaseConnection {
  readonly transport: TransportName;
  readonly capabilities: TransportCapabilities;
  #peer: MemoryConnection | undefined;
  #stalled = false;

  constructor(options: MemoryConnectionOptions = {}) {
    super({ backpressure: options.backpressure, defaultPolicy: 'disconnect' });
    this.transport = options.transport ?? 'websocket';
    this.capabilities = { ...DEFAULT_CAPABILITIES, ...options.capabilities };
  }

  /** Joins two ends and opens both. */
  static pair(client: MemoryConnectionOptions = {}, server: MemoryConnectionOptions = client): { client: MemoryConnection; server: MemoryConnection } {
    const a = new MemoryConnection(client);
    const b = new MemoryConnection(server);
    a.#peer = b;
    b.#peer = a;
    a.markOpen();
    b.markOpen();
    return { client: a, server: b };
  }

  /** The wire stops taking this end's messages (a peer that stopped reading): they stay queued. */
  stall(): void {
    this.#stalled = true;
  }

  /** The wire takes messages again. */
  unstall(): void {
    this.#stalled = false;
    this.requestFlush();
  }

  /** The wire breaks without a close handshake: both ends see 1006, not clean. */
  abort(): void {
    const info: CloseInfo = { code: 1006, reason: '', wasClean: false };
    this.finishClose(info);
    this.#peer?.finishClose(info);
  }

  protected flush(): void {
    if (this.#stalled) return;
    for (let item = this.outbound.shift(); item; item = this.outbound.shift()) {
      this.countSent(item.prepared);
      this.#peer?.arrive(item.prepared.message, item.lane);
    }
    this.onFlushed();
  }

  /** A clean close handshake: what was queued goes first, then both ends close with this code. */
  protected closeTransport(code: number, reason: string): void {
    queueMicrotask(() => {
      this.flush();
      const info: CloseInfo = { code, reason, wasClean: true };
      this.finishClose(info);
      this.#peer?.finishClose(info);
    });
  }

  protected arrive(message: Message, lane: Lane): void {
    this.deliver(message, lane);
  }
}
