/**
 * The lab API: the WebSocket frame codec against RFC 6455 §5.7's literal frames (plus close,
 * 16/64-bit lengths, splits), HTTP message framing, and the real wire tap in front of a real server:
 * a `ws` client's upgrade and frames both ways, fragmentation, the tap's ping answered by a pong,
 * a long-polling capture, server-side client stats and WebTransport CONNECT records.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { encodeEnvelope } from '../../transports/codec/envelope.ts';
import { createClient } from '../../transports/node-webtransport.ts';
import { waitFor } from '../../test-support/servers.ts';
import { decodeWebSocketFrames, encodeWebSocketFrame, fragmentFrame, previewPayload, readHttpMessage, type TapRecord } from './lab-api.ts';
import { startServer, type SwitchyardServer } from '../../server/index.ts';
import { labPlugin } from './plugin.ts';

const hex = (text: string) => Uint8Array.from(text.split(/\s+/).filter(Boolean), (b) => Number.parseInt(b, 16));
const utf8 = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

describe('WebSocket frame codec', () => {
  it('decodes RFC 6455 §5.7 examples: text, masked text, fragments, ping, masked pong', () => {
    const bytes = hex(`
      81 05 48 65 6c 6c 6f
      81 85 37 fa 21 3d 7f 9f 4d 51 58
      01 03 48 65 6c
      80 02 6c 6f
      89 05 48 65 6c 6c 6f
      8a 85 37 fa 21 3d 7f 9f 4d 51 58`);
    const { frames, consumed } = decodeWebSocketFrames(bytes);
    expect(consumed).toBe(bytes.length);
    expect(frames.map((f) => [f.opcode, f.fin, f.masked, f.headerLength, utf8(f.payload)])).toEqual([
      [0x1, true, false, 2, 'Hello'],
      [0x1, true, true, 6, 'Hello'],
      [0x1, false, false, 2, 'Hel'],
      [0x0, true, false, 2, 'lo'],
      [0x9, true, false, 2, 'Hello'],
      [0xa, true, true, 6, 'Hello'],
    ]);
  });

  it('decodes close with code and reason, 16-bit and 64-bit lengths, binary', () => {
    const close = decodeWebSocketFrames(hex('88 06 03 e8 62 79 65 21')).frames[0]!;
    expect(close.opcode).toBe(0x8);
    expect(previewPayload(close.opcode, close.payload, false)).toBe('1000 bye!');
    const medium = decodeWebSocketFrames(Uint8Array.of(...hex('82 7e 01 00'), ...new Uint8Array(256).fill(7))).frames[0]!;
    expect([medium.opcode, medium.headerLength, medium.payload.length, medium.payload[255]]).toEqual([0x2, 4, 256, 7]);
    const large = decodeWebSocketFrames(Uint8Array.of(...hex('82 7f 00 00 00 00 00 01 00 00'), ...new Uint8Array(65_536))).frames[0]!;
    expect([large.headerLength, large.payload.length]).toEqual([10, 65_536]);
    expect(previewPayload(0x2, hex('b1 02 00 ff'), false)).toBe('b1 02 00 ff');
  });

  it('keeps a frame split across reads until it is whole, byte by byte', () => {
    const bytes = hex('81 85 37 fa 21 3d 7f 9f 4d 51 58 89 00');
    let pending = new Uint8Array(0);
    const seen: number[] = [];
    for (const byte of bytes) {
      pending = Uint8Array.of(...pending, byte);
      const { frames, consumed } = decodeWebSocketFrames(pending);
      seen.push(...frames.map((f) => f.opcode));
      pending = pending.slice(consumed);
    }
    expect(seen).toEqual([0x1, 0x9]);
    expect(pending.length).toBe(0);
  });

  it('encodes what it decodes (masked and not), and fragments a data frame into continuations', () => {
    expect(encodeWebSocketFrame({ fin: true, opcode: 0x1, payload: new TextEncoder().encode('Hello'), maskKey: hex('37 fa 21 3d') })).toEqual(hex('81 85 37 fa 21 3d 7f 9f 4d 51 58'));
    expect(encodeWebSocketFrame({ fin: false, opcode: 0x1, payload: new TextEncoder().encode('Hel') })).toEqual(hex('01 03 48 65 6c'));
    const whole = decodeWebSocketFrames(encodeWebSocketFrame({ fin: true, opcode: 0x2, payload: new Uint8Array(70_000).fill(1) })).frames[0]!;
    expect(whole.headerLength).toBe(10);
    const parts = fragmentFrame(whole, 30_000);
    expect(parts.map((p) => [p.opcode, p.fin, p.payload.length])).toEqual([
      [0x2, false, 30_000],
      [0x0, false, 30_000],
      [0x0, true, 10_000],
    ]);
    const ping = decodeWebSocketFrames(hex('89 00')).frames[0]!;
    expect(fragmentFrame(ping, 1)).toEqual([ping]);
  });
});

describe('HTTP message framing', () => {
  it('reads heads, Content-Length and chunked bodies, and waits for the rest', () => {
    const request = new TextEncoder().encode('POST /lp/open HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}GET');
    expect(readHttpMessage(request)).toMatchObject({ startLine: 'POST /lp/open HTTP/1.1', bodyLength: 2, length: request.length - 3 });
    const chunked = new TextEncoder().encode('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
    expect(readHttpMessage(chunked)).toMatchObject({ startLine: 'HTTP/1.1 200 OK', length: chunked.length, bodyLength: 13 });
    expect(readHttpMessage(chunked.subarray(0, chunked.length - 2))).toBeNull();
    expect(readHttpMessage(new TextEncoder().encode('GET / HTTP/1.1\r\nHost: x\r\n'))).toBeNull();
  });
});

describe('lab API on a real server', () => {
  let server: SwitchyardServer;
  const api = async <T>(path: string, init?: RequestInit) => (await (await fetch(`${server.urls.http}${path}`, init)).json()) as T;
  const post = (body: unknown) => ({ method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

  beforeAll(async () => {
    server = await startServer({ port: 0, certificate: 'ephemeral', plugins: [labPlugin({ staticDir: null })] });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('answers only its own pages: a foreign Origin gets 403 and a non-JSON body 415, even where the server allows every origin', async () => {
    const open = await startServer({ port: 0, certificate: 'none', allowedOrigins: '*', plugins: [labPlugin({ staticDir: null })] });
    try {
      const call = (path: string, headers: Record<string, string>) =>
        new Promise<[number, string]>((resolve, reject) => {
          const request = http.request(`${open.urls.http}${path}`, { method: 'POST', headers }, (response) => {
            let body = '';
            response.on('data', (chunk: Buffer) => (body += chunk.toString()));
            response.on('end', () => resolve([response.statusCode!, (JSON.parse(body) as { error?: { code: string } }).error?.code ?? 'ok']));
          });
          request.on('error', reject);
          request.end('{}');
        });
      const host = new URL(open.urls.http).host;
      for (const path of ['/lab/experiments/hol', '/lab/taps', '/lab/http-capture']) {
        // A form on another site (what issue 11 reproduced: 202 and 201 before).
        expect(await call(path, { origin: 'https://evil.example', 'content-type': 'application/x-www-form-urlencoded' })).toEqual([403, 'ERR_CROSS_ORIGIN']);
        expect(await call(path, { origin: `http://${host}`, 'content-type': 'text/plain' })).toEqual([415, 'ERR_CONTENT_TYPE']);
      }
      // The lab's own page, as JSON: served.
      expect(await call('/lab/taps', { origin: `http://${host}`, 'content-type': 'application/json' })).toEqual([201, 'ok']);
    } finally {
      await open.close();
    }
  });

  it('records a WebSocket upgrade and frames both ways through the tap, fragments, pings', async () => {
    const { id, port } = await api<{ id: string; port: number }>('/lab/taps', post({ fragmentAbove: 1000 }));
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    const received: (Buffer | string)[] = [];
    ws.on('message', (data: Buffer, binary: boolean) => received.push(binary ? data : data.toString()));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    ws.send(encodeEnvelope({ t: 'hello' }));
    await waitFor(() => received.length === 1, 5_000, 'welcome');
    const clientId = (JSON.parse(received[0] as string) as { clientId: string }).clientId;
    ws.send(encodeEnvelope({ t: 'send', to: clientId, data: new Uint8Array(2_500).fill(9) }));
    await waitFor(() => received.length === 2, 5_000, 'the fragmented message');
    expect((received[1] as Buffer).length).toBeGreaterThan(2_500); // reassembled by ws, envelope included
    expect((await api<{ pings: number }>(`/lab/taps/${id}/ping`, { method: 'POST' })).pings).toBe(1);
    const stats = await api<{ transport: string; stats: { wireBytesIn: number; messagesIn: number } }>(`/lab/clients/${clientId}`);
    expect(stats.transport).toBe('websocket');
    expect(stats.stats.wireBytesIn).toBeGreaterThan(2_500);
    ws.close(1000, 'done');
    await new Promise((resolve) => ws.once('close', resolve));

    // The server's close frame may still be on its way through the tap.
    let records: TapRecord[] = [];
    for (let i = 0; i < 50 && records.filter((r) => r.kind === 'frame' && r.opcode === 0x8).length < 2; i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, 20));
      records = (await api<{ records: TapRecord[] }>(`/lab/taps/${id}`)).records;
    }
    const http = records.filter((r) => r.kind === 'http');
    expect(http.map((r) => [r.direction, r.startLine])).toEqual([
      ['client→server', 'GET /ws HTTP/1.1'],
      ['server→client', 'HTTP/1.1 101 Switching Protocols'],
    ]);
    expect(http[0]!.headers.some(([name]) => name.toLowerCase() === 'sec-websocket-key')).toBe(true);
    const frames = records.flatMap((r) => (r.kind === 'frame' ? [[r.direction, r.opcode, r.fin, r.masked, r.origin] as const] : []));
    expect(frames).toEqual([
      ['client→server', 0x1, true, true, 'peer'], // hello
      ['server→client', 0x1, true, false, 'peer'], // welcome
      ['client→server', 0x2, true, true, 'peer'], // binary send
      ['server→client', 0x2, false, false, 'tap'], // the delivery, split by the tap
      ['server→client', 0x0, false, false, 'tap'],
      ['server→client', 0x0, true, false, 'tap'],
      ['server→client', 0x9, true, false, 'tap'], // the tap's ping
      ['client→server', 0xa, true, true, 'peer'], // ws answers with a pong
      ['client→server', 0x8, true, true, 'peer'],
      ['server→client', 0x8, true, false, 'peer'],
    ]);
    expect(records.find((r) => r.kind === 'frame' && r.opcode === 0x8 && r.direction === 'client→server')).toMatchObject({ preview: '1000 done' });
    await api(`/lab/taps/${id}`, { method: 'DELETE' });
    expect((await fetch(`${server.urls.http}/lab/taps/${id}`)).status).toBe(404);
  });

  it('captures a real long-polling exchange from a Node client through a tap', async () => {
    const { records, roundTripMs } = await api<{ records: TapRecord[]; roundTripMs: number }>('/lab/http-capture', post({ transport: 'long-polling', size: 100 }));
    const lines = records.flatMap((r) => (r.kind === 'http' ? [`${r.direction} ${r.startLine}`] : []));
    expect(lines[0]).toBe('client→server POST /lp/open HTTP/1.1');
    expect(lines[1]).toMatch(/^server→client HTTP\/1\.1 200/);
    expect(lines.some((line) => /^client→server GET \/lp\/\S+\?ack=\d+ HTTP\/1\.1$/.test(line))).toBe(true);
    expect(lines.some((line) => /^client→server POST \/lp\/[^/\s]+ HTTP\/1\.1$/.test(line))).toBe(true);
    expect(roundTripMs).toBeGreaterThan(0);
    expect((await fetch(`${server.urls.http}/lab/http-capture`, post({ transport: 'carrier-pigeon' }))).status).toBe(400);
  });

  it('records WebTransport CONNECTs with their headers and still routes them', async () => {
    const client = createClient({ url: server.urls.http, transports: 'webtransport', transportOptions: { webTransportUrl: `${server.urls.webtransport}?lab=t1` } });
    await client.connect();
    const { connects } = await api<{ connects: { path: string; status: number; headers: [string, string][] }[] }>('/lab/webtransport/connects?tag=t1');
    expect(connects).toHaveLength(1);
    expect(connects[0]!.status).toBe(200);
    expect(connects[0]!.headers).toEqual(expect.arrayContaining([[':method', 'CONNECT'], [':protocol', 'webtransport'], [':path', '/wt?lab=t1']]));
    const stats = await api<{ transport: string; stats: { wireBytesOut: number } }>(`/lab/clients/${client.id}`);
    expect(stats.transport).toBe('webtransport');
    expect(stats.stats.wireBytesOut).toBeGreaterThan(0);
    client.close();
    expect((await fetch(`${server.urls.http}/lab/clients/nobody`)).status).toBe(404);
  });
});
