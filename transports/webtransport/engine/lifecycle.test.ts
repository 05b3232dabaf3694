/**
 * Session lifecycle details over real QUIC: stream resets carry WebTransport error codes through
 * the HTTP/3 code space, and a server shutting down sends GOAWAY/DRAIN before it closes.
 */
import { describe, expect, it } from 'vitest';
import { createCertificate } from '../../../certs/index.ts';
import { WebTransport } from './client.ts';
import { WebTransportServer } from './server.ts';
import type { WebTransportSession } from './session.ts';

async function serve(onSession: (session: WebTransportSession) => void) {
  const certificate = await createCertificate();
  const server = new WebTransportServer({ port: 0, certPem: certificate.certPem, keyPem: certificate.keyPem }).route('/t').onSession(onSession);
  const { port } = await server.listen();
  const open = () => new WebTransport(`https://127.0.0.1:${port}/t`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: certificate.sha256 }] });
  return { server, open };
}

describe('WebTransport session lifecycle', () => {
  it('maps a stream abort with an application code to a reset the peer reads as that code', async () => {
    let serverError: unknown;
    let serverReading = false;
    const { server, open } = await serve(async (session) => {
      const { value } = await session.incomingBidirectionalStreams.getReader().read();
      const reader = value!.readable.getReader();
      try {
        for (;;) {
          const { done } = await reader.read();
          serverReading = true;
          if (done) break;
        }
      } catch (error) {
        serverError = error;
      }
    });
    const client = open();
    await client.ready;
    const stream = await client.createBidirectionalStream();
    const writer = stream.writable.getWriter();
    await writer.write(Uint8Array.of(1, 2, 3));
    // A reset that overtakes the stream header cannot name its session: abort once the server has the stream.
    await expect.poll(() => serverReading, { timeout: 5_000 }).toBe(true);
    await writer.abort({ streamErrorCode: 42 });
    await expect.poll(() => serverError, { timeout: 5_000 }).toMatchObject({ name: 'WebTransportError', streamErrorCode: 42 });
    client.close();
    await server.close(100);
  });

  it('maps a reader cancel with a code to STOP_SENDING the writer sees as that code', async () => {
    let writerError: unknown;
    const { server, open } = await serve(async (session) => {
      const stream = await session.createBidirectionalStream();
      const writer = stream.writable.getWriter();
      try {
        for (let i = 0; i < 10_000; i++) await writer.write(new Uint8Array(16 * 1024));
      } catch (error) {
        writerError = error;
      }
    });
    const client = open();
    await client.ready;
    const { value } = await client.incomingBidirectionalStreams.getReader().read();
    const reader = value!.readable.getReader();
    await reader.read();
    await reader.cancel({ streamErrorCode: 9 });
    await expect.poll(() => writerError, { timeout: 5_000 }).toMatchObject({ name: 'WebTransportError', streamErrorCode: 9 });
    client.close();
    await server.close(100);
  });

  it('tells sessions to drain on shutdown, then closes them', async () => {
    const { server, open } = await serve(() => undefined);
    const client = open();
    await client.ready;
    let drained = false;
    void client.draining.then(() => (drained = true));
    const closing = server.close(300);
    await expect.poll(() => drained, { timeout: 2_000 }).toBe(true);
    await closing;
    await expect(client.closed).rejects.toThrow();
  });
});
