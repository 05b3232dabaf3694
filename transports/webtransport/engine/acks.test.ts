/**
 * ACK policy over real QUIC on loopback. quiche 0.18 acknowledges every packet at once; the engine
 * lets the ACK for one small packet wait (ACK_DELAY_MS) for the next packet to carry it, so a
 * message exchange at a fixed rate costs one packet each way, and a lone packet is still
 * acknowledged, by the timer.
 */
import { describe, expect, it } from 'vitest';
import { createCertificate } from '../../../certs/index.ts';
import { WebTransport } from './client.ts';
import { ACK_DELAY_MS } from './quic.ts';
import { WebTransportServer } from './server.ts';

describe('QUIC ACKs', () => {
  it('datagrams echoed at a fixed rate: one packet each way per message; the last one is acknowledged by the timer', async () => {
    const certificate = await createCertificate();
    const server = new WebTransportServer({ port: 0, certPem: certificate.certPem, keyPem: certificate.keyPem }).route('/t');
    // The direct datagram path: each datagram straight back.
    server.onSession((session) => void session.ready.then(() => (session.onDatagram = (payload) => void session.sendDatagram(payload))));
    const { port } = await server.listen();
    const client = new WebTransport(`https://127.0.0.1:${port}/t`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: certificate.sha256 }], keepAliveMs: 0 });
    try {
      await client.ready;
      let echoed = 0;
      let onEcho: () => void = () => undefined;
      client.onDatagram = () => {
        echoed++;
        onEcho();
      };
      const messages = 50;
      const before = server.socketCounters.packetsReceived;
      for (let i = 0; i < messages; i++) {
        const echo = new Promise<void>((resolve) => (onEcho = resolve));
        client.sendDatagram(Uint8Array.of(i));
        await echo;
        // The next message leaves well within the ACK delay, so the ACK for this echo rides with it.
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      const received = server.socketCounters.packetsReceived - before;
      expect(echoed).toBe(messages);
      // Acknowledging every echo at once would take 2 packets per message. (Margin: on a busy
      // machine a 1 ms pause can outlast the ACK delay now and then.)
      expect(received / messages).toBeLessThan(1.5);
      // Nothing follows the last echo: its ACK goes out alone once the delay has passed.
      const last = server.socketCounters.packetsReceived;
      await expect.poll(() => server.socketCounters.packetsReceived, { timeout: 5_000, interval: ACK_DELAY_MS }).toBeGreaterThan(last);
    } finally {
      client.close();
      await server.close(100);
    }
  });
});
