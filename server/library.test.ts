/**
 * What a library user gets from `startServer` and `attach`, over real sockets: no lab, the Origin
 * and Host policy on every HTTP transport (CORS included) and on WebSocket upgrades, `/info`'s URLs
 * and certificate hash, attaching to a plain `node:http` server that keeps its own routes, and the
 * server-side API (publish/toRoom/sendTo, events, user ids on deliveries, receipt ids).
 */
import http from 'node:http';
import net from 'node:net';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createCertificate } from '../certs/index.ts';
import { createClient, type Delivery } from '../transports/node-client.ts';
import { waitFor } from '../test-support/servers.ts';
import { attach, startServer, type SwitchyardHub, type SwitchyardServer } from './index.ts';
import { decide, hostName, type OriginPolicy } from './origins.ts';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function serve(options: Parameters<typeof startServer>[0] = {}): Promise<SwitchyardServer> {
  const server = await startServer({ port: 0, certificate: 'none', ...options });
  cleanups.push(() => server.close());
  return server;
}

/** A raw request, so Host and Origin are exactly what a hostile page or resolver would send. */
function request(port: number, options: { method?: string; path: string; headers?: Record<string, string>; body?: string }): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path, headers: options.headers, setHost: !options.headers?.host }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Opens a WebSocket with the given Origin; resolves 'open' or the HTTP status it was refused with. */
function upgrade(url: string, origin: string | undefined): Promise<'open' | number> {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, origin === undefined ? {} : { origin });
    socket.on('open', () => {
      socket.close();
      resolve('open');
    });
    socket.on('unexpected-response', (_req, res) => resolve(res.statusCode!));
    socket.on('error', () => undefined);
  });
}

describe('origin policy (pure)', () => {
  const policy = (options: OriginPolicy['options'] = {}, publicHost?: string): OriginPolicy => ({ ownOrigins: () => ['http://127.0.0.1:8080'], publicHost, options });

  it('reads host names from Host headers and authorities', () => {
    expect([hostName('example.com:8080'), hostName('[::1]:8080'), hostName('::1'), hostName('Example.COM')]).toEqual(['example.com', '::1', '::1', 'example.com']);
  });

  it('serves no Origin, the same origin, its own origins and listed ones; refuses the rest', () => {
    expect(decide(undefined, '127.0.0.1:8080', policy())).toEqual({ ok: true, cors: false });
    expect(decide('http://localhost:5173', 'localhost:5173', policy())).toEqual({ ok: true, cors: false });
    expect(decide('http://127.0.0.1:8080', '127.0.0.1:9999', policy())).toEqual({ ok: true, cors: false });
    expect(decide('https://evil.example', '127.0.0.1:8080', policy()).ok).toBe(false);
    expect(decide('null', '127.0.0.1:8080', policy({ allowedOrigins: ['https://app.example'] })).ok).toBe(false);
    expect(decide('https://app.example', '127.0.0.1:8080', policy({ allowedOrigins: ['https://app.example/'] }))).toEqual({ ok: true, cors: true });
    expect(decide('https://any.example', '127.0.0.1:8080', policy({ allowedOrigins: '*' }))).toEqual({ ok: true, cors: true });
  });

  it('refuses foreign host names (DNS rebinding) unless allowed', () => {
    expect(decide(undefined, 'evil.example:8080', policy()).ok).toBe(false);
    expect(decide('http://evil.example:8080', 'evil.example:8080', policy()).ok).toBe(false);
    expect(decide(undefined, 'chat.example.com', policy({}, 'chat.example.com')).ok).toBe(true);
    expect(decide(undefined, 'a.example', policy({ allowedHosts: ['A.example'] })).ok).toBe(true);
    expect(decide(undefined, 'anything.example', policy({ allowedHosts: true })).ok).toBe(true);
    expect(decide(undefined, 'app.localhost:1', policy()).ok).toBe(true);
    expect(decide(undefined, '[::1]:1', policy()).ok).toBe(true);
  });
});

