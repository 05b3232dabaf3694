/**
 * A fast publisher, paused subscribers and one healthy reader in its own process (issue 11 item 7):
 * the server slows the publisher (it stops reading a WebSocket or its WebTransport streams, answers a long-polling POST later) while a reader that keeps up is
 * over its high-water mark, so the healthy reader receives everything, in order, under the
 * `disconnect` and `wait` policies, while the paused subscribers are left to their policy.
 * Before, the healthy reader was cut with 4008 or lost messages. Real sockets, two processes.
 */
import { fork } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createClient } from '../transports/node-webtransport.ts';
import type { SlowConsumerPolicy, TransportName } from '../transports/transport.ts';
import { waitFor } from '../test-support/servers.ts';
import { startServer, type SwitchyardServer } from './index.ts';

const READER = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'test-support', 'steady-reader.ts');
const PAUSED_SUBSCRIBERS = 20;
const MESSAGES = 20_000;
/** CPU per message in the healthy reader: slower than the publisher, as real consumers are. */
const READER_WORK_US = 40;

describe.each([
  ['disconnect', 'websocket'],
  ['wait', 'websocket'],
  ['disconnect', 'long-polling'],
  ['disconnect', 'webtransport'],
] as [SlowConsumerPolicy, TransportName][])('backpressure under %s, publisher on %s', (policy, publisherTransport) => {
  let server: SwitchyardServer;
  beforeAll(async () => {
    server = await startServer({
      port: 0,
      certificate: publisherTransport === 'webtransport' ? 'ephemeral' : 'none',
      transports: ['websocket', 'long-polling', ...(publisherTransport === 'webtransport' ? (['webtransport'] as const) : [])],
      backpressure: { highWaterMark: 64 * 1024, maxQueuedBytes: 1024 * 1024, policy },
      // Only backpressure slows the publisher here. A reader is judged stalled after 1 s without
      // progress, not the default 100 ms: on two shared cores the healthy reader's process can go
      // that long without the CPU, and would be judged stalled and cut (or its deliveries refused)
      // however well the server paces the publisher. The paused subscribers never read: they are
      // judged stalled all the same, a second later.
      router: { rateLimit: { perSecond: 1e9, burst: 1e9 }, stalledReaderMs: 1_000 },
    });
  });
  afterAll(() => server.close());

  it(`a healthy reader in its own process receives all ${MESSAGES} messages beside ${PAUSED_SUBSCRIBERS} paused subscribers`, async () => {
    const topic = 'prices';
    const paused = await Promise.all(
      Array.from({ length: PAUSED_SUBSCRIBERS }, async () => {
        const socket = new WebSocket(`${server.urls.http.replace('http', 'ws')}/ws`);
        let frames = 0;
        socket.on('message', () => frames++);
        await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
        socket.send(JSON.stringify({ v: 1, t: 'hello' }));
        socket.send(JSON.stringify({ v: 1, t: 'subscribe', topic, id: 's' }));
        await waitFor(() => frames === 2, 5_000, 'subscribed');
        // Stop reading: the server's queue for this subscriber only grows.
        (socket as unknown as { _socket: net.Socket })._socket.pause();
        return socket;
      }),
    );
    const reader = fork(READER, [server.urls.http, topic, String(READER_WORK_US)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const reports: unknown[] = [];
    reader.on('message', (message) => reports.push(message));
    try {
      await waitFor(() => reports.includes('ready'), 20_000, 'reader subscribed');
      const publisher = createClient({ url: server.urls.http, transports: publisherTransport });
      await publisher.connect();
      const pad = 'x'.repeat(400);
      for (let i = 0; i < MESSAGES - 1; i++) void publisher.publish(topic, { i, pad });
      await publisher.publish(topic, { i: MESSAGES - 1, pad }, { ack: true });
      const last = () => reports.at(-1) as { received: number; inOrder: boolean; closed: number | null };
      await waitFor(
        () => {
          reader.send('report');
          return typeof reports.at(-1) === 'object' && (last().received === MESSAGES || last().closed !== null);
        },
        // Seconds on an idle machine; generous for a loaded one (the reader's CPU dominates).
        150_000,
        'the reader to get everything or be closed',
      );
      expect(last()).toEqual({ received: MESSAGES, inOrder: true, closed: null });
      publisher.close();
    } finally {
      reader.kill();
      for (const socket of paused) socket.terminate();
    }
  }, 200_000);
});
