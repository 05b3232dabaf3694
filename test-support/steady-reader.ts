/**
 * A healthy subscriber in a process of its own (for the backpressure fairness test): it reads
 * steadily, spending `workUs` of CPU on each message as a real consumer would, and reports over
 * IPC: 'ready' once subscribed, then { received, inOrder, closed } when asked or when closed.
 * argv: url topic workUs
 */
import { createClient } from '../transports/node-client.ts';

const [url, topic, workUs] = process.argv.slice(2) as [string, string, string];
const client = createClient({ url, transports: 'websocket', reconnect: false });
let received = 0;
let inOrder = true;
let closed: number | null = null;
client.on('message', (delivery) => {
  if ((delivery.data as { i: number }).i !== received) inOrder = false;
  received++;
  const until = performance.now() + Number(workUs) / 1000;
  while (performance.now() < until);
});
client.on('close', (info) => {
  closed = info.code;
  process.send!({ received, inOrder, closed });
});
process.on('message', () => process.send!({ received, inOrder, closed }));
await client.connect();
await client.subscribe(topic);
process.send!('ready');
