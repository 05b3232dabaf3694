/**
 * A flood of QUIC Initials, each from a new UDP source port, as a stranger would send it: run in
 * its own process (so the memory it spends on its own quiche clients is not counted as the
 * server's) with `node --import tsx quic-initial-flood.ts <port> <count> <answer-retry>`.
 * Each Initial is a real one (quiche's client handshake, 1200 bytes). With `answer-retry` set
 * the fake client also answers the server's Retry with the second Initial, as a client at a real
 * address can; then it goes silent. Prints one JSON line: what it sent.
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { quiche } from '@matrixai/quic/native/index.js';
import { quicConfig } from '../transports/webtransport/engine/quic.ts';

const [port, count, answerRetry] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4] === '1'];
const CONCURRENCY = 64;
/** How long a fake client that answers Retry waits for one before it gives up on this port. */
const RETRY_WAIT_MS = 100;
const config = quicConfig('client', {});
const server = { host: '127.0.0.1', port };
const totals = { initials: 0, bytesSent: 0, retries: 0 };

async function oneClient(): Promise<void> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  const local = { host: '127.0.0.1', port: socket.address().port };
  const conn = quiche.Connection.connect('flood', randomBytes(20), local, server, config);
  const sendAll = async () => {
    for (let out = new Uint8Array(1500), sent = conn.send(out); sent; out = new Uint8Array(1500), sent = conn.send(out)) {
      totals.initials++;
      totals.bytesSent += sent[0];
      const packet = out.subarray(0, sent[0]);
      await new Promise((resolve) => socket.send(packet, port, server.host, resolve));
    }
  };
  const retry = answerRetry
    ? new Promise<Buffer | null>((resolve) => {
        const timer = setTimeout(() => resolve(null), RETRY_WAIT_MS);
        socket.on('message', (packet) => {
          try {
            if (quiche.Header.fromSlice(packet, 20).ty !== quiche.Type.Retry) return;
          } catch {
            return;
          }
          clearTimeout(timer);
          resolve(packet);
        });
      })
    : Promise.resolve(null);
  await sendAll();
  const packet = await retry;
  if (packet) {
    totals.retries++;
    conn.recv(packet, { from: server, to: local });
    await sendAll();
  }
  socket.close();
}

let next = 0;
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    while (next < count) {
      next++;
      await oneClient();
    }
  }),
);
process.stdout.write(`${JSON.stringify(totals)}\n`);
