/**
 * What only the HTTP polling transports have to get right: sessions, acknowledgement of lost
 * responses, retried POSTs, clients that stop polling, HTTP-level errors, and the queue between
 * polls as backpressure. (Common behaviour is in ../conformance.test.ts.) Real HTTP on loopback.
 */
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { collect, startEchoServer, waitFor, type EchoServer } from '../../test-support/servers.ts';
import { decodeBatch, encodeBatch, type Batch } from '../codec/batch.ts';
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

/**
 * A fetch whose first GET answer with a batch that `matches` is lost after the server sent it:
 * the connection fails before its headers, or the body breaks off halfway. `lost` counts them.
 */
function losingFirstGet(matches: (batch: Batch) => boolean, where: 'before its headers' | 'mid-body'): { fetch: typeof fetch; lost: number } {
  const lossy: { fetch: typeof fetch; lost: number } = {
    lost: 0,
    fetch: async (input, init) => {
      const response = await fetch(input, init);
      if ((init?.method ?? 'GET') !== 'GET' || lossy.lost > 0) return response;
      const body = new Uint8Array(await response.arrayBuffer());
      if (!matches(decodeBatch(body, 1 << 20))) return new Response(body, { status: response.status });
      lossy.lost++;
      if (where === 'before its headers') throw new TypeError('fetch failed: connection reset');
      const cut = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(body.subarray(0, body.length >> 1));
          controller.error(new TypeError('terminated: other side closed'));
        },
      });
      return new Response(cut, { status: 200 });
    },
  };
  return lossy;
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

  it('answers a POST with ack with what it queued meanwhile, and leaves the held GET held', async () => {
    server = await startEchoServer();
    const sid = await openSession(server.url);
    const base = `${server.url}/lp/${sid}`;
    const held = fetch(`${base}?ack=0`).then(async (response) => decodeBatch(new Uint8Array(await response.arrayBuffer()), 1 << 20));
    await waitFor(() => server!.connections.length === 1);
    // The echo of each POST comes back in its answer (BOSH-style); the ack of the second drops the first echo.
    const first = await post(`${base}?ack=0`, encodeBatch({ firstSeq: 0, messages: ['one'] }));
    expect([first.status, decodeBatch(new Uint8Array(await first.arrayBuffer()), 1 << 20)]).toEqual([200, { firstSeq: 0, messages: ['one'] }]);
    const second = await post(`${base}?ack=1`, encodeBatch({ firstSeq: 1, messages: ['two'] }));
    expect([second.status, decodeBatch(new Uint8Array(await second.arrayBuffer()), 1 << 20)]).toEqual([200, { firstSeq: 1, messages: ['two'] }]);
    // Without ack a POST is answered 204 and its echo goes to the held GET, after the unacknowledged
    // 'two': the GET was held all along (answered earlier, it would have carried 'one').
    expect((await post(base, encodeBatch({ firstSeq: 2, messages: ['three'] }))).status).toBe(204);
    expect(await held).toEqual({ firstSeq: 1, messages: ['two', 'three'] });
  });

  it('answers a POST with an ack beyond what was sent with a typed error', async () => {
    server = await startEchoServer();
    const sid = await openSession(server.url);
    const response = await post(`${server.url}/lp/${sid}?ack=5`, encodeBatch({ firstSeq: 0, messages: ['x'] }));
    expect([response.status, ((await response.json()) as { error: { code: string } }).error.code]).toEqual([400, 'ERR_BAD_ACK']);
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
    const lossy = losingFirstGet((batch) => batch.messages.length > 0, where);
    const client = connectLongPolling({ url: server.url, fetch: lossy.fetch });
    const received = collect(client);
    await client.opened;
    const sent = Array.from({ length: 100 }, (_, i) => `m${i}`);
    for (const message of sent) client.send(message);
    // The echo of a last message comes after every resend of the earlier ones: nothing more follows.
    client.send('end');
    await waitFor(() => received.includes('end'));
    expect(lossy.lost).toBe(1);
    expect(received).toEqual([...sent, 'end']);
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
    ['an ack beyond what was sent', 'GET', '/lp/SID?ack=5', undefined, 400, 'ERR_BAD_ACK'],
    ['a path under a session', 'GET', '/lp/SID/x/y', undefined, 404, 'ERR_UNKNOWN_SESSION'],
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

describe('long-polling edge cases', () => {
  const getBatch = async (url: string) => decodeBatch(new Uint8Array(await (await fetch(url)).arrayBuffer()), 1 << 20);

  it('a second GET replaces the held one, which is answered with an empty batch', async () => {
    server = await startEchoServer();
    const sid = await openSession(server.url);
    const base = `${server.url}/lp/${sid}`;
    const session = server.connections.at(-1)!;
    const readBefore = session.stats().wireBytesIn!;
    const first = getBatch(`${base}?ack=0`);
    // The server counts a request's bytes as it takes it, then holds it.
    await waitFor(() => session.stats().wireBytesIn! > readBefore, 10_000, 'the first GET to be held');
    const second = getBatch(`${base}?ack=0`);
    expect(await first).toEqual({ firstSeq: 0, messages: [] });
    await post(base, encodeBatch({ firstSeq: 0, messages: ['x'] }));
    expect(await second).toEqual({ firstSeq: 0, messages: ['x'] });
  });

  it('a message over maxMessageSize in a small body is answered 413 and closes with 1009', async () => {
    server = await startEchoServer({ maxMessageSize: 1000, pollTimeoutMs: 300 });
    const sid = await openSession(server.url);
    const connection = server.connections.at(-1)!;
    const response = await post(`${server.url}/lp/${sid}`, encodeBatch({ firstSeq: 0, messages: [new Uint8Array(1500)] }));
    expect(response.status).toBe(413);
    expect(await response.json()).toMatchObject({ error: { code: 'ERR_MESSAGE_TOO_LARGE' } });
    expect((await connection.closed).code).toBe(1009);
  });

  it('a lost final response (messages + close record) is sent again: nothing lost, close still clean', async () => {
    server = await startEchoServer();
    const lossy = losingFirstGet((batch) => batch.close !== undefined, 'before its headers');
    const client = connectLongPolling({ url: server.url, fetch: lossy.fetch });
    const received = collect(client);
    await client.opened;
    client.send('a');
    client.send(Uint8Array.of(1));
    client.send('close:4005:bye');
    expect(await client.closed).toEqual({ code: 4005, reason: 'bye', wasClean: true });
    expect(lossy.lost).toBe(1);
    expect(received).toEqual(['a', Uint8Array.of(1)]);
    expect(server.transports.find((t) => t.name === 'long-polling')!.connectionCount).toBe(0);
  });

  it('a retried close POST is answered 204 again; a GET after it gets the close record', async () => {
    server = await startEchoServer();
    const sid = await openSession(server.url);
    const connection = server.connections.at(-1)!;
    const base = `${server.url}/lp/${sid}`;
    const close = () => fetch(`${base}/close`, { method: 'POST', body: JSON.stringify({ code: 4006, reason: 'twice' }) });
    expect((await close()).status).toBe(204);
    expect((await close()).status).toBe(204);
    expect(await connection.closed).toEqual({ code: 4006, reason: 'twice', wasClean: true });
    expect((await post(base, encodeBatch({ firstSeq: 0, messages: ['late'] }))).status).toBe(204);
    expect(await getBatch(`${base}?ack=0`)).toEqual({ firstSeq: 0, messages: [], close: { code: 4006, reason: 'twice' } });
    expect(server.closes).toHaveLength(1);
  });

  it('counts the exact request and response bytes on the wire, headers included', async () => {
    server = await startEchoServer();
    const sid = await openSession(server.url);
    const connection = server.connections.at(-1)!;
    const before = connection.stats();
    const body = encodeBatch({ firstSeq: 0, messages: ['wire'] });
    const head = `POST /lp/${sid} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
    const { port } = new URL(server.url);
    const answer = await new Promise<Buffer>((resolve, reject) => {
      const socket = net.connect(Number(port), '127.0.0.1', () => socket.end(Buffer.concat([Buffer.from(head), body])));
      const chunks: Buffer[] = [];
      socket.on('data', (chunk) => chunks.push(chunk));
      socket.on('end', () => resolve(Buffer.concat(chunks)));
      socket.on('error', reject);
    });
    expect(answer.toString('latin1')).toMatch(/^HTTP\/1\.1 204 /);
    const after = connection.stats();
    expect(after.wireBytesIn! - before.wireBytesIn!).toBe(head.length + body.length);
    expect(after.wireBytesOut! - before.wireBytesOut!).toBe(answer.length);
    expect(after.messagesIn - before.messagesIn).toBe(1);
  });
});

// The policies themselves run for every transport in conformance.test.ts; here, what is long-polling's own.
describe('backpressure between polls', () => {
  async function stalledSession(policy: 'disconnect') {
    server = await startEchoServer({ backpressure: { highWaterMark: 1000, maxQueuedBytes: 4000, policy } });
    const sid = await openSession(server.url);
    return { sid, connection: server.connections.at(-1)! };
  }

  it('disconnect closes the slow consumer with 4008; drained() waits for the next poll', async () => {
    const { sid, connection } = await stalledSession('disconnect');
    connection.send('x'.repeat(1500));
    expect(connection.writable).toBe(false);
    let polled = false;
    const drainedAfterPoll = connection.drained().then(() => polled);
    // One turn of the event loop before anyone polls: a drained() not tied to the polls would settle here.
    await new Promise((resolve) => setImmediate(resolve));
    polled = true;
    await fetch(`${server!.url}/lp/${sid}?ack=0`).then((r) => r.arrayBuffer());
    await fetch(`${server!.url}/lp/${sid}?ack=1`, { signal: AbortSignal.timeout(100) }).catch(() => undefined);
    expect(await drainedAfterPoll).toBe(true);
    const outcomes: string[] = [];
    while (connection.state === 'open') outcomes.push(connection.send('y'.repeat(1000)));
    expect(outcomes.at(-1)).toBe('disconnected');
    expect(outcomes.slice(0, -1).every((o) => o === 'queued')).toBe(true);
    expect((await connection.closed).code).toBe(4008);
    // The backlog of a consumer dropped for not polling is counted as dropped, not sent.
    expect(connection.stats().dropped).toBe(outcomes.length - 1);
  });
});
