/**
 * The engine against real peers: the same script runs in headless Chromium (its native
 * WebTransport) and in Node (our client), against our server over real QUIC on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blankSecurePage, launchChromium } from '../../../test-support/chromium.ts';
import { startEchoWebTransportServer, type EchoWebTransportServer } from '../../../test-support/webtransport-echo.ts';
// Imported under another name: `exercise` must use the global WebTransport (it also runs in the page).
import { WebTransport as NodeWebTransport } from './client.ts';

/** Runs in the browser or in Node: only globals (WebTransport, crypto, TextEncoder). */
async function exercise({ port, hash }: { port: number; hash: number[] }) {
  const options = { serverCertificateHashes: [{ algorithm: 'sha-256', value: new Uint8Array(hash) }] };
  const hex = async (bytes: Uint8Array<ArrayBuffer>) => Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)), (b) => b.toString(16).padStart(2, '0')).join('');
  const readAll = async (readable: ReadableStream<Uint8Array>) => {
    const chunks: Uint8Array[] = [];
    const reader = readable.getReader();
    for (let next = await reader.read(); !next.done; next = await reader.read()) chunks.push(next.value);
    const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let offset = 0;
    for (const chunk of chunks) {
      all.set(chunk, offset);
      offset += chunk.length;
    }
    return all;
  };
  const text = new TextDecoder();
  const echo = new WebTransport(`https://127.0.0.1:${port}/echo`, options);
  await echo.ready;

  const datagramWriter = echo.datagrams.writable.getWriter();
  const datagramReader = echo.datagrams.readable.getReader();
  await datagramWriter.write(new Uint8Array([1, 2, 3]));
  const datagram = Array.from((await datagramReader.read()).value!);

  const small = await echo.createBidirectionalStream();
  const smallWriter = small.writable.getWriter();
  await smallWriter.write(new TextEncoder().encode('hello over a stream'));
  await smallWriter.close();
  const bidiEcho = text.decode(await readAll(small.readable));

  const big = new Uint8Array(4 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
  const large = await echo.createBidirectionalStream();
  const largeWriter = large.writable.getWriter();
  const sending = largeWriter.write(big).then(() => largeWriter.close());
  const [received] = await Promise.all([readAll(large.readable), sending]);
  const bigSent = await hex(big);
  const bigEchoed = await hex(received);

  const uni = await echo.createUnidirectionalStream();
  const uniWriter = uni.getWriter();
  await uniWriter.write(new TextEncoder().encode('one way'));
  await uniWriter.close();
  const uniBack = text.decode(await readAll((await echo.incomingUnidirectionalStreams.getReader().read()).value!));

  echo.close({ closeCode: 7, reason: 'bye' });
  const clientClose = await echo.closed;

  // The server closes this session while three streams are still uploading: the close code must
  // arrive, and the bytes still in flight must not break the connection.
  const cutting = new WebTransport(`https://127.0.0.1:${port}/cut`, options);
  await cutting.ready;
  const filler = new Uint8Array(16 * 1024).fill(0x02); // 0x02: an HTTP/2 frame type, were it parsed as a request
  for (let i = 0; i < 3; i++) {
    const writer = (await cutting.createBidirectionalStream()).writable.getWriter();
    void (async () => {
      for (;;) await writer.write(filler);
    })().catch(() => undefined); // the server resets the stream
  }
  const cutClose = await cutting.closed.then(
    (info) => ({ closeCode: info.closeCode, reason: info.reason }),
    (error: Error) => ({ error: String(error.message ?? error) }),
  );

  const pushed = new WebTransport(`https://127.0.0.1:${port}/push`, options);
  await pushed.ready;
  const serverUni = text.decode(await readAll((await pushed.incomingUnidirectionalStreams.getReader().read()).value!));
  const serverBidi = (await pushed.incomingBidirectionalStreams.getReader().read()).value!;
  const serverBidiText = text.decode(await readAll(serverBidi.readable));
  const answer = serverBidi.writable.getWriter();
  await answer.write(new TextEncoder().encode('thanks'));
  await answer.close();
  const serverClose = await pushed.closed;

  let refused = '';
  const missing = new WebTransport(`https://127.0.0.1:${port}/nowhere`, options);
  await missing.ready.catch((error: Error) => (refused = String(error.message ?? error)));

  return { datagram, bidiEcho, bigSent, bigEchoed, bigLength: received.length, uniBack, clientClose, serverUni, serverBidiText, serverClose: { closeCode: serverClose.closeCode, reason: serverClose.reason }, cutClose, refused };
}

function expectSession(result: Awaited<ReturnType<typeof exercise>>, server: EchoWebTransportServer): void {
  expect(result.datagram).toEqual([1, 2, 3]);
  expect(result.bidiEcho).toBe('hello over a stream');
  expect(result.bigLength).toBe(4 * 1024 * 1024);
  expect(result.bigEchoed).toBe(result.bigSent);
  expect(result.uniBack).toBe('one way');
  expect(result.clientClose).toMatchObject({ closeCode: 7, reason: 'bye' });
  expect(result.serverUni).toBe('uni from server');
  expect(result.serverBidiText).toBe('bidi from server');
  expect(result.serverClose).toEqual({ closeCode: 4321, reason: 'server says bye' });
  expect(result.refused).not.toBe('');
  expect(server.closes).toContainEqual({ closeCode: 7, reason: 'bye' });
  expect(result.cutClose).toEqual({ closeCode: 1008, reason: 'policy' });
  // Bytes that arrived after the close were dropped, not parsed as a request (H3 error 0x105–0x107).
  expect(server.server.connectionErrors).toBe(0);
}

// Default admission (one round trip), and a stateless Retry before every connection.
describe.each([
  { admission: 'default admission', retryAfterHandshakes: undefined },
  { admission: 'Retry on every connection', retryAfterHandshakes: 0 },
])('WebTransport engine interop ($admission)', ({ retryAfterHandshakes }) => {
  let server: EchoWebTransportServer;
  beforeAll(async () => {
    server = await startEchoWebTransportServer({ retryAfterHandshakes });
  });
  afterAll(() => server.close());

  it('headless Chromium: datagrams, bidi echo, 4 MiB by SHA-256, server-opened streams, close codes both ways, 404', { timeout: 60_000 }, async () => {
    const browser = await launchChromium();
    try {
      const { page, close } = await blankSecurePage(browser);
      const result = await page.evaluate(exercise, { port: server.port, hash: Array.from(server.certificate.sha256) });
      await close();
      expectSession(result, server);
      expect(server.server.stats().retriesSent > 0).toBe(retryAfterHandshakes === 0);
    } finally {
      await browser.close();
    }
  });

  it('Node client: the same script against the same server', async () => {
    const global = globalThis as { WebTransport?: unknown };
    global.WebTransport = NodeWebTransport;
    try {
      const result = await exercise({ port: server.port, hash: Array.from(server.certificate.sha256) });
      expectSession(result, server);
      expect(server.server.stats().retriesSent > 0).toBe(retryAfterHandshakes === 0);
    } finally {
      delete global.WebTransport;
    }
  }, 60_000);

  it('Node client refuses a server whose certificate hash is not listed', async () => {
    const client = new NodeWebTransport(`https://127.0.0.1:${server.port}/echo`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: new Uint8Array(32) }] });
    await expect(client.ready).rejects.toThrow(/matches none of serverCertificateHashes/);
  });
});
