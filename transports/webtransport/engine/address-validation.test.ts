/**
 * QUIC address validation over real UDP on loopback (RFC 9000 §8.1): a stranger's Initial gets at
 * most 3x its bytes back until the address is proven; a flood of Initials from new ports costs a
 * bounded number of connections and bounded memory (stateless Retry above a threshold, a cap on
 * handshakes in progress); a real client still connects through a Retry.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import path from 'node:path';
import { quiche } from '@matrixai/quic/native/index.js';
import { afterEach, describe, expect, it } from 'vitest';
import { createCertificate, type CertificateBundle } from '../../../certs/index.ts';
import { waitFor } from '../../../test-support/servers.ts';
import { RetryTokens, deriveServerKeys } from './address-validation.ts';
import { WebTransport } from './client.ts';
import { quicConfig } from './quic.ts';
import { WebTransportServer, type WebTransportServerOptions } from './server.ts';
import { echoDatagrams } from '../../../test-support/webtransport-echo.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
let server: WebTransportServer | undefined;
let certificate: CertificateBundle | undefined;

async function serve(options: Partial<WebTransportServerOptions> = {}): Promise<{ server: WebTransportServer; port: number }> {
  certificate ??= await createCertificate();
  server = new WebTransportServer({ port: 0, certPem: certificate.certPem, keyPem: certificate.keyPem, ...options }).route('/t');
  server.onSession((session) => void echoDatagrams(session).catch(() => undefined));
  const { port } = await server.listen();
  return { server, port };
}

afterEach(async () => {
  await server?.close(50);
  server = undefined;
});

/** Runs test-support/quic-initial-flood.ts in its own process; resolves with what it sent. */
function flood(port: number, count: number, answerRetry: boolean): Promise<{ initials: number; bytesSent: number; retries: number }> {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test-support/quic-initial-flood.ts'), String(port), String(count), answerRetry ? '1' : '0'], { cwd: ROOT }, (error, stdout, stderr) =>
      error ? reject(new Error(`flood failed: ${stderr}`)) : resolve(JSON.parse(stdout) as { initials: number; bytesSent: number; retries: number }),
    ),
  );
}

/** Tracks the largest value `sample` takes while `during` runs. */
async function peakDuring<T>(sample: () => number, during: Promise<T>): Promise<{ peak: number; result: T }> {
  let peak = sample();
  const timer = setInterval(() => (peak = Math.max(peak, sample())), 5);
  try {
    const result = await during;
    return { peak: Math.max(peak, sample()), result };
  } finally {
    clearInterval(timer);
  }
}

