/**
 * A WebTransport session counts as a connection from the moment it is established, not only once
 * the client opens its reliable stream (issue 11 item 10): a session that only sends datagrams
 * (which keep QUIC from idling out) is closed at the router's hello timeout, and counts against
 * its connection limit.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type SwitchyardServer } from '../../server/index.ts';
import { frameMessage } from '../codec/message-framing.ts';
import { CloseCode } from '../transport.ts';
import { WebTransport } from './engine/client.ts';

let server: SwitchyardServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** A session that never opens a stream and sends a datagram every 100 ms. */
async function datagramOnlySession(server: SwitchyardServer): Promise<{ client: WebTransport; stop: () => void }> {
  const client = new WebTransport(server.urls.webtransport!, { serverCertificateHashes: [{ algorithm: 'sha-256', value: server.certificate!.sha256 }] });
  await client.ready;
  const writer = client.datagrams.writable.getWriter();
  const timer = setInterval(() => void writer.write(Uint8Array.of(0, 0x7b)).catch(() => undefined), 100);
  void client.closed.finally(() => clearInterval(timer)).catch(() => undefined);
  return { client, stop: () => clearInterval(timer) };
}

describe('WebTransport sessions without a reliable stream', () => {
  it('are closed at the hello timeout (1.5 s) although datagrams keep QUIC alive', async () => {
    server = await startServer({ port: 0, certificate: 'ephemeral', transports: ['webtransport'], router: { helloTimeoutMs: 1_500 } });
    const start = performance.now();
    const { client } = await datagramOnlySession(server);
    const info = await client.closed;
    const ms = performance.now() - start;
    expect(info).toMatchObject({ closeCode: CloseCode.policyViolation, reason: 'no hello in time' });
    expect(ms).toBeGreaterThanOrEqual(1_400);
    expect(ms).toBeLessThan(4_000);
    expect(server.router.stats().connections).toBe(0);
  }, 20_000);

  it('count against maxConnections while they wait', async () => {
    server = await startServer({ port: 0, certificate: 'ephemeral', transports: ['webtransport'], router: { maxConnections: 1, helloTimeoutMs: 10_000 } });
    const first = await datagramOnlySession(server);
    expect(server.router.stats().connections).toBe(1);
    const second = await datagramOnlySession(server);
    expect(await second.client.closed).toMatchObject({ closeCode: 1013, reason: 'server at its connection limit' });
    first.stop();
    first.client.close();
  }, 20_000);
});

describe('WebTransport streams a stranger opens', () => {
  it('a stream that does not begin with a lane name closes only its session, with a protocol error', async () => {
    server = await startServer({ port: 0, certificate: 'ephemeral', transports: ['webtransport'] });
    const trust = { serverCertificateHashes: [{ algorithm: 'sha-256', value: server.certificate!.sha256 }] };
    const stranger = new WebTransport(server.urls.webtransport!, trust);
    const bystander = new WebTransport(server.urls.webtransport!, trust);
    await Promise.all([stranger.ready, bystander.ready]);
    const bystanderStream = await bystander.createBidirectionalStream();
    const bystanderWriter = bystanderStream.writable.getWriter();
    await bystanderWriter.write(frameMessage('reliable'));

    const stream = await stranger.createBidirectionalStream();
    await stream.writable.getWriter().write(frameMessage('not a lane'));
    expect(await stranger.closed).toMatchObject({ closeCode: CloseCode.protocolError });
    // The other session is still the server's connection.
    await expect.poll(() => server!.router.stats().connections).toBe(1);
    bystander.close();
  }, 20_000);
});
