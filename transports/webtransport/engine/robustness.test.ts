/**
 * Bad peers and load against the engine: garbage UDP, malformed HTTP/3, streams without a session,
 * a reader that stops reading, a flood of datagrams, and 1 000 sessions opened and closed — over
 * real QUIC on loopback. Raw QUIC clients (our QuicEndpoint without HTTP/3) play the bad peers.
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEchoWebTransportServer, type EchoWebTransportServer } from '../../../test-support/webtransport-echo.ts';
import { encodeVarint } from '../../codec/varint.ts';
import { H3ErrorCode } from '../h3/errors.ts';
import { encodeFrame, encodeFrameHeader, encodeSettings, FrameType } from '../h3/frames.ts';
import { WebTransport } from './client.ts';
import { QuicEndpoint, quicConfig, type QuicConnection } from './quic.ts';
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

/** A raw QUIC connection with ALPN h3 and no HTTP/3 of its own. */
async function rawQuic(onEstablished: (quic: QuicConnection) => void): Promise<{ quic: QuicConnection; closed: Promise<{ code: number; reason: string } | null>; reads: Map<number, { reset?: number; bytes: number }>; endpoint: QuicEndpoint }> {
  const endpoint = new QuicEndpoint('client', quicConfig('client', { idleTimeoutMs: 5_000 }));
  await endpoint.bind(0, '127.0.0.1');
  const quic = endpoint.connect({ host: '127.0.0.1', port: server.port }, 'localhost');
  const reads = new Map<number, { reset?: number; bytes: number }>();
  const closed = new Promise<{ code: number; reason: string } | null>((resolve) => {
    quic.handler = {
      established: () => onEstablished(quic),
      readable: (id) => {
        const entry = reads.get(id) ?? { bytes: 0 };
        reads.set(id, entry);
        for (let result = quic.read(id); result; result = quic.read(id)) {
          if ('reset' in result) {
            entry.reset = result.reset;
            break;
          }
          entry.bytes += result.bytes.length;
          if (result.fin) break;
        }
      },
      writable: () => undefined,
      stopSending: () => undefined,
      datagram: () => undefined,
      closed: (info) => {
        resolve(info);
        void endpoint.close();
      },
    };
  });
  quic.start();
  return { quic, closed, reads, endpoint };
}

const controlStream = (frames: Uint8Array) => Uint8Array.of(0x00, ...frames);

describe('engine robustness', () => {
  it('ignores garbage UDP datagrams and keeps serving', async () => {
    const socket = dgram.createSocket('udp4');
    const packets = [Buffer.alloc(0), Buffer.from([0xc0]), randomBytes(40), randomBytes(1200), Buffer.concat([Buffer.from([0xc3, 0, 0, 0, 1, 8]), randomBytes(1300)])];
    for (let i = 0; i < 50; i++) for (const packet of packets) socket.send(packet, server.port, '127.0.0.1');
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.close();
    await healthy();
  });

  it.each([
    ['an oversized SETTINGS frame', controlStream(encodeFrameHeader(FrameType.SETTINGS, 1_000_000)), H3ErrorCode.EXCESSIVE_LOAD],
    ['a control stream not starting with SETTINGS', controlStream(encodeFrame(FrameType.GOAWAY, Uint8Array.of(0))), H3ErrorCode.MISSING_SETTINGS],
    ['DATA on the control stream', controlStream(Uint8Array.of(...encodeFrame(FrameType.SETTINGS, encodeSettings([])), ...encodeFrame(FrameType.DATA, Uint8Array.of(1)))), H3ErrorCode.FRAME_UNEXPECTED],
    ['duplicate settings', controlStream(encodeFrame(FrameType.SETTINGS, Uint8Array.of(0x01, 0x00, 0x01, 0x00))), H3ErrorCode.SETTINGS_ERROR],
  ])('closes the connection that sends %s with the right HTTP/3 error, and only that one', async (_what, bytes, code) => {
    const bad = await rawQuic((quic) => quic.write(2, bytes));
    expect(await bad.closed).toMatchObject({ code });
    await healthy();
  });

  it('answers a truncated QPACK field section with QPACK_DECOMPRESSION_FAILED', async () => {
    const bad = await rawQuic((quic) => {
      quic.write(2, controlStream(encodeFrame(FrameType.SETTINGS, encodeSettings([]))));
      quic.write(0, encodeFrame(FrameType.HEADERS, Uint8Array.of(0x00, 0x00, 0x51, 0x09, 0x61)));
    });
    expect(await bad.closed).toMatchObject({ code: H3ErrorCode.QPACK_DECOMPRESSION_FAILED });
    await healthy();
  });

  it('ignores a unidirectional stream of a huge reserved type, and ends only the connection that names a session id beyond 2^53', async () => {
    const huge = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe);
    const grease = await rawQuic((quic) => {
      quic.write(2, controlStream(encodeFrame(FrameType.SETTINGS, encodeSettings([]))));
      quic.write(6, Uint8Array.of(...huge, 1, 2, 3), true);
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(grease.quic.isClosed).toBe(false);
    grease.quic.close(true, H3ErrorCode.NO_ERROR, '');
    const absurd = await rawQuic((quic) => {
      quic.write(2, controlStream(encodeFrame(FrameType.SETTINGS, encodeSettings([]))));
      quic.write(0, Uint8Array.of(...encodeVarint(0x41), ...huge));
    });
    expect(await absurd.closed).toMatchObject({ code: H3ErrorCode.GENERAL_PROTOCOL_ERROR });
    await healthy();
  });

  it('refuses a CONNECT to an unknown path with 404', async () => {
    const session = client('/nowhere');
    await expect(session.ready).rejects.toThrow(/404/);
    await healthy();
  });

  it('refuses streams that name no session, and keeps the connection', async () => {
    const raw = await rawQuic((quic) => {
      quic.write(2, controlStream(encodeFrame(FrameType.SETTINGS, encodeSettings([]))));
      quic.write(0, Uint8Array.of(...encodeVarint(0x41), ...encodeVarint(400), 1, 2, 3));
    });
    await waitFor(() => raw.reads.get(0)?.reset !== undefined, 5_000, 'the stream to be reset');
    expect(raw.reads.get(0)!.reset).toBe(H3ErrorCode.ID_ERROR);
    expect(raw.quic.isClosed).toBe(false);
    raw.quic.close(true, H3ErrorCode.NO_ERROR, '');
    await raw.closed;
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
    const session = client();
    await session.ready;
    const writer = session.datagrams.writable.getWriter();
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 5_000; i++) writes.push(writer.write(new Uint8Array(1000)));
    await Promise.all(writes);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const stats = session.getStats()!;
    expect(stats.datagramsDropped).toBeGreaterThan(0);
    expect(stats.packetsSent).toBeGreaterThan(0);
    expect(stats.smoothedRttMs).toBeGreaterThanOrEqual(0); // whole milliseconds from the binding
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
