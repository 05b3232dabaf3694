/**
 * What only the HTTP polling transports have to get right: sessions, acknowledgement of lost
 * responses, retried POSTs, clients that stop polling, HTTP-level errors, and the queue between
 * polls as backpressure. (Common behaviour is in ../conformance.test.ts.) Real HTTP on loopback.
 */
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { collect, startEchoServer, waitFor, type EchoServer } from '../../test-support/servers.ts';
import { decodeBatch, encodeBatch } from '../codec/batch.ts';
import type { Connection } from '../transport.ts';
import { connectLongPolling } from './client.ts';

let server: EchoServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function openSession(url: string, path = '/lp'): Promise<string> {
  const response = await fetch(`${url}${path}/open`, { method: 'POST' });
  return ((await response.json()) as { sid: string }).sid;
}

function post(url: string, body: Uint8Array): Promise<Response> {
  return fetch(url, { method: 'POST', body: body as Uint8Array<ArrayBuffer> });
}

describe('long-polling sessions', () => {
  it('resends a response that was lost on the way, and nothing twice', async () => {
    server = await startEchoServer();
    const sid = await openSession(server.url);
    const base = `${server.url}/lp/${sid}`;
    await post(base, encodeBatch({ firstSeq: 0, messages: ['a', 'b'] }));
    // A GET whose connection dies before the client reads the answer.
    await new Promise<void>((resolve) => {
      const request = http.get(`${base}?ack=0`, (response) => {
        response.destroy();
        resolve();
      });
      request.on('error', () => resolve());
    });
    await post(base, encodeBatch({ firstSeq: 2, messages: ['c'] }));
    // The next GET still acknowledges nothing: a, b come again, then c.
    const first = decodeBatch(new Uint8Array(await (await fetch(`${base}?ack=0`)).arrayBuffer()), 1 << 20);
    expect(first).toEqual({ firstSeq: 0, messages: ['a', 'b', 'c'] });
    await post(base, encodeBatch({ firstSeq: 3, messages: ['d'] }));
    const second = decodeBatch(new Uint8Array(await (await fetch(`${base}?ack=3`)).arrayBuffer()), 1 << 20);
    expect(second).toEqual({ firstSeq: 3, messages: ['d'] });
  });

  it('does not deliver a retried POST twice', async () => {
    server = await startEchoServer();
    const sid = await openSession(server.url);
    const base = `${server.url}/lp/${sid}`;
    const body = encodeBatch({ firstSeq: 0, messages: ['once'] });
    expect((await post(base, body)).status).toBe(204);
    expect((await post(base, body)).status).toBe(204);
    const batch = decodeBatch(new Uint8Array(await (await fetch(`${base}?ack=0`)).arrayBuffer()), 1 << 20);
    expect(batch.messages).toEqual(['once']);
  });

  it('keeps a polling client alive through holds longer than pollTimeoutMs', async () => {
    server = await startEchoServer({ pollTimeoutMs: 150 });
    const client = connectLongPolling({ url: server.url });
    await client.opened;
    // The echo server holds GETs for 5 s: an idle but polling client must outlive 150 ms many times.
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(client.state).toBe('open');
    const received = collect(client);
    client.send('alive');
    await waitFor(() => received.length === 1);
    client.close(4001, 'done');
    expect(await server.connections.at(-1)!.closed).toEqual({ code: 4001, reason: 'done', wasClean: true });
  });

  it('a close() while opening still ends the server session cleanly', async () => {
    server = await startEchoServer();
    const client = connectLongPolling({ url: server.url });
    client.close(4002, 'changed my mind');
    expect(await client.closed).toEqual({ code: 4002, reason: 'changed my mind', wasClean: true });
    await waitFor(() => server!.closes.length === 1);
    expect(server.closes[0]).toEqual({ code: 4002, reason: 'changed my mind', wasClean: true });
    expect(server.transports.find((t) => t.name === 'long-polling')!.connectionCount).toBe(0);
  });

  it('batches upstream POSTs under a small maxMessageSize (no 413 for many small messages)', async () => {
    server = await startEchoServer({ maxMessageSize: 1000 });
    const client = connectLongPolling({ url: server.url });
    const received = collect(client);
    await client.opened;
    const sent = Array.from({ length: 200 }, (_, i) => `${i}`.padEnd(900, '.'));
    for (const message of sent) client.send(message);
    await waitFor(() => received.length === sent.length);
    expect(received).toEqual(sent);
    client.close();
  });

  it.each(['before its headers', 'mid-body'] as const)('a GET response lost %s loses nothing: the client gets everything exactly once, in order', async (where) => {
    server = await startEchoServer();
    let lost = 0;
    // A fetch whose first GET answer carrying messages breaks off after the server sent it.
    const lossyFetch: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if ((init?.method ?? 'GET') !== 'GET' || lost > 0) return response;
      const body = new Uint8Array(await response.arrayBuffer());
      if (decodeBatch(body, 1 << 20).messages.length === 0) return new Response(body, { status: response.status });
      lost++;
      if (where === 'before its headers') throw new TypeError('fetch failed: connection reset');
      const cut = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(body.subarray(0, body.length >> 1));
          controller.error(new TypeError('terminated: other side closed'));
        },
      });
      return new Response(cut, { status: 200 });
    };
    const client = connectLongPolling({ url: server.url, fetch: lossyFetch });
    const received = collect(client);
    await client.opened;
    const sent = Array.from({ length: 100 }, (_, i) => `m${i}`);
    for (const message of sent) client.send(message);
    await waitFor(() => received.length >= sent.length);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(lost).toBe(1);
    expect(received).toEqual(sent);
    client.close();
  });

  it('closes and forgets a client that stops polling', async () => {
    server = await startEchoServer({ pollTimeoutMs: 200 });
    const lp = server.transports.find((t) => t.name === 'long-polling')!;
    await openSession(server.url);
    expect(lp.connectionCount).toBe(1);
    const connection = server.connections.at(-1)!;
    expect(await connection.closed).toEqual({ code: 4009, reason: 'client stopped polling', wasClean: false });
    expect(lp.connectionCount).toBe(0);
  });

  it.each([
    ['an unknown session', 'GET', '/lp/nope?ack=0', undefined, 404, 'ERR_UNKNOWN_SESSION'],
    ['a wrong method', 'PUT', '/lp/open', undefined, 405, 'ERR_METHOD'],
    ['a garbage body', 'POST', '/lp/SID', Uint8Array.of(0xff, 0xff), 400, 'ERR_BATCH_TRUNCATED'],
    ['a malformed close', 'POST', '/lp/SID/close', new TextEncoder().encode('{"code":"x"}'), 400, 'ERR_BAD_CLOSE'],
    ['a null close', 'POST', '/lp/SID/close', new TextEncoder().encode('null'), 400, 'ERR_BAD_CLOSE'],
    ['an upstream gap', 'POST', '/lp/SID', encodeBatch({ firstSeq: 5, messages: ['x'] }), 400, 'ERR_SEQUENCE_GAP'],
  ])('answers %s with a typed error and keeps serving', async (_what, method, path, body, status, code) => {
    server = await startEchoServer();
    const sid = await openSession(server.url);
    const response = await fetch(`${server.url}${path.replace('SID', sid)}`, { method, body: body as Uint8Array<ArrayBuffer> | undefined });
    expect(response.status).toBe(status);
    expect(await response.json()).toMatchObject({ error: { code } });
    const client = connectLongPolling({ url: server.url });
    const received = collect(client);
    await client.opened;
    client.send('still fine');
    await waitFor(() => received.length === 1);
    client.close();
  });

  it('answers an oversized POST with 413 and closes the session with 1009', async () => {
    server = await startEchoServer({ maxMessageSize: 1000, pollTimeoutMs: 300 });
    const sid = await openSession(server.url);
    const response = await post(`${server.url}/lp/${sid}`, encodeBatch({ firstSeq: 0, messages: [new Uint8Array(5000)] }));
    expect(response.status).toBe(413);
    expect((await server.connections.at(-1)!.closed).code).toBe(1009);
  });
});

