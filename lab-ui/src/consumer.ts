/**
 * The Backpressure page's slow consumer: each message costs `costMs` of CPU before the next is
 * read, so the transport below it (the browser's socket, TCP window, QUIC credit, the poll
 * cadence) fills up for real, back to the server's queue. It runs in a worker (consumer-worker.ts)
 * so its busy handler stalls only itself; WebRTC's consumer runs on the page, because workers have
 * no RTCPeerConnection.
 */
import type { SwitchyardClient, TransportName } from '../../transports/browser-client.ts';
import { connectClient } from './lab.ts';
import { nowMs, readStamp } from './stats.ts';

export type ConsumerCommand = { type: 'start'; transport: TransportName; costMs: number } | { type: 'stop' };
export type ConsumerReport =
  | { type: 'ready'; id: string }
  | { type: 'error'; message: string }
  /** [sent at, arrived at] in absolute ms, since the last report. */
  | { type: 'batch'; received: [number, number][] }
  | { type: 'closed'; code: number; reason: string }
  /** After `stop`: the last batch went before this. */
  | { type: 'stopped' };

/** Connects and consumes until `stop()`, reporting every 100 ms; `stop()` flushes, closes and reports `stopped`. */
export function startConsumer(transport: TransportName, costMs: number, report: (report: ConsumerReport) => void): { stop(): void } {
  let client: SwitchyardClient | undefined;
  let stopped = false;
  let pending: [number, number][] = [];
  const flush = () => {
    if (pending.length === 0) return;
    report({ type: 'batch', received: pending });
    pending = [];
  };
  const timer = setInterval(flush, 100);
  connectClient(transport).then(
    (connected) => {
      if (stopped) return connected.close();
      client = connected;
      client.on('message', (delivery) => {
        const stamp = readStamp(delivery.data);
        if (!stamp) return;
        pending.push([stamp.sentAtMs, nowMs()]);
        // The deliberate slowness: burn CPU, so nothing else on this thread runs meanwhile.
        const until = performance.now() + costMs;
        while (performance.now() < until);
      });
      client.on('close', (info) => report({ type: 'closed', code: info.code, reason: info.reason }));
      report({ type: 'ready', id: client.id! });
    },
    (error: unknown) => report({ type: 'error', message: (error as Error).message }),
  );
  return {
    stop() {
      stopped = true;
      clearInterval(timer);
      flush();
      client?.close();
      report({ type: 'stopped' });
    },
  };
}
