/**
 * The assembled server: HTTPS/WSS on the shared port with the generated certificate, the info
 * endpoint, heartbeats and liveness, recipient receipts, auth hooks. Real sockets, real TLS.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { loadOrCreateCertificate } from '../certs/index.ts';
import packageJson from '../package.json' with { type: 'json' };
import type { Delivery } from '../transports/client.ts';
import { createClient } from '../transports/node-webtransport.ts';
import { waitFor } from '../test-support/servers.ts';
import { startServer, type SwitchyardServer } from './index.ts';

describe('server over TLS', () => {
  let server: SwitchyardServer;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'switchyard-server-'));
    const generated = await loadOrCreateCertificate({ dir });
    server = await startServer({
      port: 0,
      certificate: { certFile: path.join(dir, 'cert.pem'), keyFile: path.join(dir, 'key.pem') },
    });
    expect(server.certificate?.sha256Hex).toBe(generated.sha256Hex);
  });
  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('publishes its version, URLs and certificate hash at /info, on http and https alike', async () => {
    const info = (await (await fetch(`${server.urls.http}/info`)).json()) as { version: string; certificateSha256: string; transports: string[] };
    expect(info.version).toBe(packageJson.version);
    expect(info.certificateSha256).toBe(server.certificate!.sha256Hex);
    expect(info.transports).toEqual(['websocket', 'long-polling', 'polling', 'webrtc', 'webtransport']);
    expect(server.urls.webtransport).toBe(`${server.urls.https}/wt`);
    expect(server.urls.https).toBe(server.urls.http.replace('http:', 'https:'));
  });

  it.each(['websocket', 'long-polling', 'polling'] as const)('%s works over TLS with the generated certificate', async (transport) => {
    const options = { url: server.urls.https!, transports: transport, transportOptions: { ca: server.certificate!.certPem } };
    const a = createClient(options);
    const b = createClient({ ...options, transports: 'websocket' as const });
    const inbox: Delivery[] = [];
    b.on('message', (d) => inbox.push(d));
    await Promise.all([a.connect(), b.connect()]);
    await a.send(b.id!, new Uint8Array([42]), { ack: true });
    await waitFor(() => inbox.length === 1);
    expect([...(inbox[0]!.data as Uint8Array)]).toEqual([42]);
    a.close();
    b.close();
  });

  it('refuses a TLS client that does not trust the certificate, and keeps serving', async () => {
    const untrusting = createClient({ url: server.urls.https!, transports: 'websocket', connectTimeoutMs: 2_000, reconnect: false });
    await expect(untrusting.connect()).rejects.toThrow(/websocket/);
    const trusting = createClient({ url: server.urls.https!, transports: 'long-polling', transportOptions: { ca: server.certificate!.certPem } });
    await trusting.connect();
    trusting.close();
  });
});

describe('ports', () => {
  it('refuses to start when the chosen UDP port for WebTransport is taken, naming it', async () => {
    const { createSocket } = await import('node:dgram');
    const squatter = createSocket('udp4');
    await new Promise<void>((resolve) => squatter.bind(0, '127.0.0.1', resolve));
    const { port } = squatter.address();
    try {
      await expect(startServer({ port, certificate: 'ephemeral' })).rejects.toThrow(`WebTransport could not bind UDP 127.0.0.1:${port}`);
    } finally {
      squatter.close();
    }
  });
});

describe('router behaviour', () => {
  let server: SwitchyardServer;
  beforeAll(async () => {
    server = await startServer({
      port: 0,
      certificate: 'none',
      router: {
        heartbeatMs: 100,
        livenessTimeoutMs: 300,
        authenticate: ({ token }) => (token === 'bad' ? false : (token ?? true)),
        authorize: (client, action) => !(action.kind === 'join' && action.room === 'vip' && client.userId !== 'admin'),
      },
    });
  });
  afterAll(() => server.close());

  it('closes a client that stops answering with 4009, and measures RTT from heartbeats', async () => {
    const client = createClient({ url: server.urls.http, transports: 'websocket' });
    await client.connect();
    const before = Date.now();
    const rtt = await client.ping();
    // Whole milliseconds, never longer than the call took (0 is a real loopback value).
    expect(Number.isInteger(rtt)).toBe(true);
    expect(rtt).toBeGreaterThanOrEqual(0);
    expect(rtt).toBeLessThanOrEqual(Date.now() - before);
    await waitFor(() => server.router.clients.get(client.id!)?.rttMs !== null, 2_000, 'an RTT sample from a pong');
    client.close();

    const silent = new WebSocket(`${server.urls.http.replace('http', 'ws')}/ws`);
    const closed = new Promise<number>((resolve) => silent.on('close', (code) => resolve(code)));
    await new Promise((resolve) => silent.once('open', resolve));
    silent.send(JSON.stringify({ v: 1, t: 'hello' }));
    // ws answers pings automatically only at the WebSocket level; the envelope pings go unanswered.
    expect(await closed).toBe(4009);
  });

  it('forwards recipient receipts to the sender', async () => {
    const a = createClient({ url: server.urls.http, transports: 'long-polling' });
    const b = createClient({ url: server.urls.http, transports: 'websocket' });
    await Promise.all([a.connect(), b.connect()]);
    const receipts: [string, string][] = [];
    a.on('receipt', (id, from) => receipts.push([id, from]));
    await a.send(b.id!, 'confirm me', { ack: true, receipt: true });
    await waitFor(() => receipts.length === 1);
    expect(receipts[0]![1]).toBe(b.id);
    a.close();
    b.close();
  });

  it('rejects a bad token at hello with 1008, and enforces room permissions', async () => {
    const denied = createClient({ url: server.urls.http, transports: 'websocket', token: 'bad', reconnect: false });
    await expect(denied.connect()).rejects.toThrow(/authentication failed|welcome/);
    const guest = createClient({ url: server.urls.http, transports: 'websocket', token: 'guest' });
    const admin = createClient({ url: server.urls.http, transports: 'websocket', token: 'admin' });
    await Promise.all([guest.connect(), admin.connect()]);
    await expect(guest.join('vip')).rejects.toMatchObject({ code: 'ERR_FORBIDDEN' });
    await admin.join('vip');
    guest.close();
    admin.close();
  });
});
