/**
 * Bad input against the full server: each case gets a typed error or a clean close with a reason,
 * other clients keep working, and the process stays up. Real sockets only.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { bystanderWorks } from '../test-support/bystander.ts';
import { waitFor } from '../test-support/servers.ts';
import { startServer, type SwitchyardServer } from './index.ts';

let server: SwitchyardServer;
let wsUrl: string;

beforeAll(async () => {
  server = await startServer({ port: 0, certificate: 'none', maxMessageSize: 64 * 1024, router: { helloTimeoutMs: 1_000 } });
  wsUrl = `${server.urls.http.replace('http', 'ws')}/ws`;
});
afterAll(() => server.close());

/** A raw WebSocket that has said hello; collects parsed server frames. */
async function rawClient(): Promise<{ socket: WebSocket; frames: unknown[]; closed: Promise<{ code: number; reason: string }> }> {
  const socket = new WebSocket(wsUrl);
  const frames: unknown[] = [];
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  socket.on('message', (data, isBinary) => frames.push(isBinary ? data : JSON.parse(data.toString())));
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  socket.send(JSON.stringify({ v: 1, t: 'hello' }));
  await waitFor(() => frames.length > 0, 5_000, 'welcome');
  expect(frames[0]).toMatchObject({ t: 'welcome' });
  return { socket, frames, closed };
}

describe('bad input gets a typed error, and everyone else keeps working', () => {
  it.each([
    ['invalid JSON', '{"v":1,"t":', 'ERR_ENVELOPE_INVALID_JSON'],
    ['an unknown command', JSON.stringify({ v: 1, t: 'teleport' }), 'ERR_ENVELOPE_UNKNOWN_TYPE'],
    ['wrong field types', JSON.stringify({ v: 1, t: 'join', room: 42 }), 'ERR_ENVELOPE_BAD_FIELD'],
    ['a wrong version', JSON.stringify({ v: 9, t: 'join', room: 'x' }), 'ERR_ENVELOPE_VERSION'],
    ['a truncated binary envelope', Buffer.from([0xb1, 0x02, 0x01, 0x05, 0x61]), 'ERR_ENVELOPE_TRUNCATED'],
    ['a unicast to nobody', JSON.stringify({ v: 1, t: 'send', to: 'nobody', data: 1, id: 'u1' }), 'ERR_UNKNOWN_CLIENT'],
  ])('%s → %s', async (_what, frame, code) => {
    const { socket, frames } = await rawClient();
    socket.send(frame);
    await waitFor(() => frames.length > 1, 5_000, 'error frame');
    expect(frames[1]).toMatchObject({ t: 'error', code });
    // The connection survives a bad frame: a ping still gets its pong.
    socket.send(JSON.stringify({ v: 1, t: 'ping', ts: 1 }));
    await waitFor(() => frames.length > 2);
    expect(frames[2]).toEqual({ v: 1, t: 'pong', ts: 1 });
    socket.close();
    await bystanderWorks(server.urls.http);
  });

  it('a command before hello is refused with ERR_NO_HELLO, and silence closes with a reason', async () => {
    const socket = new WebSocket(wsUrl);
    const frames: unknown[] = [];
    socket.on('message', (data) => frames.push(JSON.parse(data.toString())));
    const closed = new Promise<[number, string]>((resolve) => socket.on('close', (code, reason) => resolve([code, reason.toString()])));
    await new Promise((resolve) => socket.once('open', resolve));
    socket.send(JSON.stringify({ v: 1, t: 'join', room: 'r', id: 'j' }));
    await waitFor(() => frames.length === 1);
    expect(frames[0]).toMatchObject({ t: 'error', code: 'ERR_NO_HELLO', ref: 'j' });
    expect(await closed).toEqual([1008, 'no hello in time']);
  });

  it('a message over the size limit closes that connection with 1009', async () => {
    const { socket, closed } = await rawClient();
    socket.send(JSON.stringify({ v: 1, t: 'broadcast', data: 'x'.repeat(70 * 1024) }));
    expect((await closed).code).toBe(1009);
    await bystanderWorks(server.urls.http);
  });

  it('malformed HTTP gets a 400 on that socket only', async () => {
    const socket = net.connect(server.port, '127.0.0.1');
    const reply = await new Promise<string>((resolve) => {
      socket.on('connect', () => socket.write('NONSENSE / HTTP/9.9\r\n\u0000\r\n\r\n'));
      socket.on('data', (data) => resolve(data.toString()));
    });
    expect(reply.startsWith('HTTP/1.1 400')).toBe(true);
    socket.destroy();
    await bystanderWorks(server.urls.http);
  });

  it('a client that vanishes mid-frame does not disturb the server', async () => {
    const { socket } = await rawClient();
    // Half of a masked binary frame header announcing 1000 bytes, then the TCP connection dies.
    const raw = (socket as unknown as { _socket: net.Socket })._socket;
    raw.write(Buffer.from([0x82, 0xfe, 0x03, 0xe8, 1, 2, 3, 4, 9, 9, 9]));
    raw.destroy();
    await waitFor(() => server.router.stats().connections === 0, 5_000, 'server to drop the connection');
    await bystanderWorks(server.urls.http);
  });
});