describe('a server made with the library', () => {
  it('has no lab: /lab/* is 404, a cross-site form POST starts nothing, /info carries no router stats', async () => {
    const server = await serve();
    for (const [method, route] of [['GET', '/lab/experiments'], ['POST', '/lab/taps'], ['POST', '/lab/experiments/hol'], ['GET', '/lab/clients/x'], ['GET', '/']]) {
      const response = await request(server.port, { method: method!, path: route!, headers: { 'content-type': 'text/plain' }, body: method === 'POST' ? '{}' : undefined });
      expect([route, response.status]).toEqual([route, 404]);
    }
    const info = JSON.parse((await request(server.port, { path: '/info' })).body) as Record<string, unknown>;
    expect(info.router).toBeUndefined();
    expect(info.transports).toEqual(['websocket', 'long-polling', 'polling', 'webrtc']);
  });

  it('refuses a foreign Host on every route and a foreign Origin on WebSocket, long-polling and /info', async () => {
    const server = await serve();
    expect((await request(server.port, { path: '/info', headers: { host: 'evil.example' } })).status).toBe(403);
    expect((await request(server.port, { method: 'POST', path: '/lp/open', headers: { host: `localhost:${server.port}` } })).status).toBe(200);
    const foreign = await request(server.port, { method: 'POST', path: '/lp/open', headers: { origin: 'https://evil.example' } });
    expect([foreign.status, JSON.parse(foreign.body).error.code, foreign.headers['access-control-allow-origin']]).toEqual([403, 'ERR_ORIGIN', undefined]);
    expect(await upgrade(`ws://127.0.0.1:${server.port}/ws`, 'https://evil.example')).toBe(403);
    expect(await upgrade(`ws://127.0.0.1:${server.port}/ws`, `http://127.0.0.1:${server.port}`)).toBe('open');
    expect(await upgrade(`ws://127.0.0.1:${server.port}/ws`, undefined)).toBe('open');
  });

  it('with allowedOrigins: CORS on the HTTP transports and /info (preflight too), upgrades from that origin', async () => {
    const server = await serve({ allowedOrigins: ['http://localhost:5173'] });
    const origin = 'http://localhost:5173';
    const preflight = await request(server.port, { method: 'OPTIONS', path: '/lp/open', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } });
    expect([preflight.status, preflight.headers['access-control-allow-origin'], preflight.headers['access-control-allow-headers']]).toEqual([204, origin, 'content-type']);
    const opened = await request(server.port, { method: 'POST', path: '/lp/open', headers: { origin } });
    expect([opened.status, opened.headers['access-control-allow-origin']]).toEqual([200, origin]);
    const info = await request(server.port, { path: '/info', headers: { origin } });
    expect([info.status, info.headers['access-control-allow-origin']]).toEqual([200, origin]);
    expect(await upgrade(`ws://127.0.0.1:${server.port}/ws`, origin)).toBe('open');
    expect(await upgrade(`ws://127.0.0.1:${server.port}/ws`, 'http://localhost:5174')).toBe(403);
  });

  it('advertises a public host, never a wildcard address; names the certificate hash only for a ≤ 14-day certificate', async () => {
    const wildcard = await serve({ host: '0.0.0.0', certificate: 'ephemeral', transports: ['websocket'] });
    expect(wildcard.urls.http).toBe(`http://localhost:${wildcard.port}`);
    const asked = JSON.parse((await request(wildcard.port, { path: '/info', headers: { host: `127.0.0.1:${wildcard.port}` } })).body) as { urls: { https: string }; certificateSha256: string };
    expect(asked.urls.https).toBe(`https://127.0.0.1:${wildcard.port}`);
    expect(asked.certificateSha256).toBe(wildcard.certificate!.sha256Hex);

    const named = await serve({ host: '0.0.0.0', publicHost: 'chat.example.com', transports: ['websocket'] });
    expect(named.urls.http).toBe(`http://chat.example.com:${named.port}`);
    const info = JSON.parse((await request(named.port, { path: '/info', headers: { host: `chat.example.com:${named.port}` } })).body) as { urls: { http: string } };
    expect(info.urls.http).toBe(`http://chat.example.com:${named.port}`);

    // A 90-day certificate (as a CA issues): clients must validate it normally, so no hash.
    const short = await createCertificate();
    const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const long = await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: '01', name: 'CN=chat.example.com', notBefore: new Date(), notAfter: new Date(Date.now() + 90 * 86_400_000), keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } });
    const keyPem = x509.PemConverter.encode(await crypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
    const ca = await serve({ certificate: { certPem: long.toString('pem'), keyPem }, transports: ['websocket'] });
    const caInfo = JSON.parse((await request(ca.port, { path: '/info' })).body) as { certificateSha256: string | null; urls: { https: string } };
    expect([caInfo.certificateSha256, caInfo.urls.https]).toEqual([null, `https://127.0.0.1:${ca.port}`]);
    expect(short.notAfter.getTime() - short.notBefore.getTime()).toBeLessThanOrEqual(14 * 86_400_000);
  });
});

