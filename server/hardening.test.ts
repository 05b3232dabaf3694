/**
 * Hostile input against the TCP port, as a stranger would send it (issue 11): request targets
 * that used to crash the process, stalled connections at every stage, and proof that the
 * deadlines leave healthy long-polls and WebSockets alone; and a crash of the WebRTC native library
 * (in its own process) ending only the WebRTC sessions. Real sockets, real TLS, real wrtc.
 */
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { HttpTransportServer } from '../transports/http-transport-server.ts';
import { bystanderWorks } from '../test-support/bystander.ts';
import { waitFor } from '../test-support/servers.ts';
import type { Delivery } from '../transports/client.ts';
import { createClient } from '../transports/node-client.ts';
import { webrtc as webrtcConnector } from '../transports/node-webrtc.ts';
import type { CloseInfo } from '../transports/transport.ts';
import { wrtcProcesses } from '../transports/webrtc/wrtc-remote.ts';
import { DualHttpServer } from './http-server.ts';
import { startServer, type SwitchyardServer } from './index.ts';

/** Opens a raw connection, plain or TLS (trusting anything: the test checks the server, not the certificate). */
function rawConnect(port: number, secure: boolean): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = secure ? tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => resolve(socket)) : net.connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Sends `request` on a fresh connection and returns everything the server wrote until it closed or answered. */
async function rawRequest(port: number, secure: boolean, request: string): Promise<string> {
  const socket = await rawConnect(port, secure);
  return new Promise((resolve) => {
    let reply = '';
    socket.on('data', (data) => {
      reply += data.toString('latin1');
      if (reply.includes('\r\n\r\n')) socket.destroy();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(reply));
    socket.write(request);
  });
}

describe('one request cannot take the server down', () => {
  let server: SwitchyardServer;
  beforeAll(async () => {
    server = await startServer({ port: 0, certificate: 'ephemeral', transports: ['websocket', 'long-polling', 'polling'] });
  });
  afterAll(() => server.close());

  it.each([false, true])('request targets that break `new URL` get an HTTP answer (TLS: %s), and the server keeps serving', async (secure) => {
    for (const target of ['//', '//:0', 'http://[', '/lp//', '/poll/http://[']) {
      const reply = await rawRequest(server.port, secure, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      expect(reply, target).toMatch(/^HTTP\/1\.1 (400|404) /);
      const upgrade = await rawRequest(server.port, secure, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
      expect(upgrade, `upgrade ${target}`).toMatch(/^HTTP\/1\.1 (400|404) /);
    }
    await bystanderWorks(server.urls.http);
  }, 60_000);
});

describe('a handler that throws answers that request only', () => {
  it('500 for a request, a closed socket for an upgrade; the next request is served', async () => {
    let calls = 0;
    const throwing: HttpTransportServer = {
      name: 'long-polling',
      path: '/boom',
      connectionCount: 0,
      onConnection: () => undefined,
      close: async () => undefined,
      handleRequest: (request) => {
        if (request.url !== '/boom') return false;
        calls++;
        throw new Error('handler bug');
      },
      handleUpgrade: (request) => {
        if (request.url !== '/boom') return false;
        calls++;
        throw new Error('upgrade bug');
      },
    };
    const dual = new DualHttpServer({ host: '127.0.0.1', port: 0, transports: [throwing], fallback: (_q, s) => void s.writeHead(204).end() });
    const port = await dual.listen();
    try {
      expect(await rawRequest(port, false, 'GET /boom HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')).toMatch(/^HTTP\/1\.1 500 /);
      expect(await rawRequest(port, false, 'GET /boom HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')).toBe('');
      expect(calls).toBe(2);
      expect(await rawRequest(port, false, 'GET /other HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')).toMatch(/^HTTP\/1\.1 204 /);
    } finally {
      await dual.close();
    }
  });
});

describe('deadlines on the TCP port', () => {
  const timeouts = { firstByteTimeoutMs: 300, tlsHandshakeTimeoutMs: 300, headersTimeoutMs: 300, requestTimeoutMs: 300, idleTimeoutMs: 300 };
  /** Long enough past every deadline that a connection they wrongly applied to would be gone. */
  const holdMs = 2_000;
  let server: SwitchyardServer;
  beforeAll(async () => {
    server = await startServer({
      port: 0,
      
      certificate: 'ephemeral',
      transports: ['websocket', 'long-polling', 'polling'],
      timeouts,
      longPolling: { holdMs },
      // No heartbeats during the test: an open WebSocket stays silent past every TCP deadline.
      router: { heartbeatMs: 60_000 },
    });
  });
  afterAll(() => server.close());

  /** Resolves with how long the server took to close `socket` (and what it wrote before). */
  function closedAfter(socket: net.Socket): Promise<{ ms: number; reply: string }> {
    const started = Date.now();
    let reply = '';
    socket.on('data', (data) => (reply += data.toString('latin1')));
    socket.on('error', () => undefined);
    return new Promise((resolve) => socket.on('close', () => resolve({ ms: Date.now() - started, reply })));
  }

  it('closes a silent connection after firstByteTimeoutMs', async () => {
    const { ms } = await closedAfter(await rawConnect(server.port, false));
    expect(ms).toBeGreaterThanOrEqual(timeouts.firstByteTimeoutMs - 50);
  });

  it('closes a connection stuck in its TLS handshake after tlsHandshakeTimeoutMs', async () => {
    const socket = await rawConnect(server.port, false);
    const closed = closedAfter(socket);
    // The first bytes of a TLS record header (handshake, TLS 1.0), then nothing.
    socket.write(Buffer.from([0x16, 0x03, 0x01]));
    expect((await closed).ms).toBeGreaterThanOrEqual(timeouts.tlsHandshakeTimeoutMs - 50);
  });

  it.each([false, true])('answers a partial header block with 408 and closes it after headersTimeoutMs (TLS: %s)', async (secure) => {
    const socket = await rawConnect(server.port, secure);
    const closed = closedAfter(socket);
    socket.write('GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const { ms, reply } = await closed;
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
    expect(ms).toBeGreaterThanOrEqual(timeouts.headersTimeoutMs - 50);
  });

  it('closes an idle keep-alive connection after idleTimeoutMs', async () => {
    const socket = await rawConnect(server.port, false);
    const closed = closedAfter(socket);
    socket.write('GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const { ms, reply } = await closed;
    expect(reply).toMatch(/^HTTP\/1\.1 200 /);
    expect(ms).toBeGreaterThanOrEqual(timeouts.idleTimeoutMs);
  });

  it('leaves a held long-poll alone for its whole hold time, and an open WebSocket that stays silent', async () => {
    const agent = new http.Agent({ keepAlive: true });
    const opened = await fetch(`${server.urls.http}/lp/open`, { method: 'POST' });
    const { sid } = (await opened.json()) as { sid: string };
    const socket = new WebSocket(`${server.urls.http.replace('http', 'ws')}/ws`);
    const wsClosed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    const started = Date.now();
    const held = await new Promise<{ status: number; ms: number }>((resolve, reject) => {
      http.get(`${server.urls.http}/lp/${sid}?ack=0`, { agent }, (response) => {
        response.resume();
        response.on('end', () => resolve({ status: response.statusCode!, ms: Date.now() - started }));
      }).on('error', reject);
    });
    agent.destroy();
    expect(held.status).toBe(200);
    expect(held.ms).toBeGreaterThanOrEqual(holdMs - 50);
    // The WebSocket was silent for the whole hold: still open, and it still talks.
    const frames: unknown[] = [];
    socket.on('message', (data) => frames.push(JSON.parse(data.toString())));
    socket.send(JSON.stringify({ v: 1, t: 'hello' }));
    await waitFor(() => frames.length > 0, 5_000, 'welcome');
    expect(frames[0]).toMatchObject({ t: 'welcome' });
    socket.close(1000);
    expect(await wsClosed).toBe(1000);
  });

  it('closes hundreds of stalled connections (partial HTTP, silent, partial TLS) within the deadlines while a client keeps working', async () => {
    // STALLED_CONNECTIONS=2500 measures the case by hand (raise `ulimit -n` first).
    const count = Number(process.env.STALLED_CONNECTIONS ?? 300);
    const started = Date.now();
    const sockets = await Promise.all(Array.from({ length: count }, () => rawConnect(server.port, false)));
    const connectedMs = Date.now() - started;
    const closes = sockets.map((socket, i) => {
      const closed = closedAfter(socket);
      if (i % 3 === 0) socket.write('GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
      else if (i % 3 === 1) socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02]));
      return closed;
    });
    await bystanderWorks(server.urls.http);
    await Promise.all(closes);
    const allClosedMs = Date.now() - started;
    // The longest chain is first byte → TLS handshake: both deadlines plus Node's check interval and load.
    console.log(`${count} stalled connections: connected in ${connectedMs} ms, all closed by the server ${allClosedMs} ms after the first connect`);
    expect(allClosedMs).toBeLessThan(connectedMs + timeouts.firstByteTimeoutMs + timeouts.tlsHandshakeTimeoutMs + timeouts.headersTimeoutMs + 5_000);
    await bystanderWorks(server.urls.http);
  }, 60_000);
});

describe('a crash in the WebRTC native library', () => {
  it('ends only the WebRTC sessions (1006); other clients keep working, and the next WebRTC client connects', async () => {
    const server = await startServer({ port: 0, certificate: 'none' });
    try {
      const first = createClient({ url: server.urls.http, transports: 'webrtc', connectors: { webrtc: webrtcConnector } });
      await first.connect();
      const serverCloses: CloseInfo[] = [];
      server.on('connection-closed', (_client, info) => serverCloses.push(info));
      const before = { ...wrtcProcesses };
      // What wrtc's close race does to the process that holds the peer connections (wrtc-remote.ts).
      process.kill(before.pid!, 'SIGSEGV');
      await waitFor(() => serverCloses.length === 1, 5_000, 'the server side of the WebRTC session to end');
      expect(serverCloses[0]).toMatchObject({ code: 1006, wasClean: false });
      expect(wrtcProcesses).toMatchObject({ lost: before.lost + 1, lastLoss: 'SIGSEGV' });
      await bystanderWorks(server.urls.http);
      first.close();
      const next = createClient({ url: server.urls.http, transports: 'webrtc', connectors: { webrtc: webrtcConnector } });
      const inbox: Delivery[] = [];
      next.on('message', (d) => inbox.push(d));
      await next.connect();
      await next.send(next.id!, 'after the crash', { ack: true });
      await waitFor(() => inbox.length === 1, 5_000, 'an echo over the new WebRTC process');
      expect(wrtcProcesses.started).toBe(before.started + 1);
      next.close();
    } finally {
      await server.close();
    }
  }, 30_000);
});