describe('QUIC address validation', () => {
  it('sends an unvalidated address at most 3x the bytes it received, across probe retransmissions', async () => {
    // The handshake deadline (6 s) lets quiche's probe timer fire at 1, 3 and 7 s: without the
    // budget its probes alone took the total past 3x at 5 s (6.3x by 21 s).
    const { server, port } = await serve({ handshakeTimeoutMs: 6_000, idleTimeoutMs: 30_000 });
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    let replied = 0;
    socket.on('message', (packet) => (replied += packet.length));
    // A real client Initial (quiche's), sent from a raw socket that never answers.
    const fake = quiche.Connection.connect('x', randomBytes(16), { host: '127.0.0.1', port: socket.address().port }, { host: '127.0.0.1', port }, quicConfig('client', {}));
    const initial = new Uint8Array(1500);
    const [length] = fake.send(initial)!;
    expect(length).toBeGreaterThanOrEqual(1200);
    socket.send(initial.subarray(0, length), port, '127.0.0.1');
    await waitFor(() => server.stats().handshakes === 1, 5_000, 'the handshake to start');
    await waitFor(() => server.stats().connections === 0, 15_000, 'the handshake deadline');
    socket.close();
    expect(replied).toBeGreaterThan(0);
    expect(replied).toBeLessThanOrEqual(3 * length);
    expect(server.stats()).toMatchObject({ amplificationLimited: expect.any(Number), handshakeTimeouts: 1 });
    expect(server.stats().amplificationLimited).toBeGreaterThan(0); // the budget, not luck, held it
    console.info(`unvalidated address: received ${length} B, sent ${replied} B (${(replied / length).toFixed(2)}x)`);
  }, 30_000);

  it('5000 Initials from new source ports: unvalidated connections stay at the Retry threshold and memory stays bounded', async () => {
    const { server, port } = await serve({ retryAfterHandshakes: 16 });
    const rss = process.memoryUsage().rss;
    const { peak, result } = await peakDuring(() => server.stats().connections, flood(port, 5_000, false));
    const growthMiB = (process.memoryUsage().rss - rss) / 2 ** 20;
    expect(result.initials).toBe(5_000);
    expect(peak).toBeLessThanOrEqual(16);
    // Every Initial past the threshold got a stateless Retry (some may be lost in a full socket buffer).
    expect(server.stats().retriesSent).toBeGreaterThan(4_000);
    expect(server.stats().retriesSent + server.stats().connections).toBeLessThanOrEqual(5_000);
    // Measured without these defences: ~96 KB of quiche state per Initial (141 MiB for the 1504 a
    // socket buffer let through); 16 connections cost well under this bound.
    expect(growthMiB).toBeLessThan(64);
    console.info(`5000 Initials: peak ${peak} connections, ${server.stats().retriesSent} Retries, RSS +${growthMiB.toFixed(1)} MiB`);
  }, 120_000);

  it('clients that answer the Retry are capped at maxHandshakes; the excess is dropped and counted', async () => {
    const { server, port } = await serve({ retryAfterHandshakes: 0, maxHandshakes: 100, handshakeTimeoutMs: 60_000 });
    const rss = process.memoryUsage().rss;
    const { peak, result } = await peakDuring(() => server.stats().handshakes, flood(port, 1_500, true));
    const growthMiB = (process.memoryUsage().rss - rss) / 2 ** 20;
    expect(result.retries).toBeGreaterThan(100);
    expect(peak).toBeLessThanOrEqual(100);
    expect(server.stats().connections).toBe(100);
    expect(server.stats().initialsDropped).toBeGreaterThan(0);
    expect(server.stats().initialsDropped).toBeLessThanOrEqual(result.retries - 100);
    expect(growthMiB).toBeLessThan(64);
    console.info(`Retry-answering flood: peak ${peak} handshakes, ${server.stats().initialsDropped} Initials dropped, RSS +${growthMiB.toFixed(1)} MiB`);
  }, 120_000);

  it('a Retry token replayed from another port is refused with INVALID_TOKEN and allocates nothing', async () => {
    const { server, port } = await serve({ retryAfterHandshakes: 0 });
    const bind = async () => {
      const socket = dgram.createSocket('udp4');
      await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
      return socket;
    };
    const [honest, replayer] = [await bind(), await bind()];
    const local = { host: '127.0.0.1', port: honest.address().port };
    const remote = { host: '127.0.0.1', port };
    const conn = quiche.Connection.connect('x', randomBytes(16), local, remote, quicConfig('client', {}));
    const out = new Uint8Array(1500);
    const retry = new Promise<Buffer>((resolve) => honest.once('message', resolve));
    honest.send(out.subarray(0, conn.send(out)![0]), port, '127.0.0.1');
    conn.recv(await retry, { from: remote, to: local });
    const [length] = conn.send(out)!; // the second Initial, carrying the token
    const refusal = new Promise<Buffer>((resolve) => replayer.once('message', resolve));
    replayer.send(out.subarray(0, length), port, '127.0.0.1');
    // RFC 9000 §8.1.3: the answer is a CONNECTION_CLOSE with INVALID_TOKEN (0x0b), in an Initial
    // the client can read (here the honest client's quiche reads what the replayer got).
    const close = await refusal;
    expect(close.length).toBeLessThanOrEqual(3 * length);
    conn.recv(close, { from: remote, to: local });
    expect(conn.peerError()).toMatchObject({ isApp: false, errorCode: 0x0b });
    expect(server.stats()).toMatchObject({ retriesSent: 1, invalidTokens: 1, connections: 0, handshakes: 0, routes: 0 });
    // The same Initial from the address the token was made for is accepted.
    honest.send(out.subarray(0, length), port, '127.0.0.1');
    await waitFor(() => server.stats().connections === 1, 5_000, 'the honest Initial to be accepted');
    honest.close();
    replayer.close();
  });

  it('a Node client connects through a stateless Retry and its session works', async () => {
    const { server, port } = await serve({ retryAfterHandshakes: 0 });
    const client = new WebTransport(`https://127.0.0.1:${port}/t`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: certificate!.sha256 }] });
    await client.ready;
    const writer = client.datagrams.writable.getWriter();
    const reader = client.datagrams.readable.getReader();
    await writer.write(Uint8Array.of(7, 8, 9));
    expect(Array.from((await reader.read()).value!)).toEqual([7, 8, 9]);
    expect(server.stats()).toMatchObject({ retriesSent: 1, invalidTokens: 0, connections: 1, handshakes: 0 });
    client.close();
  });
});

describe('Retry tokens', () => {
  const keys = deriveServerKeys('test secret');
  const tokens = new RetryTokens(keys.retry);
  const peer = { host: '127.0.0.1', port: 5555 };
  const odcid = randomBytes(16);
  const retryScid = randomBytes(16);

  it('give back the original DCID for the same address and DCID, within their lifetime', () => {
    const token = tokens.mint(peer, odcid, retryScid, 1_000_000);
    expect(Buffer.from(tokens.validate(token, peer, retryScid, 1_000_500)!)).toEqual(odcid);
    // The same secret after a restart validates it too.
    expect(new RetryTokens(deriveServerKeys('test secret').retry).validate(token, peer, retryScid, 1_000_500)).not.toBeNull();
  });

  it('are refused from another address or port, for another DCID, expired, tampered with, or from another key', () => {
    const token = tokens.mint(peer, odcid, retryScid, 1_000_000);
    expect(tokens.validate(token, { host: '127.0.0.2', port: 5555 }, retryScid, 1_000_500)).toBeNull();
    expect(tokens.validate(token, { host: '127.0.0.1', port: 5556 }, retryScid, 1_000_500)).toBeNull();
    expect(tokens.validate(token, peer, randomBytes(16), 1_000_500)).toBeNull();
    expect(tokens.validate(token, peer, retryScid, 1_000_000 + tokens.lifetimeMs + 1)).toBeNull();
    const tampered = Uint8Array.from(token);
    tampered[12]! ^= 1;
    expect(tokens.validate(tampered, peer, retryScid, 1_000_500)).toBeNull();
    expect(tokens.validate(token.subarray(0, 20), peer, retryScid, 1_000_500)).toBeNull();
    expect(new RetryTokens(deriveServerKeys('another').retry).validate(token, peer, retryScid, 1_000_500)).toBeNull();
  });
});
