/**
 * A server that dies takes its connections with it; clients must learn so at once, not at their
 * idle timeout (RFC 9000 §10.3; issue 11 item 9). A server process is killed with SIGKILL (no
 * CONNECTION_CLOSE); a new one on the same port with the same key answers the client's next
 * packet (its keep-alive PING) with a stateless reset. With no server at all, the ICMP port
 * unreachable does the same; and a handshake to a closed port fails in milliseconds.
 */
import type { ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { createCertificate, type CertificateBundle } from '../../../certs/index.ts';
import { PeerUnreachableError } from '../../errors.ts';
import { blankSecurePage, launchChromium } from '../../../test-support/chromium.ts';
import { waitFor } from '../../../test-support/servers.ts';
import { startWebTransportChild } from '../../../test-support/webtransport-echo.ts';
import { WebTransport } from './client.ts';
import { WebTransportServer } from './server.ts';

/** The client's idle timeout: what it would take to notice without a reset. */
const IDLE_TIMEOUT_MS = 10_000;
const children: ChildProcess[] = [];
const servers: WebTransportServer[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await Promise.all(servers.splice(0).map((server) => server.close(50)));
});

/** Starts the engine server in its own process; resolves with its UDP port. */
async function startChild(certificate: CertificateBundle): Promise<{ child: ChildProcess; port: number }> {
  const started = await startWebTransportChild(certificate);
  children.push(started.child);
  return started;
}

async function kill(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

async function connectedClient(port: number, certificate: CertificateBundle): Promise<WebTransport> {
  const client = new WebTransport(`https://127.0.0.1:${port}/t`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: certificate.sha256 }], idleTimeoutMs: IDLE_TIMEOUT_MS });
  await client.ready;
  // One echoed datagram: the session is up end to end.
  const writer = client.datagrams.writable.getWriter();
  await writer.write(Uint8Array.of(1));
  await client.datagrams.readable.getReader().read();
  writer.releaseLock();
  return client;
}

/** Milliseconds until `closed` settles (these clients only receive: their keep-alive is the trigger). */
async function timeToClose(client: WebTransport): Promise<{ ms: number; outcome: unknown }> {
  const start = performance.now();
  const outcome = await client.closed.then(
    (info) => info,
    (error: unknown) => error,
  );
  return { ms: performance.now() - start, outcome };
}

describe('learning that the server is gone', () => {
  it('after kill -9 and a restart with the same key, the client is reset within about its keep-alive, far under its idle timeout', async () => {
    const certificate = await createCertificate();
    const { child, port } = await startChild(certificate);
    const client = await connectedClient(port, certificate);
    await kill(child);
    // The same certificate key after the restart: the same reset keys (derived from it).
    const restarted = new WebTransportServer({ port, certPem: certificate.certPem, keyPem: certificate.keyPem }).route('/t');
    servers.push(restarted);
    await restarted.listen();
    const { ms, outcome } = await timeToClose(client);
    expect(outcome).toBeInstanceOf(Error); // the connection died under the session
    expect(restarted.stats().statelessResetsSent).toBeGreaterThanOrEqual(1);
    expect(ms).toBeLessThan(2_500); // keep-alive 1 s, then one round trip
    console.info(`stateless reset noticed ${ms.toFixed(0)} ms after the restart (idle timeout ${IDLE_TIMEOUT_MS} ms)`);
  }, 30_000);

  it('headless Chromium takes our reset (16-byte connection ids) and reports the loss on its next write', async () => {
    const certificate = await createCertificate();
    const { child, port } = await startChild(certificate);
    const browser = await launchChromium();
    try {
      const { page } = await blankSecurePage(browser);
      await page.evaluate(
        async ({ port, hash }) => {
          // The page's own WebTransport (the bare name here is our Node client's import).
          const Native = (globalThis as unknown as { WebTransport: typeof WebTransport }).WebTransport;
          const transport = new Native(`https://127.0.0.1:${port}/t`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: new Uint8Array(hash) }] });
          await transport.ready;
          const state = { transport, closedAt: 0, outcome: '' };
          (window as unknown as { lab: typeof state }).lab = state;
          transport.closed.then(
            (info) => Object.assign(state, { closedAt: performance.now(), outcome: `closed ${info.closeCode}` }),
            (error: Error) => Object.assign(state, { closedAt: performance.now(), outcome: String(error) }),
          );
          const writer = transport.datagrams.writable.getWriter();
          await writer.write(Uint8Array.of(1));
          await transport.datagrams.readable.getReader().read();
          writer.releaseLock();
        },
        { port, hash: Array.from(certificate.sha256) },
      );
      await kill(child);
      const restarted = new WebTransportServer({ port, certPem: certificate.certPem, keyPem: certificate.keyPem }).route('/t');
      servers.push(restarted);
      await restarted.listen();
      const result = await page.evaluate(async () => {
        const state = (window as unknown as { lab: { transport: WebTransport; closedAt: number; outcome: string } }).lab;
        const start = performance.now();
        const writer = state.transport.datagrams.writable.getWriter();
        await writer.write(Uint8Array.of(2));
        await state.transport.closed.catch(() => undefined);
        return { ms: state.closedAt - start, outcome: state.outcome };
      });
      expect(restarted.stats().statelessResetsSent).toBeGreaterThanOrEqual(1);
      expect(result.outcome).toMatch(/WebTransportError/);
      expect(result.ms).toBeLessThan(1_000); // measured 38 ms; a reset it ignored took 12 s
    } finally {
      await browser.close();
    }
  }, 60_000);

  it('a reset made with another key is not taken for one', async () => {
    const certificate = await createCertificate();
    const { child, port } = await startChild(certificate);
    const client = await connectedClient(port, certificate);
    await kill(child);
    const stranger = new WebTransportServer({ port, certPem: certificate.certPem, keyPem: certificate.keyPem, statelessSecret: 'another secret' }).route('/t');
    servers.push(stranger);
    await stranger.listen();
    let settled = false;
    void client.closed.then(
      () => (settled = true),
      () => (settled = true),
    );
    await waitFor(() => stranger.stats().statelessResetsSent >= 2, 5_000, 'two resets with the wrong token');
    expect(settled).toBe(false);
    client.close();
  }, 30_000);

  it('after kill -9 with nothing on the port, the ICMP port unreachable closes the client within about its keep-alive', async () => {
    const certificate = await createCertificate();
    const { child, port } = await startChild(certificate);
    const client = await connectedClient(port, certificate);
    await kill(child);
    const { ms, outcome } = await timeToClose(client);
    expect(outcome).toBeInstanceOf(Error);
    expect(ms).toBeLessThan(2_500);
  }, 30_000);

  it('a handshake to a closed UDP port fails with PeerUnreachableError in milliseconds, not at the handshake timeout', async () => {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const { port } = socket.address();
    await new Promise<void>((resolve) => socket.close(resolve));
    const start = performance.now();
    const client = new WebTransport(`https://127.0.0.1:${port}/t`, { idleTimeoutMs: IDLE_TIMEOUT_MS });
    const error = await client.ready.then(() => null, (reason: unknown) => reason);
    const ms = performance.now() - start;
    expect(error).toBeInstanceOf(PeerUnreachableError);
    expect(error).toMatchObject({ code: 'ERR_PEER_UNREACHABLE' });
    expect(ms).toBeLessThan(1_000); // 25 ms on a quiet machine
    console.info(`closed port refused in ${ms.toFixed(1)} ms`);
  });
});
