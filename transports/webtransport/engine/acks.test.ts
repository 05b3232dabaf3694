/**
 * ACK policy over real QUIC on loopback. quiche 0.18 acknowledges every packet at once; the engine
 * lets the ACK for one small packet wait (ACK_DELAY_MS) for the next packet to carry it, so a
 * message exchange at a fixed rate costs one packet each way, and a lone packet is still
 * acknowledged, by the timer. A packet of datagrams costs no stream polling. Bulk transfer that
 * waits for flow-control credit never stalls.
 */
import { describe, expect, it } from 'vitest';
import * as quicheTime from './quiche-time.ts';
import { createCertificate } from '../../../certs/index.ts';
import { WebTransport } from './client.ts';
import { ACK_DELAY_MS } from './quic.ts';
import { WebTransportServer } from './server.ts';
import { startWebTransportChild } from '../../../test-support/webtransport-echo.ts';

/** A server that sends each datagram straight back, and a client of it: `run` gets the client and the server's counters. */
async function withDatagramEcho(run: (client: WebTransport, server: WebTransportServer) => Promise<void>): Promise<void> {
  const certificate = await createCertificate();
  const server = new WebTransportServer({ port: 0, certPem: certificate.certPem, keyPem: certificate.keyPem }).route('/t');
  // The direct datagram path: each datagram straight back.
  server.onSession((session) => void session.ready.then(() => (session.onDatagram = (payload) => void session.sendDatagram(payload))));
  const { port } = await server.listen();
  const client = new WebTransport(`https://127.0.0.1:${port}/t`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: certificate.sha256 }], keepAliveMs: 0 });
  try {
    await client.ready;
    await run(client, server);
  } finally {
    client.close();
    await server.close(100);
  }
}

/** Echoes `messages` datagrams one at a time, 1 ms apart; resolves with how many came back. */
async function echoDatagrams(client: WebTransport, messages: number): Promise<number> {
  let echoed = 0;
  let onEcho: () => void = () => undefined;
  client.onDatagram = () => {
    echoed++;
    onEcho();
  };
  for (let i = 0; i < messages; i++) {
    const echo = new Promise<void>((resolve) => (onEcho = resolve));
    client.sendDatagram(Uint8Array.of(i));
    await echo;
    // The next message leaves well within the ACK delay, so the ACK for this echo rides with it.
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return echoed;
}

const ECHO_BYTES = 4 * 1024 * 1024;

describe('QUIC ACKs', () => {
  it('datagrams echoed at a fixed rate: one packet each way per message; the last one is acknowledged by the timer', async () => {
    await withDatagramEcho(async (client, server) => {
      const messages = 50;
      const before = server.socketCounters.packetsReceived;
      const echoed = await echoDatagrams(client, messages);
      const received = server.socketCounters.packetsReceived - before;
      expect(echoed).toBe(messages);
      // Acknowledging every echo at once would take 2 packets per message. (Margin: on a busy
      // machine a 1 ms pause can outlast the ACK delay now and then.)
      expect(received / messages).toBeLessThan(1.5);
      // Nothing follows the last echo: its ACK goes out alone once the delay has passed.
      const last = server.socketCounters.packetsReceived;
      await expect.poll(() => server.socketCounters.packetsReceived, { timeout: 5_000, interval: ACK_DELAY_MS }).toBeGreaterThan(last);
    });
  });

  it('a packet that brings only datagrams costs no stream polling on either side', async () => {
    await withDatagramEcho(async (client) => {
      // quiche's isReadable() is also true while a datagram waits: were the streams polled first,
      // a datagram would cost every stream a streamReadable() call and a readable() iteration.
      quicheTime.start();
      let calls: quicheTime.QuicheCalls;
      try {
        expect(await echoDatagrams(client, 20)).toBe(20);
      } finally {
        calls = quicheTime.stop();
      }
      expect(calls['dgramRecvVec']?.calls).toBeGreaterThanOrEqual(40);
      expect(calls['streamReadable']).toBeUndefined();
      expect(calls['readable']).toBeUndefined();
      // Each side polls the stream it read last once, on the first datagram; after that datagrams come first.
      expect(calls['streamRecv']?.calls ?? 0).toBeLessThanOrEqual(2);
    });
  });

  it('4 MiB echoes complete without keep-alives (flow-control credit always sends what it releases)', async () => {
    // A flush that ran before a packet's credit was processed once left the bytes it released in
    // quiche until a keep-alive came by (~2 s per 1 MiB echo); without keep-alives the transfer
    // stalled. The server runs in its own process, as a server does: its turns are its own.
    const certificate = await createCertificate();
    const { child, port } = await startWebTransportChild(certificate);
    const client = new WebTransport(`https://127.0.0.1:${port}/t`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: certificate.sha256 }], keepAliveMs: 0 });
    try {
      await client.ready;
      // More than a stream's first window (1 MiB) each way: the senders wait for credit, as in bulk transfer.
      for (let round = 0; round < 3; round++) {
        const stream = await client.createBidirectionalStream();
        const writer = stream.writable.getWriter();
        void writer.write(new Uint8Array(ECHO_BYTES).fill(round)).then(() => writer.close());
        const reader = stream.readable.getReader();
        let received = 0;
        for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) received += chunk.value.length;
        expect(received).toBe(ECHO_BYTES);
      }
    } finally {
      client.close();
      child.kill('SIGKILL');
    }
  }, 15_000);
});
