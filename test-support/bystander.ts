/**
 * A healthy pair of clients on two transports (long-polling → WebSocket) that must keep working
 * while a test throws hostile input at the same server: they exchange an acknowledged message.
 */
import { expect } from 'vitest';
import type { Delivery } from '../transports/client.ts';
import { createClient } from '../transports/node-client.ts';
import { waitFor } from './servers.ts';

export async function bystanderWorks(url: string): Promise<void> {
  const a = createClient({ url, transports: 'long-polling' });
  const b = createClient({ url, transports: 'websocket' });
  const inbox: Delivery[] = [];
  b.on('message', (d) => inbox.push(d));
  await Promise.all([a.connect(), b.connect()]);
  await a.send(b.id!, 'still here', { ack: true });
  await waitFor(() => inbox.length === 1);
  expect(inbox[0]!.data).toBe('still here');
  a.close();
  b.close();
}
