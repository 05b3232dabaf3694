/**
 * Channels are independent on the sending side too: a channel whose stream is out of QUIC
 * flow-control credit (its reader stopped) holds back only its own messages. The peer here is a
 * raw engine server that reads every lane but `channel:stuck`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createCertificate } from '../../certs/index.ts';
import { MessageDeframer } from '../codec/message-framing.ts';
import type { Connection, Message } from '../transport.ts';
import { startEchoWebTransportServer } from '../../test-support/webtransport-echo.ts';
import { WebTransportServer } from './engine/server.ts';
import type { WebTransportSession } from './engine/session.ts';
import { waitFor } from '../../test-support/servers.ts';
import { connectWebTransportNode } from './node.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Reads each incoming stream's lane header; records what arrives on every lane but `stuck`, and when `stuck` stops being read. */
async function readAllButStuck(session: WebTransportSession, arrived: (lane: string, message: Message) => void, stuck: () => void): Promise<void> {
  const streams = session.incomingBidirectionalStreams.getReader();
  for (let next = await streams.read(); !next.done; next = await streams.read()) {
    void (async () => {
      const reader = next.value.readable.getReader();
      const deframer = new MessageDeframer(4 * 1024 * 1024);
      let lane: string | undefined;
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        for (const message of deframer.push(chunk.value)) {
          if (lane === undefined) lane = String(message);
          else arrived(lane, message);
        }
        if (lane === 'channel:stuck') return stuck(); // stop reading: QUIC flow control stops the sender
      }
    })().catch(() => undefined);
  }
}

describe('webtransport connection', () => {
  it('sends on one channel while another channel is stalled by flow control', async () => {
    const certificate = await createCertificate();
    const server = new WebTransportServer({ port: 0, certPem: certificate.certPem, keyPem: certificate.keyPem }).route('/wt');
    const arrived: { lane: string; message: Message }[] = [];
    let stuckUnread = false;
    server.onSession((session) => void readAllButStuck(session, (lane, message) => arrived.push({ lane, message }), () => (stuckUnread = true)));
    const { port } = await server.listen();
    cleanups.push(() => server.close(200));

    const client: Connection = connectWebTransportNode({ url: `https://127.0.0.1:${port}`, webTransportUrl: `https://127.0.0.1:${port}/wt`, certificateSha256: certificate.sha256Hex });
    cleanups.push(() => client.close());
    await client.opened;

    // Far more than QUIC's stream window and our per-stream buffer: most of it must wait.
    const chunk = new Uint8Array(64 * 1024);
    for (let i = 0; i < 64; i++) expect(client.send(chunk, 'channel:stuck')).toBe('queued');
    // The server has stopped reading the stuck channel: from here on only its backlog can shrink.
    await waitFor(() => stuckUnread, 5_000, 'the server to stop reading channel:stuck');

    client.send('on another channel', 'channel:free');
    client.send('on the reliable lane', 'reliable');
    await waitFor(() => arrived.length === 2, 5_000, 'the other lanes');
    expect(arrived.map(({ lane, message }) => `${lane}: ${String(message)}`).sort()).toEqual(['channel:free: on another channel', 'reliable: on the reliable lane']);
    // The stalled channel still holds its backlog: nothing was dropped to let the others pass.
    expect(client.queued.messages).toBeGreaterThan(0);
    expect(client.stats().dropped).toBe(0);
  });

  it('sends a burst of datagrams written in one go without dropping any itself', async () => {
    const echo = await startEchoWebTransportServer();
    cleanups.push(() => echo.close());
    const client = connectWebTransportNode({ url: `https://127.0.0.1:${echo.port}`, webTransportUrl: `https://127.0.0.1:${echo.port}/echo`, certificateSha256: echo.certificate.sha256Hex });
    cleanups.push(() => client.close());
    const received: Message[] = [];
    client.on('message', (message, lane) => void (lane === 'unreliable' && received.push(message)));
    await client.opened;
    for (let i = 0; i < 32; i++) expect(client.send(`datagram ${i}`, 'unreliable')).toBe('queued');
    // The network (loopback) may still lose one now and then; this side's own queue drops none.
    await waitFor(() => received.length >= 30, 3_000, '30 of 32 datagrams');
    expect(client.stats().dropped).toBe(0);
  });
});
