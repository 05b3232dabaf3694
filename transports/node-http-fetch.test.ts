/**
 * The polling transports' Node requester (node-http-fetch.ts) on real loopback HTTP and HTTPS:
 * what it sends and returns, a body cut off before its end, an abort.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createCertificate } from '../certs/index.ts';
import { nodeHttpFetch } from './node-http-fetch.ts';

let server: http.Server | https.Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
  server = undefined;
});

/** A server whose handler answers each request; returns its base URL. */
async function serve(handler: http.RequestListener, tls?: { certPem: string; keyPem: string }): Promise<string> {
  server = tls ? https.createServer({ cert: tls.certPem, key: tls.keyPem }, handler) : http.createServer(handler);
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Echoes method, content-type and body back as JSON with the given status. */
const echoRequest =
  (status: number): http.RequestListener =>
  (request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ method: request.method, type: request.headers['content-type'] ?? null, body: Buffer.concat(chunks).toString('latin1') }));
    });
  };

describe('nodeHttpFetch', () => {
  it('sends method, headers and a byte body, and returns status and body', async () => {
    const url = await serve(echoRequest(200));
    const request = nodeHttpFetch();
    const response = await request(`${url}/x`, { method: 'POST', body: new Uint8Array([104, 105]), headers: { 'content-type': 'application/octet-stream' } });
    expect(response.ok).toBe(true);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ method: 'POST', type: 'application/octet-stream', body: 'hi' });
    // The same keep-alive agent serves the next request: a GET, no body.
    const again = await request(`${url}/y`);
    expect(JSON.parse(new TextDecoder().decode(await again.arrayBuffer()))).toEqual({ method: 'GET', type: null, body: '' });
  });

  it('reports an error status as not ok, with its body', async () => {
    const url = await serve(echoRequest(404));
    const response = await nodeHttpFetch()(`${url}/x`, { method: 'POST', body: 'text' });
    expect(response.ok).toBe(false);
    expect(response.status).toBe(404);
    expect(await response.text()).toBe('{"method":"POST","type":null,"body":"text"}');
  });

  it('trusts the given CA over https', async () => {
    const certificate = await createCertificate();
    const url = await serve(echoRequest(200), certificate);
    await expect(nodeHttpFetch()(`${url}/x`)).rejects.toThrow();
    const response = await nodeHttpFetch({ ca: certificate.certPem })(`${url}/x`);
    expect(response.status).toBe(200);
  });

  it('rejects a body cut off before its announced length', async () => {
    const url = await serve((_request, response) => {
      response.writeHead(200, { 'content-length': 100 });
      response.write('only part');
      setImmediate(() => response.destroy());
    });
    await expect(nodeHttpFetch()(`${url}/x`)).rejects.toThrow();
  });

  it('rejects when its signal aborts a request held by the server', async () => {
    let held: http.ServerResponse | undefined;
    const url = await serve((_request, response) => void (held = response));
    const controller = new AbortController();
    const pending = nodeHttpFetch()(`${url}/x`, { signal: controller.signal });
    await expect.poll(() => held).toBeDefined();
    controller.abort();
    await expect(pending).rejects.toThrow(/abort/i);
  });
});