describe('backpressure between polls', () => {
  async function stalledSession(policy: 'drop-oldest' | 'drop-newest' | 'disconnect') {
    server = await startEchoServer({ backpressure: { highWaterMark: 1000, maxQueuedBytes: 4000, policy } });
    const sid = await openSession(server.url);
    return { sid, connection: server.connections.at(-1)! };
  }
  const fill = (connection: Connection) => Array.from({ length: 10 }, (_, i) => connection.send(`${i}`.padEnd(1000, '.')));

  it('drop-newest keeps the oldest and counts the rest', async () => {
    const { sid, connection } = await stalledSession('drop-newest');
    expect(fill(connection).filter((o) => o === 'dropped')).toHaveLength(6);
    expect(connection.stats().dropped).toBe(6);
    const batch = decodeBatch(new Uint8Array(await (await fetch(`${server!.url}/lp/${sid}?ack=0`)).arrayBuffer()), 1 << 20);
    expect(batch.messages.map((m) => (m as string)[0])).toEqual(['0', '1', '2', '3']);
  });

  it('drop-oldest keeps the newest and counts the rest', async () => {
    const { sid, connection } = await stalledSession('drop-oldest');
    fill(connection);
    expect(connection.stats().dropped).toBe(6);
    const batch = decodeBatch(new Uint8Array(await (await fetch(`${server!.url}/lp/${sid}?ack=0`)).arrayBuffer()), 1 << 20);
    expect(batch.messages.map((m) => (m as string)[0])).toEqual(['6', '7', '8', '9']);
  });

  it('disconnect closes the slow consumer with 4008; drained() waits for the next poll', async () => {
    const { sid, connection } = await stalledSession('disconnect');
    connection.send('x'.repeat(1500));
    expect(connection.writable).toBe(false);
    let drained = false;
    const waiting = connection.drained().then(() => (drained = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(drained).toBe(false);
    await fetch(`${server!.url}/lp/${sid}?ack=0`).then((r) => r.arrayBuffer());
    await fetch(`${server!.url}/lp/${sid}?ack=1`, { signal: AbortSignal.timeout(100) }).catch(() => undefined);
    await waiting;
    const outcomes: string[] = [];
    while (connection.state === 'open') outcomes.push(connection.send('y'.repeat(1000)));
    expect(outcomes.at(-1)).toBe('disconnected');
    expect(outcomes.slice(0, -1).every((o) => o === 'queued')).toBe(true);
    expect((await connection.closed).code).toBe(4008);
    // The backlog of a consumer dropped for not polling is counted as dropped, not sent.
    expect(connection.stats().dropped).toBe(outcomes.length - 1);
  });
});