describe('attach() to an existing node:http server', () => {
  it("serves the transports and /info beside the app's own routes, and detaches cleanly", async () => {
    const app = http.createServer((_request, response) => response.writeHead(200, { 'content-type': 'text/plain' }).end('my app'));
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => app.close(resolve)));
    const port = (app.address() as net.AddressInfo).port;
    const hub = await attach(app, { transports: ['websocket', 'long-polling'] });
    cleanups.push(() => hub.close());
    expect((await request(port, { path: '/' })).body).toBe('my app');
    expect((await request(port, { path: '/anything/else' })).body).toBe('my app');
    expect(JSON.parse((await request(port, { path: '/info' })).body).transports).toEqual(['websocket', 'long-polling']);
    expect((await request(port, { path: '/lab/experiments' })).body).toBe('my app');
    // The app's own routes are the app's: no Host or Origin check of ours, no CORS headers.
    const own = await request(port, { path: '/', headers: { host: 'evil.example', origin: 'https://evil.example' } });
    expect([own.status, own.body, own.headers['access-control-allow-origin']]).toEqual([200, 'my app', undefined]);
    expect((await request(port, { path: '/info', headers: { host: 'evil.example' } })).status).toBe(403);

    const url = `http://127.0.0.1:${port}`;
    const a = createClient({ url, transports: 'websocket' });
    const b = createClient({ url, transports: 'long-polling' });
    cleanups.push(() => a.close(), () => b.close());
    await Promise.all([a.connect(), b.connect()]);
    const got = new Promise<Delivery>((resolve) => b.on('message', resolve));
    await a.send(b.id!, 'through the attached server', { ack: true });
    expect((await got).data).toBe('through the attached server');
    expect(await upgrade(`ws://127.0.0.1:${port}/ws`, 'https://evil.example')).toBe(403);

    await hub.close();
    expect((await request(port, { path: '/info' })).body).toBe('my app');
  });

  it("guards Switchyard's handlers as startServer does: a throw costs that request (500) or that socket only", async () => {
    const app = http.createServer((_request, response) => response.writeHead(200).end('my app'));
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => app.close(resolve)));
    const port = (app.address() as net.AddressInfo).port;
    const hub = await attach(app, { transports: ['websocket', 'long-polling'] });
    cleanups.push(() => hub.close());
    // A bug in a transport's handlers, on one path only.
    const [websocket, longPolling] = hub.transports;
    const handleUpgrade = websocket!.handleUpgrade!.bind(websocket);
    websocket!.handleUpgrade = (request, socket, head) => {
      if (request.url === '/ws?boom') throw new Error('upgrade bug');
      return handleUpgrade(request, socket, head);
    };
    const handleRequest = longPolling!.handleRequest!.bind(longPolling);
    longPolling!.handleRequest = (request, response) => {
      if (request.url === '/lp/boom') throw new Error('request bug');
      return handleRequest(request, response);
    };
    const raw = (text: string) =>
      new Promise<string>((resolve, reject) => {
        let reply = '';
        const socket = net.connect(port, '127.0.0.1', () => socket.write(text));
        socket.on('data', (data) => (reply += data.toString('latin1')));
        socket.on('error', reject);
        socket.on('close', () => resolve(reply));
      });
    expect(await raw('GET /ws?boom HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')).toBe('');
    expect(await raw('GET /lp/boom HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 500 /);
    // The host server and Switchyard on it keep serving.
    expect((await request(port, { path: '/' })).body).toBe('my app');
    expect(await upgrade(`ws://127.0.0.1:${port}/ws`, undefined)).toBe('open');
  });
});

