/**
 * The Backpressure page's slow consumer, in a worker so its busy handler stalls only itself: each
 * message costs `costMs` of CPU before the next is read, so the transport below it (the browser's
 * socket, TCP window, QUIC credit, the poll cadence) fills up for real, back to the server's queue.
 */
import type { SwitchyardClient } from '../../transports/browser-client.ts';
import { connectClient } from './lab.ts';
import { nowMs, readStamp } from './stats.ts';

export type ConsumerCommand = { type: 'start'; transport: import('../../transports/browser-client.ts').TransportName; costMs: number } | { type: 'stop' };
export type ConsumerReport =
  | { type: 'ready'; id: string }
  | { type: 'error'; message: string }
  /** [sent at, arrived at] in absolute ms, since the last report. */
  | { type: 'batch'; received: [number, number][] }
  | { type: 'closed'; code: number; reason: string };

const scope = self as unknown as { postMessage(report: ConsumerReport): void; onmessage: ((event: MessageEvent<ConsumerCommand>) => void) | null };
let client: SwitchyardClient | undefined;
let pending: [number, number][] = [];
const flush = setInterval(() => {
  if (pending.length === 0) return;
  scope.postMessage({ type: 'batch', received: pending });
  pending = [];
}, 100);

scope.onmessage = async (event) => {
  const command = event.data;
  if (command.type === 'stop') {
    clearInterval(flush);
    if (pending.length) scope.postMessage({ type: 'batch', received: pending });
    client?.close();
    return;
  }
  try {
    client = await connectClient(command.transport);
    client.on('message', (delivery) => {
      const stamp = readStamp(delivery.data);
      if (!stamp) return;
      pending.push([stamp.sentAtMs, nowMs()]);
      // The deliberate slowness: burn CPU, so nothing else in this worker runs meanwhile.
      const until = performance.now() + command.costMs;
      while (performance.now() < until);
    });
    client.on('close', (info) => scope.postMessage({ type: 'closed', code: info.code, reason: info.reason }));
    scope.postMessage({ type: 'ready', id: client.id! });
  } catch (error) {
    scope.postMessage({ type: 'error', message: (error as Error).message });
  }
};
