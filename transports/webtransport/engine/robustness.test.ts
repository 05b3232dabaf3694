/**
 * Bad peers and load against the engine over real QUIC on loopback: garbage UDP, a reader that
 * stops reading, a flood of datagrams, and 1 000 sessions opened and closed. Malformed HTTP/3 is
 * tested without sockets, on byte fixtures (h3-connection.test.ts).
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEchoWebTransportServer, type EchoWebTransportServer } from '../../../test-support/webtransport-echo.ts';
import { WebTransport } from './client.ts';
import { waitFor } from '../../../test-support/servers.ts';

let server: EchoWebTransportServer;
beforeAll(async () => {
  server = await startEchoWebTransportServer();
});
afterAll(() => server.close());

function client(path = '/echo'): WebTransport {
  return new WebTransport(`https://127.0.0.1:${server.port}${path}`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: server.certificate.sha256 }] });
}

/** A session still works: datagram and stream echo. */
async function healthy(): Promise<void> {
  const session = client();
  await session.ready;
  const stream = await session.createBidirectionalStream();
  const writer = stream.writable.getWriter();
  await writer.write(new TextEncoder().encode('ok'));
  await writer.close();
  const { value } = await stream.readable.getReader().read();
  expect(new TextDecoder().decode(value)).toBe('ok');
  session.close();
  await session.closed;
}

describe('engine robustness', () => {
  it('ignores garbage UDP datagrams, keeps no state for them, and keeps serving', async () => {
    const socket = dgram.createSocket('udp4');
    const packets = [Buffer.alloc(0), Buffer.from([0xc0]), randomBytes(40), randomBytes(1200), Buffer.concat([Buffer.from([0xc3, 0, 0, 0, 1, 8]), randomBytes(1300)])];
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < 50; i++) for (const packet of packets) sends.push(new Promise((resolve) => socket.send(packet, server.port, '127.0.0.1', resolve)));
    await Promise.all(sends);
    socket.close();
    // Loopback queues datagrams to the server's socket in order: the healthy client's packets come
    // after all the garbage, so once it is served the garbage has been read.
    await healthy();
    await waitFor(() => server.server.stats().connections === 0, 10_000, 'the healthy session to drain');
    expect(server.server.stats()).toMatchObject({ connections: 0, handshakes: 0, routes: 0 });
  });

  it('a reader that stops reading stops the writer through flow control, then everything arrives', async () => {
    // The echo server pipes back; a client that never reads the echo stalls the server's writes,
    // which stall its reads, which stall our writes: the bytes in flight stay bounded.
    const session = client();
    await session.ready;
    const stream = await session.createBidirectionalStream();
    const writer = stream.writable.getWriter();
    const chunk = new Uint8Array(64 * 1024);
    let accepted = 0;
    let pending: Promise<void> | undefined;
    const deadline = Date.now() + 1_500;
    while (Date.now() < deadline && accepted < 64 * 1024 * 1024) {
      pending = writer.write(chunk).then(() => void (accepted += chunk.length));
      const settled = await Promise.race([pending.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 200))]);
      if (!settled) break;
    }
    // Windows: 1 MiB per stream each way plus bounded queues — far below the 64 MiB we tried to push.
    expect(accepted).toBeLessThan(12 * 1024 * 1024);
    expect(writer.desiredSize).toBeLessThanOrEqual(0);
    // Start reading: the stall clears and the writer moves again.
    const reader = stream.readable.getReader();
    let echoed = 0;
    const reading = (async () => {
      for (let next = await reader.read(); !next.done; next = await reader.read()) echoed += next.value.length;
    })();
    await pending;
    await writer.close();
    await reading;
    expect(echoed).toBe(accepted); // the last write, pending during the stall, is counted once it settled
    session.close();
  });

  it('bounds the datagram send queue and counts what it drops; reports QUIC stats', async () => {
    const started = Date.now();
    const session = client();
    await session.ready;
    const writer = session.datagrams.writable.getWriter();
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 5_000; i++) writes.push(writer.write(new Uint8Array(1000)));
    await Promise.all(writes);
    // 5 000 datagrams at once overflow the 1 024-long send queue: drops are counted as they happen.
    const stats = session.getStats()!;
    expect(stats.datagramsDropped).toBeGreaterThan(0);
    expect(stats.datagramsDropped).toBeLessThan(5_000);
    expect(stats.packetsSent).toBeGreaterThan(0);
    // Whole milliseconds from the binding (0 is a real loopback value), within this test's lifetime.
    expect(Number.isInteger(stats.smoothedRttMs)).toBe(true);
    expect(stats.smoothedRttMs).toBeLessThanOrEqual(Date.now() - started);
    expect(stats.cwnd).toBeGreaterThan(0);
    session.close();
  });

  it('1 000 sessions opened and closed leave no connections, routes, sessions or streams behind', async () => {
    const before = process.memoryUsage().heapUsed;
    for (let round = 0; round < 100; round++) {
      await Promise.all(
        Array.from({ length: 10 }, async () => {
          const session = client();
          await session.ready;
          session.close({ closeCode: 1, reason: 'churn' });
          await session.closed;
        }),
      );
    }
    await waitFor(() => server.server.stats().connections === 0, 10_000, 'connections to drain');
    expect(server.server.stats()).toMatchObject({ connections: 0, handshakes: 0, routes: 0, sessions: 0, streams: 0 });
    const growthMiB = (process.memoryUsage().heapUsed - before) / 1024 / 1024;
    expect(growthMiB).toBeLessThan(64);
  }, 120_000);
});