describe('server-side API', () => {
  it('publishes to topics, rooms and clients; reports connect, join, leave, disconnect; deliveries carry the user id; sends return receipt ids', async () => {
    const server: SwitchyardHub = await serve({ router: { authenticate: ({ token }) => (token ? `user:${token}` : false) } });
    const events: string[] = [];
    const name = new Map<string, string>();
    server.on('connect', (client) => events.push(`connect ${client.userId}`));
    server.on('join', (client, room) => events.push(`join ${name.get(client.id)} ${room}`));
    server.on('leave', (client, room) => events.push(`leave ${name.get(client.id)} ${room}`));
    server.on('subscribe', (client, topic) => events.push(`subscribe ${name.get(client.id)} ${topic}`));
    server.on('disconnect', (client) => events.push(`disconnect ${name.get(client.id)}`));
    const url = (server as SwitchyardServer).urls.http;
    const ann = createClient({ url, transports: 'websocket', token: 'ann' });
    const bo = createClient({ url, transports: 'polling', token: 'bo' });
    cleanups.push(() => ann.close(), () => bo.close());
    await Promise.all([ann.connect(), bo.connect()]);
    name.set(ann.id!, 'ann').set(bo.id!, 'bo');
    const received: Delivery[] = [];
    bo.on('message', (m) => received.push(m));
    await bo.join('lobby');
    await bo.subscribe('prices');

    expect(server.publish('prices', { eur: 1.08 })).toBe(1);
    expect(server.toRoom('lobby', 'hello room')).toBe(1);
    expect(server.sendTo(bo.id!, new Uint8Array([7]))).toBe(1);
    expect(server.sendTo('nobody', 'x')).toBe(0);
    const receipts: [string, string][] = [];
    ann.on('receipt', (id, from) => receipts.push([id, from]));
    const id = await ann.publish('prices', new Uint8Array([1, 2]), { receipt: true, ack: true });
    const textId = await ann.send(bo.id!, { hi: 1 }, { receipt: true });
    expect(await ann.broadcast('no id')).toBeUndefined();
    await waitFor(() => received.length === 6 && receipts.length === 2, 10_000, 'deliveries and receipts');

    expect(received.map((m) => [m.kind, m.from === 'server' ? 'server' : name.get(m.from), m.to, m.user, m.data instanceof Uint8Array ? [...m.data] : m.data])).toEqual([
      ['topic', 'server', 'prices', undefined, { eur: 1.08 }],
      ['room', 'server', 'lobby', undefined, 'hello room'],
      ['send', 'server', undefined, undefined, [7]],
      ['topic', 'ann', 'prices', 'user:ann', [1, 2]],
      ['send', 'ann', undefined, 'user:ann', { hi: 1 }],
      ['broadcast', 'ann', undefined, 'user:ann', 'no id'],
    ]);
    expect([id, textId].every((value) => typeof value === 'string')).toBe(true);
    expect(receipts).toEqual([
      [id, bo.id],
      [textId, bo.id],
    ]);
    expect(received[3]!.id).toBe(id);

    await bo.leave('lobby');
    bo.close();
    await waitFor(() => events.includes('disconnect bo'), 5_000, 'disconnect event');
    expect(events.filter((e) => !e.startsWith('connect')).join(', ')).toBe('join bo lobby, subscribe bo prices, leave bo lobby, disconnect bo');
    expect(events.filter((e) => e.startsWith('connect')).sort()).toEqual(['connect user:ann', 'connect user:bo']);
  });
});
