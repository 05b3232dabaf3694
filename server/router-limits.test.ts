/**
 * What one client can make the router do is bounded, and what it is told is true (issue 11):
 * batches and malformed frames, quotas, rate limits, authorisation on every command, receipts only
 * from their recipients, pipelined hellos, single-use resume secrets, and acknowledgements only
 * for what can be delivered. Real sockets on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { encodeBatch } from '../transports/codec/batch.ts';
import { decodeBatch } from '../transports/codec/batch.ts';
import { encodeEnvelope } from '../transports/codec/envelope.ts';
import { writeVarint } from '../transports/codec/varint.ts';
import type { Delivery } from '../transports/client.ts';
import { createClient } from '../transports/node-client.ts';
import { waitFor } from '../test-support/servers.ts';
import { startServer, type SwitchyardServer } from './index.ts';

type Frame = Record<string, unknown>;

/** A raw WebSocket; `hello` says hello first. Collects parsed server frames. */
async function rawClient(server: SwitchyardServer, hello: Frame | null = { v: 1, t: 'hello' }) {
  const socket = new WebSocket(`${server.urls.http.replace('http', 'ws')}/ws`);
  const frames: Frame[] = [];
  const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
  socket.on('message', (data, isBinary) => frames.push(isBinary ? { binary: data } : (JSON.parse(data.toString()) as Frame)));
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  if (hello) {
    socket.send(JSON.stringify(hello));
    await waitFor(() => frames.length > 0, 5_000, 'welcome');
  }
  const welcome = frames[0] as { clientId: string; secret: string; resumed: boolean } | undefined;
  const send = (frame: Frame) => socket.send(JSON.stringify({ v: 1, ...frame }));
  const errors = () => frames.filter((f) => f.t === 'error');
  return { socket, frames, closed, welcome, send, errors };
}

/** A long-polling session driven by hand: raw POST batches, raw GET polls. */
async function rawSession(server: SwitchyardServer) {
  const base = `${server.urls.http}/lp`;
  const { sid } = (await (await fetch(`${base}/open`, { method: 'POST' })).json()) as { sid: string };
  let upSeq = 0;
  let downSeq = 0;
  return {
    post: (body: Uint8Array<ArrayBuffer>) => fetch(`${base}/${sid}`, { method: 'POST', body }),
    postFrames: (frames: Frame[]) => {
      const body = encodeBatch({ firstSeq: upSeq, messages: frames.map((f) => JSON.stringify({ v: 1, ...f })) });
      upSeq += frames.length;
      return fetch(`${base}/${sid}`, { method: 'POST', body });
    },
    /** One poll: the frames it carried and the close record, if any. */
    poll: async () => {
      const body = new Uint8Array(await (await fetch(`${base}/${sid}?ack=${downSeq}`)).arrayBuffer());
      const batch = decodeBatch(body, 1 << 22);
      downSeq = batch.firstSeq + batch.messages.length;
      return { frames: batch.messages.map((m) => JSON.parse(m as string) as Frame), close: batch.close };
    },
  };
}

