import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterEach, describe, expect, it } from 'vitest';
import { launchChromium } from '../../test-support/chromium.ts';
import { waitFor } from '../../test-support/servers.ts';
import type { CloseInfo, Connection, Message } from '../transport.ts';
import { closeReasonForWire, webSocketUrl } from './client.ts';
import { applyMask, frameHeaderSize, Opcode, readFrameHeader, writeFrameHeader, writeServerFrameHeader } from './frame.ts';
import { connectWebSocketNode } from './node.ts';
import { WebSocketTransportServer, type WebSocketServerOptions } from './server.ts';

interface TestServer {
  url: string;
  port: number;
  transport: WebSocketTransportServer;
  /** Server-side connections in arrival order. */
  connections: Connection[];
  close(): Promise<void>;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A real node:http(s) server on 127.0.0.1:0 forwarding upgrades to the transport. With `echo`,
 * every message is echoed, and a text `close:<code>:<reason>` makes the server close instead.
 */
async function startServer(
  options: WebSocketServerOptions & { echo?: boolean; tls?: { cert: string; key: string }; onRequest?: http.RequestListener } = {},
): Promise<TestServer> {
  const transport = new WebSocketTransportServer(options);
  const connections: Connection[] = [];
  transport.onConnection((connection) => {
    connections.push(connection);
    if (options.echo === false) return;
    connection.on('message', (message) => {
      if (typeof message === 'string' && message.startsWith('close:')) {
        const [, code, reason] = message.split(':');
        connection.close(Number(code), reason);
        return;
      }
      connection.send(message);
    });
  });
  const onRequest = options.onRequest ?? ((_request, response) => response.writeHead(404).end());
  const server = options.tls ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, onRequest) : http.createServer(onRequest);
  server.on('upgrade', (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!transport.handleUpgrade(request, socket, head)) socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const result: TestServer = {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    transport,
    connections,
    async close() {
      await transport.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  cleanups.push(() => result.close());
  return result;
}

function connect(url: string, options: Partial<Parameters<typeof connectWebSocketNode>[0]> = {}): Connection {
  const connection = connectWebSocketNode({ url, ...options });
  cleanups.push(async () => {
    connection.close();
    await connection.closed;
  });
  return connection;
}

function nextMessage(connection: Connection): Promise<Message> {
  return new Promise((resolve) => {
    const off = connection.on('message', (message) => {
      off();
      resolve(message);
    });
  });
}

/** A raw TCP client that performs the upgrade by hand; `data` holds what arrived after the 101. */
async function rawUpgrade(port: number, pathname = '/ws'): Promise<{ socket: net.Socket; status: number; data: () => Buffer }> {
  const socket = net.connect(port, '127.0.0.1');
  cleanups.push(() => {
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.write(
    `GET ${pathname} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let received = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
  });
  await waitFor(() => received.includes('\r\n\r\n'), 10_000, 'upgrade response');
  const end = received.indexOf('\r\n\r\n') + 4;
  const status = Number(received.subarray(9, 12).toString());
  return { socket, status, data: () => received.subarray(end) };
}

/** A client frame as RFC 6455 §5.2 lays it out (masked unless told otherwise). */
function frame(opcode: number, payload: Uint8Array, options: { mask?: boolean; fin?: boolean; rsv?: number } = {}): Buffer {
  const mask = options.mask ?? true;
  const length = payload.length;
  const header = [((options.fin ?? true) ? 0x80 : 0) | ((options.rsv ?? 0) << 4) | opcode];
  if (length < 126) header.push((mask ? 0x80 : 0) | length);
  else if (length < 0x10000) header.push((mask ? 0x80 : 0) | 126, length >> 8, length & 0xff);
  else header.push((mask ? 0x80 : 0) | 127, 0, 0, 0, 0, (length >>> 24) & 0xff, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff);
  if (!mask) return Buffer.concat([Buffer.from(header), payload]);
  const key = randomBytes(4);
  const masked = Buffer.from(payload.map((byte, i) => byte ^ key[i % 4]!));
  return Buffer.concat([Buffer.from(header), key, masked]);
}

/** The close frame (code, reason) among unmasked server frames, if it arrived. */
function findCloseFrame(data: Buffer): { code: number; reason: string } | undefined {
  let offset = 0;
  while (offset + 2 <= data.length) {
    const opcode = data[offset]! & 0x0f;
    let length = data[offset + 1]! & 0x7f;
    let start = offset + 2;
    if (length === 126) {
      length = data.readUInt16BE(offset + 2);
      start += 2;
    } else if (length === 127) {
      length = Number(data.readBigUInt64BE(offset + 2));
      start += 8;
    }
    if (start + length > data.length) return undefined;
    if (opcode === 0x8) return { code: data.readUInt16BE(start), reason: data.subarray(start + 2, start + length).toString() };
    offset = start + length;
  }
  return undefined;
}

async function echo(connection: Connection, message: Message): Promise<Message> {
  const reply = nextMessage(connection);
  expect(connection.send(message)).toBe('queued');
  return reply;
}

describe('websocket helpers', () => {
  it('derives the endpoint URL from the server base URL', () => {
    expect(webSocketUrl('http://127.0.0.1:8080')).toBe('ws://127.0.0.1:8080/ws');
    expect(webSocketUrl('https://example.test/app/')).toBe('wss://example.test/app/ws');
    expect(webSocketUrl('ws://h:1', '/other')).toBe('ws://h:1/other');
  });

  it('computes RFC 6455 frame header sizes', () => {
    expect(frameHeaderSize(0, false)).toBe(2);
    expect(frameHeaderSize(125, true)).toBe(6);
    expect(frameHeaderSize(126, false)).toBe(4);
    expect(frameHeaderSize(65_535, true)).toBe(8);
    expect(frameHeaderSize(65_536, false)).toBe(10);
    expect(frameHeaderSize(65_536, true)).toBe(14);
  });

  it('writes unmasked server frame headers byte for byte as RFC 6455 §5.7 shows them', () => {
    const frame = (opcode: number, payload: Uint8Array) => {
      const out = new Uint8Array(frameHeaderSize(payload.length, false) + payload.length);
      out.set(payload, writeServerFrameHeader(out, 0, opcode, payload.length));
      return Buffer.from(out).toString('hex');
    };
    expect(frame(Opcode.text, new TextEncoder().encode('Hello'))).toBe('810548656c6c6f');
    expect(frame(Opcode.binary, new Uint8Array(256)).slice(0, 8)).toBe('827e0100');
    expect(frame(Opcode.binary, new Uint8Array(65_536)).slice(0, 20)).toBe('827f0000000000010000');
    expect(frame(Opcode.binary, new Uint8Array(0))).toBe('8200');
    // At an offset inside a larger buffer, leaving the bytes around it alone.
    const out = new Uint8Array(8).fill(0xee);
    expect(writeServerFrameHeader(out, 3, Opcode.binary, 300)).toBe(7);
    expect(Buffer.from(out).toString('hex')).toBe('eeeeee827e012cee');
  });

  it('reads frame headers back (RFC 6455 §5.7 masked example) and waits for an incomplete one', () => {
    const masked = Uint8Array.from(Buffer.from('818537fa213d7f9f4d5158', 'hex'));
    const read = readFrameHeader(masked, 0)!;
    expect(read.headerLength).toBe(6);
    expect({ ...read.header, maskKey: Buffer.from(read.header.maskKey!).toString('hex') }).toEqual({ fin: true, rsv: 0, opcode: Opcode.text, maskKey: '37fa213d', payloadLength: 5 });
    expect(new TextDecoder().decode(applyMask(masked.slice(6), read.header.maskKey!))).toBe('Hello');
    for (let cut = 0; cut < 6; cut++) expect(readFrameHeader(masked.subarray(0, cut), 0), `${cut} bytes`).toBeNull();
    // Written and read again: 64-bit length, a continuation without FIN, RSV1 set.
    const out = new Uint8Array(frameHeaderSize(70_000, true));
    const header = { fin: false, rsv: 4, opcode: Opcode.continuation, maskKey: Uint8Array.of(1, 2, 3, 4), payloadLength: 70_000 };
    expect(writeFrameHeader(out, 0, header)).toBe(14);
    expect(readFrameHeader(out, 0)).toEqual({ header, headerLength: 14 });
  });

  it('cuts close reasons to 123 UTF-8 bytes at a character boundary', () => {
    expect(closeReasonForWire('short')).toBe('short');
    const cut = closeReasonForWire('é'.repeat(100));
    expect(new TextEncoder().encode(cut).length).toBe(122);
    expect(cut).toBe('é'.repeat(61));
  });
});

describe('websocket transport', () => {
  it('closes a connection that sends a message over maxMessageSize with 1009, and keeps serving others', async () => {
    const server = await startServer({ maxMessageSize: 64 * 1024 });
    const offender = connect(server.url);
    const other = connect(server.url);
    await Promise.all([offender.opened, other.opened]);
    await waitFor(() => server.connections.length === 2, 10_000, 'server connections');
    expect(server.transport.connectionCount).toBe(2);
    offender.send(new Uint8Array(64 * 1024 + 1));
    const info = await offender.closed;
    expect(info.code).toBe(1009);
    expect(info.reason).toBe('message too big: the limit is 65536 bytes');
    expect(info.wasClean).toBe(true);
    const serverInfos = await Promise.race(server.connections.map((c) => c.closed));
    expect(serverInfos.code).toBe(1009);
    expect(await echo(other, 'still here')).toBe('still here');
    expect(await echo(other, new Uint8Array(64 * 1024))).toEqual(new Uint8Array(64 * 1024));
    await waitFor(() => server.transport.connectionCount === 1, 10_000, 'connection count 1');
  });

  it('counts messages, payload bytes and wire bytes', async () => {
    const server = await startServer();
    const client = connect(server.url);
    await client.opened;
    const before = client.stats();
    expect(before).toMatchObject({ messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, wireBytesIn: 0, wireBytesOut: 0, rttMs: null });
    await echo(client, 'héllo'); // 6 bytes
    await echo(client, new Uint8Array(200));
    await echo(client, new Uint8Array(70_000));
    const after = client.stats();
    expect(after).toMatchObject({ messagesIn: 3, messagesOut: 3, bytesIn: 70_206, bytesOut: 70_206 });
    // Client frames carry a 4-byte mask; extended lengths of 2 and 8 bytes.
    expect(after.wireBytesOut).toBe(70_206 + 6 + 8 + 14);
    expect(after.wireBytesIn).toBe(70_206 + 2 + 4 + 10);

    const serverStats = server.connections[0]!.stats();
    expect(serverStats).toMatchObject({ messagesIn: 3, messagesOut: 3, bytesIn: 70_206, bytesOut: 70_206 });
    // The server counts socket bytes: frames plus the upgrade request and response.
    expect(serverStats.wireBytesIn!).toBeGreaterThan(after.wireBytesOut! + 100);
    expect(serverStats.wireBytesOut!).toBeGreaterThan(after.wireBytesIn! + 100);
  });

  it.each([
    ['an unmasked frame', frame(0x1, Buffer.from('hi'), { mask: false })],
    ['a reserved opcode', frame(0x3, Buffer.from('hi'))],
    ['RSV bits without an extension', frame(0x1, Buffer.from('hi'), { rsv: 0b100 })],
    ['a fragmented control frame', frame(0x9, Buffer.from('hi'), { fin: false })],
  ])('closes a peer that sends %s with 1002 and keeps serving others', async (_name, bad) => {
    const server = await startServer();
    const good = connect(server.url);
    await good.opened;
    const raw = await rawUpgrade(server.port);
    expect(raw.status).toBe(101);
    await waitFor(() => server.connections.length === 2, 10_000, 'server connections');
    raw.socket.write(bad);
    await waitFor(() => findCloseFrame(raw.data()) !== undefined, 10_000, 'close frame');
    expect(findCloseFrame(raw.data())).toEqual({ code: 1002, reason: 'protocol error: invalid frame' });
    const info = await server.connections[1]!.closed;
    expect(info.code).toBe(1002);
    expect(await echo(good, 'still fine')).toBe('still fine');
  });

  it('closes a text message with invalid UTF-8 with 1007', async () => {
    const server = await startServer();
    const raw = await rawUpgrade(server.port);
    raw.socket.write(frame(0x1, Uint8Array.of(0xc3, 0x28)));
    await waitFor(() => findCloseFrame(raw.data()) !== undefined, 10_000, 'close frame');
    expect(findCloseFrame(raw.data())?.code).toBe(1007);
  });

  it('survives a peer that disconnects in the middle of a frame', async () => {
    const server = await startServer();
    const raw = await rawUpgrade(server.port);
    await waitFor(() => server.connections.length === 1, 10_000, 'server connection');
    const whole = frame(0x2, new Uint8Array(1000));
    const readBefore = server.connections[0]!.stats().wireBytesIn!;
    raw.socket.write(whole.subarray(0, 300));
    await waitFor(() => server.connections[0]!.stats().wireBytesIn! >= readBefore + 300, 10_000, 'the server to read the partial frame');
    raw.socket.destroy();
    const info = await server.connections[0]!.closed;
    expect(info).toMatchObject({ code: 1006, wasClean: false });
    expect(server.connections[0]!.state).toBe('closed');
    const client = connect(server.url);
    await client.opened;
    expect(await echo(client, 'after')).toBe('after');
  });

  it('answers only its own path', async () => {
    const server = await startServer();
    const other = await rawUpgrade(server.port, '/elsewhere');
    expect(other.status).toBe(404);
    const own = await rawUpgrade(server.port, '/ws?token=1');
    expect(own.status).toBe(101);
    // A broken handshake on our path is answered by ws with 400.
    const socket = net.connect(server.port, '127.0.0.1');
    cleanups.push(() => {
      socket.destroy();
    });
    socket.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n');
    const answer = await new Promise<string>((resolve) => socket.once('data', (chunk: Buffer) => resolve(chunk.toString())));
    expect(answer.startsWith('HTTP/1.1 400')).toBe(true);
    expect(server.transport.connectionCount).toBe(1);
  });

  it('sends messages queued before close() ahead of the close frame', async () => {
    const server = await startServer({ echo: false });
    const client = connect(server.url);
    await client.opened;
    const received: Message[] = [];
    client.on('message', (message) => received.push(message));
    await waitFor(() => server.connections.length === 1, 10_000, 'server connection');
    const serverSide = server.connections[0]!;
    serverSide.send('one');
    serverSide.send('two');
    serverSide.close(4003, 'done');
    expect(await client.closed).toEqual({ code: 4003, reason: 'done', wasClean: true });
    expect(received).toEqual(['one', 'two']);
  });

  it('close() of the server closes every connection with 1001', async () => {
    const server = await startServer();
    const clients = [connect(server.url), connect(server.url)];
    await Promise.all(clients.map((c) => c.opened));
    await server.transport.close();
    for (const client of clients) expect(await client.closed).toEqual({ code: 1001, reason: 'server shutting down', wasClean: true });
    expect(server.transport.connectionCount).toBe(0);
  });

  it('a connect timeout closes with 1006 and a ConnectError reason', async () => {
    const silent = net.createServer(() => undefined);
    const sockets = new Set<net.Socket>();
    silent.on('connection', (socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => silent.close(() => resolve()));
    });
    const client = connect(`http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`, { connectTimeoutMs: 200 });
    await expect(client.opened).rejects.toThrow(/closed before opening: 1006/);
    const info = await client.closed;
    expect(info).toMatchObject({ code: 1006, wasClean: false });
    expect(info.reason).toMatch(/did not open within 200 ms/);
  });

  it('a refused connection closes with 1006', async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const client = connect(`http://127.0.0.1:${port}`);
    const info = await client.closed;
    expect(info).toMatchObject({ code: 1006, wasClean: false });
    expect(info.reason).toMatch(/ECONNREFUSED/);
  });

  it('works over TLS (wss) with a self-signed P-256 certificate', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'switchyard-ws-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const keyFile = path.join(dir, 'key.pem');
    const certFile = path.join(dir, 'cert.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout', keyFile, '-out', certFile,
    ], { stdio: 'ignore' });
    const cert = readFileSync(certFile, 'utf8');
    const server = await startServer({ tls: { cert, key: readFileSync(keyFile, 'utf8') } });
    expect(server.url.startsWith('https://')).toBe(true);

    const trusted = connect(server.url, { ca: cert });
    await trusted.opened;
    expect(await echo(trusted, 'secure')).toBe('secure');
    expect(await echo(trusted, Uint8Array.of(1, 2, 3))).toEqual(Uint8Array.of(1, 2, 3));

    const untrusted = connect(server.url);
    const info = await untrusted.closed;
    expect(info.code).toBe(1006);

    const lax = connect(server.url, { rejectUnauthorized: false });
    await lax.opened;
    expect(await echo(lax, 'lax')).toBe('lax');
  });
});

const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Serves a blank page and the project's TypeScript under /src/, types stripped, as ES modules. */
const serveSources: http.RequestListener = (request, response) => {
  const pathname = (request.url ?? '/').split('?')[0]!;
  if (pathname === '/') {
    response.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>websocket test</title>');
    return;
  }
  const file = path.join(PROJECT_ROOT, pathname.replace(/^\/src\//, ''));
  if (!pathname.startsWith('/src/transports/') || !file.startsWith(path.join(PROJECT_ROOT, 'transports')) || !file.endsWith('.ts')) {
    response.writeHead(404).end();
    return;
  }
  const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
  });
  response.writeHead(200, { 'content-type': 'text/javascript' }).end(outputText);
};

describe('websocket client in Chromium (native WebSocket)', () => {
  it('echoes text and binary, counts wire bytes, and sees close codes both ways', async () => {
    const server = await startServer({ onRequest: serveSources });
    const browser = await launchChromium();
    cleanups.push(() => browser.close());
    const page = await browser.newPage();
    await page.goto(server.url);
    // A string, so the test runner's transform leaves the page's dynamic import alone.
    const result = (await page.evaluate(`(async () => {
      const { connectWebSocket } = await import('/src/transports/websocket/client.ts');
      const next = (c) => new Promise((resolve) => { const off = c.on('message', (m) => { off(); resolve(m); }); });
      const c = connectWebSocket({ url: location.origin });
      await c.opened;
      let reply = next(c); c.send('héllo'); const text = await reply;
      reply = next(c); c.send(new Uint8Array([1, 2, 255])); const binary = await reply;
      // A burst far above the socket threshold: drains by polling bufferedAmount, arrives in order.
      const burst = [];
      const done = new Promise((resolve) => c.on('message', (m) => { burst.push(m); if (burst.length === 200) resolve(); }));
      for (let i = 0; i < 200; i++) { const m = new Uint8Array(64 * 1024); m[0] = i; if (c.send(m) !== 'queued') throw new Error('refused'); }
      await done;
      const stats = c.stats();
      c.close(4001, 'browser leaving');
      const clientClose = await c.closed;
      const d = connectWebSocket({ url: location.origin });
      await d.opened;
      d.send('close:4002:server says bye');
      const serverClose = await d.closed;
      return {
        text, binaryType: Object.prototype.toString.call(binary), binary: [...binary],
        order: burst.every((m, i) => m[0] === i && m.length === 65536),
        stats, clientClose, serverClose,
      };
    })()`)) as {
      text: string;
      binaryType: string;
      binary: number[];
      order: boolean;
      stats: { messagesOut: number; bytesOut: number; wireBytesOut: number; wireBytesIn: number };
      clientClose: CloseInfo;
      serverClose: CloseInfo;
    };
    expect(result.text).toBe('héllo');
    expect(result.binaryType).toBe('[object Uint8Array]');
    expect(result.binary).toEqual([1, 2, 255]);
    expect(result.order).toBe(true);
    const payload = 6 + 3 + 200 * 65_536;
    expect(result.stats).toMatchObject({ messagesOut: 202, bytesOut: payload });
    expect(result.stats.wireBytesOut).toBe(payload + 6 + 6 + 200 * 14);
    expect(result.stats.wireBytesIn).toBe(payload + 2 + 2 + 200 * 10);
    expect(result.clientClose).toEqual({ code: 4001, reason: 'browser leaving', wasClean: true });
    expect(await server.connections[0]!.closed).toEqual({ code: 4001, reason: 'browser leaving', wasClean: true });
    expect(result.serverClose).toEqual({ code: 4002, reason: 'server says bye', wasClean: true });
  });
});