describe('router limits', () => {
  let server: SwitchyardServer;
  const maxMessageSize = 2 * 1024 * 1024;
  beforeAll(async () => {
    server = await startServer({
      port: 0,
      
      certificate: 'none',
      maxMessageSize,
      longPolling: { holdMs: 300 },
      router: {
        maxProtocolErrors: 10,
        maxNameLength: 32,
        maxIdLength: 16,
        maxMemberships: 4,
        maxMulticastIds: 3,
        // Hello decided a little later, as a real token check would be.
        authenticate: async ({ token }) => {
          await new Promise((resolve) => setTimeout(resolve, 50));
          return token ?? true;
        },
        authorize: (client, action) => {
          if (client.userId === 'mute') return !['broadcast', 'send', 'multicast-ids'].includes(action.kind);
          return true;
        },
        beforeRoute: (command) => (command.t === 'publish' && command.topic === 'blocked' ? 'drop' : undefined),
      },
    });
  });
  afterAll(() => server.close());

  it('a 1 MB POST of 1 000 000 empty messages is refused whole (413 ERR_BATCH_TOO_MANY), and GET /info answers meanwhile', async () => {
    const session = await rawSession(server);
    const body = new Uint8Array(1_000_000 + 8);
    let offset = writeVarint(body, 0, 0);
    offset = writeVarint(body, offset, 1_000_000);
    const post = session.post(body.subarray(0, offset + 1_000_000));
    const started = Date.now();
    const info = await fetch(`${server.urls.http}/info`);
    const infoMs = Date.now() - started;
    expect(info.status).toBe(200);
    const refused = await post;
    expect(refused.status).toBe(413);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('ERR_BATCH_TOO_MANY');
    // Generous: before the cap, this request held the loop for ~13 s.
    expect(infoMs).toBeLessThan(1_000);
    expect((await session.poll()).close?.code).toBe(1009);
  });

  it('a batch of bad frames gets one coalesced error, and too many close the session with 1002', async () => {
    const session = await rawSession(server);
    const bad = encodeBatch({ firstSeq: 0, messages: Array.from({ length: 1000 }, () => '') });
    const answered = await session.post(bad);
    expect(answered.status).toBe(204);
    const { frames, close } = await session.poll();
    expect(frames).toHaveLength(1);
    expect(frames[0]).toMatchObject({ t: 'error', code: 'ERR_ENVELOPE_INVALID_JSON' });
    expect(frames[0]!.message).toMatch(/and 9 more/);
    expect(close).toEqual({ code: 1002, reason: 'more than 10 protocol errors' });
  });

  it('bad frames in one WebSocket read get one error; the connection lives until the limit', async () => {
    const raw = await rawClient(server);
    // Five bad frames in one TCP write: the server reads them in one go.
    const tcp = (raw.socket as unknown as { _socket: import('node:net').Socket })._socket;
    tcp.cork();
    for (let i = 0; i < 5; i++) raw.socket.send('{');
    tcp.uncork();
    raw.send({ t: 'ping', ts: 7 });
    await waitFor(() => raw.frames.some((f) => f.t === 'pong'));
    expect(raw.errors()).toHaveLength(1);
    expect(raw.errors()[0]).toMatchObject({ code: 'ERR_ENVELOPE_INVALID_JSON', message: expect.stringMatching(/and 4 more/) });
    // Five more (ten in all) are tolerated; the eleventh closes the connection.
    for (let i = 0; i < 6; i++) raw.socket.send('{');
    expect(await raw.closed).toBe(1002);
  });

  it('commands pipelined behind hello (same POST) wait for the hello to be decided', async () => {
    const session = await rawSession(server);
    await session.postFrames([{ t: 'hello' }, { t: 'join', room: 'early', id: 'j1' }, { t: 'ping', ts: 3 }]);
    const seen: Frame[] = [];
    while (seen.length < 3) seen.push(...(await session.poll()).frames);
    expect(seen.map((f) => f.t)).toEqual(['welcome', 'ack', 'pong']);
    expect(seen[1]).toMatchObject({ id: 'j1' });
  });

  it('refuses names, ids, memberships and id lists over their limits with typed errors', async () => {
    const raw = await rawClient(server);
    raw.send({ t: 'join', room: 'r'.repeat(33), id: 'a' });
    raw.send({ t: 'subscribe', topic: 't'.repeat(33), id: 'b' });
    raw.send({ t: 'publish', topic: 'ok', data: 1, id: 'i'.repeat(17) });
    for (let i = 0; i < 5; i++) raw.send({ t: 'join', room: `room${i}`, id: `j${i}` });
    raw.send({ t: 'multicast', target: { ids: ['a', 'b', 'c', 'd'] }, data: 1, id: 'm' });
    await waitFor(() => raw.frames.filter((f) => f.t === 'error' || f.t === 'ack').length === 9);
    const byRef = Object.fromEntries(raw.errors().map((f) => [f.ref ?? 'none', f.code]));
    expect(byRef).toEqual({ a: 'ERR_NAME_TOO_LONG', b: 'ERR_NAME_TOO_LONG', none: 'ERR_ID_TOO_LONG', j4: 'ERR_TOO_MANY_MEMBERSHIPS', m: 'ERR_TOO_MANY_IDS' });
    raw.socket.close(1000);
  });

  it('beforeRoute sees id-less commands too', async () => {
    const reader = createClient({ url: server.urls.http, transports: 'websocket' });
    const writer = createClient({ url: server.urls.http, transports: 'websocket' });
    const inbox: Delivery[] = [];
    reader.on('message', (d) => inbox.push(d));
    await Promise.all([reader.connect(), writer.connect()]);
    await reader.subscribe('blocked');
    await reader.subscribe('open');
    await writer.publish('blocked', 'must not arrive');
    await writer.publish('open', 'after');
    await waitFor(() => inbox.length > 0);
    expect(inbox.map((d) => d.data)).toEqual(['after']);
    reader.close();
    writer.close();
  });

  it('authorize is asked about broadcast, send and id-list multicast', async () => {
    const mute = createClient({ url: server.urls.http, transports: 'websocket', token: 'mute' });
    const other = createClient({ url: server.urls.http, transports: 'websocket' });
    await Promise.all([mute.connect(), other.connect()]);
    await expect(mute.broadcast('x', { ack: true })).rejects.toMatchObject({ code: 'ERR_FORBIDDEN' });
    await expect(mute.send(other.id!, 'x', { ack: true })).rejects.toMatchObject({ code: 'ERR_FORBIDDEN' });
    await expect(mute.multicast({ ids: [other.id!] }, 'x', { ack: true })).rejects.toMatchObject({ code: 'ERR_FORBIDDEN' });
    await mute.join('allowed');
    mute.close();
    other.close();
  });

  it('a receipt can only come from a recipient that owes it', async () => {
    const sender = createClient({ url: server.urls.http, transports: 'websocket' });
    const recipient = createClient({ url: server.urls.http, transports: 'websocket' });
    await Promise.all([sender.connect(), recipient.connect()]);
    const receipts: [string, string][] = [];
    sender.on('receipt', (id, from) => receipts.push([id, from]));
    const forger = await rawClient(server);
    forger.send({ t: 'ack', id: 'whatever', to: sender.id });
    await waitFor(() => forger.errors().length === 1);
    expect(forger.errors()[0]).toMatchObject({ code: 'ERR_RECEIPT_NOT_OWED' });
    // The genuine one still arrives, and is the only one.
    await sender.send(recipient.id!, 'confirm me', { ack: true, receipt: true });
    await waitFor(() => receipts.length === 1);
    expect(receipts[0]![1]).toBe(recipient.id);
    forger.socket.close(1000);
    sender.close();
    recipient.close();
  });

  it('server-only envelope types from a client are refused with a typed error', async () => {
    const raw = await rawClient(server);
    raw.send({ t: 'message', from: 'server', kind: 'broadcast', data: 1 });
    raw.send({ t: 'welcome', clientId: 'x', secret: 'y', resumed: true, heartbeatMs: 1, maxMessageSize: 1 });
    await waitFor(() => raw.errors().length === 1);
    expect(raw.errors()[0]).toMatchObject({ code: 'ERR_ENVELOPE_SERVER_ONLY' });
    raw.socket.close(1000);
  });

  it('a resume secret works once: each resume issues a new one', async () => {
    const first = await rawClient(server);
    const { clientId, secret } = first.welcome!;
    first.socket.terminate();
    await waitFor(() => server.router.clients.get(clientId)?.connection === null);
    const second = await rawClient(server, { v: 1, t: 'hello', resume: { clientId, secret } });
    expect(second.welcome).toMatchObject({ clientId, resumed: true });
    expect(second.welcome!.secret).not.toBe(secret);
    second.socket.terminate();
    await waitFor(() => server.router.clients.get(clientId)?.connection === null);
    const replay = await rawClient(server, { v: 1, t: 'hello', resume: { clientId, secret } });
    expect(replay.welcome).toMatchObject({ resumed: false });
    expect(replay.welcome!.clientId).not.toBe(clientId);
    replay.socket.close(1000);
  });

  it('an acked send refused at once rejects at once with the real error, not after the ack timeout', async () => {
    const client = createClient({ url: server.urls.http, transports: 'websocket', ackTimeoutMs: 60_000 });
    await client.connect();
    await expect(client.publish('t', 'x'.repeat(maxMessageSize + 1), { ack: true })).rejects.toMatchObject({ code: 'ERR_MESSAGE_TOO_LARGE' });
    await expect(client.publish('t', 'x', { ack: true, lane: 'unreliable' })).rejects.toMatchObject({ code: 'ERR_LANE_UNSUPPORTED' });
    client.close();
  });

  it('a payload whose delivery would exceed the limit is refused, never acked and then dropped', async () => {
    const reader = await rawClient(server);
    reader.send({ t: 'subscribe', topic: 'big', id: 's' });
    await waitFor(() => reader.frames.some((f) => f.t === 'ack'));
    const writer = await rawClient(server);
    // A binary publish exactly at the limit: the delivery adds the sender's id and the kind byte.
    const overhead = (encodeEnvelope({ t: 'publish', topic: 'big', id: 'p', data: new Uint8Array(0) }) as Uint8Array).length;
    const command = encodeEnvelope({ t: 'publish', topic: 'big', id: 'p', data: new Uint8Array(maxMessageSize - overhead) }) as Uint8Array;
    expect(command.length).toBe(maxMessageSize);
    const undeliverable = server.router.stats().undeliverable;
    writer.socket.send(command);
    writer.send({ t: 'ping', ts: 1 });
    await waitFor(() => writer.frames.some((f) => f.t === 'pong'));
    expect(writer.errors()).toMatchObject([{ code: 'ERR_MESSAGE_TOO_LARGE', ref: 'p' }]);
    expect(writer.frames.some((f) => f.t === 'ack')).toBe(false);
    expect(server.router.stats().undeliverable).toBe(undeliverable);
    expect(reader.frames.filter((f) => f.binary)).toHaveLength(0);
    reader.socket.close(1000);
    writer.socket.close(1000);
  });
});

describe('per-connection rate limit', () => {
  let server: SwitchyardServer;
  beforeAll(async () => {
    server = await startServer({ port: 0, certificate: 'none', transports: ['websocket'], router: { rateLimit: { perSecond: 100, burst: 10 } } });
  });
  afterAll(() => server.close());

  it('pauses reading past the bucket, refuses a sender that keeps coming with ERR_RATE_LIMITED, and serves it again once it refills', async () => {
    const raw = await rawClient(server);
    for (let i = 0; i < 50; i++) raw.send({ t: 'ping', ts: i });
    await waitFor(() => raw.errors().length > 0);
    expect(raw.errors()[0]).toMatchObject({ code: 'ERR_RATE_LIMITED' });
    const pongs = () => raw.frames.filter((f) => f.t === 'pong').length;
    expect(pongs()).toBeLessThan(50);
    const before = pongs();
    raw.send({ t: 'ping', ts: 1000 });
    await waitFor(() => raw.frames.some((f) => f.t === 'pong' && f.ts === 1000), 5_000, 'a pong after the refill');
    expect(pongs()).toBeGreaterThan(before);
    raw.socket.close(1000);
  });
});
