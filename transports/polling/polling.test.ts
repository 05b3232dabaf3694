/**
 * What `polling` adds to the shared HTTP polling implementation (see ../long-polling): GETs are
 * answered at once, empty or not, and the client asks at a fixed interval. Common behaviour is in
 * ../conformance.test.ts. Real HTTP on loopback.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { collect, startEchoServer, waitFor, type EchoServer } from '../../test-support/servers.ts';
import { decodeBatch } from '../codec/batch.ts';
import { connectPolling } from './client.ts';

let server: EchoServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('polling', () => {
  it('answers a GET at once when nothing is queued', async () => {
    server = await startEchoServer();
    const open = await fetch(`${server.url}/poll/open`, { method: 'POST' });
    const session = (await open.json()) as { sid: string; holdMs: number };
    expect(session.holdMs).toBe(0);
    const response = await fetch(`${server.url}/poll/${session.sid}?ack=0`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/octet-stream');
    expect(decodeBatch(new Uint8Array(await response.arrayBuffer()), 1 << 20)).toEqual({ firstSeq: 0, messages: [] });
  });

  it('asks at its interval and delivers text and binary queued between asks', async () => {
    server = await startEchoServer();
    const started = Date.now();
    const client = connectPolling({ url: server.url, intervalMs: 50 });
    const received = collect(client);
    await client.opened;
    expect(client.transport).toBe('polling');
    expect(client.capabilities.serverPush).toBe(false);
    expect(server.connections.at(-1)!.capabilities.serverPush).toBe(false);
    client.send('one');
    client.send(Uint8Array.of(1, 2, 3));
    await waitFor(() => received.length === 2);
    expect(received).toEqual(['one', Uint8Array.of(1, 2, 3)]);
    expect(client.stats()).toMatchObject({ messagesOut: 2, messagesIn: 2, bytesOut: 6, wireBytesIn: null });
    // Smoothed from the requests' round trips: a real duration, at most this test's.
    expect(Number.isFinite(client.stats().rttMs)).toBe(true);
    expect(client.stats().rttMs).toBeGreaterThanOrEqual(0);
    expect(client.stats().rttMs).toBeLessThanOrEqual(Date.now() - started);
    const wire = server.connections.at(-1)!.stats();
    expect(wire.wireBytesIn).toBeGreaterThan(wire.bytesIn);
    expect(wire.wireBytesOut).toBeGreaterThan(wire.bytesOut);
    client.close(4003, 'bye');
    expect(await client.closed).toEqual({ code: 4003, reason: 'bye', wasClean: true });
    await waitFor(() => server!.closes.length === 1);
    expect(server.closes[0]).toEqual({ code: 4003, reason: 'bye', wasClean: true });
  });

  it('never asks more often than its interval, and keeps asking while idle', async () => {
    server = await startEchoServer();
    const starts: number[] = [];
    const countingFetch: typeof fetch = (input, init) => {
      if ((init?.method ?? 'GET') === 'GET') starts.push(performance.now());
      return fetch(input, init);
    };
    const client = connectPolling({ url: server.url, intervalMs: 60, fetch: countingFetch });
    await client.opened;
    await waitFor(() => starts.length >= 5);
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
    // Timers never fire early; 2 ms of slack for clock rounding.
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(58);
    client.close();
    await client.closed;
  });

  it('a server close reaches the client at its next ask, cleanly', async () => {
    server = await startEchoServer();
    const client = connectPolling({ url: server.url, intervalMs: 30 });
    await client.opened;
    client.send('close:4004:server says bye');
    expect(await client.closed).toEqual({ code: 4004, reason: 'server says bye', wasClean: true });
    expect(server.transports.find((t) => t.name === 'polling')!.connectionCount).toBe(0);
  });

  it('closes a client that stops asking after pollTimeoutMs', async () => {
    server = await startEchoServer({ pollTimeoutMs: 150 });
    await fetch(`${server.url}/poll/open`, { method: 'POST' });
    expect((await server.connections.at(-1)!.closed).code).toBe(4009);
    expect(server.transports.find((t) => t.name === 'polling')!.connectionCount).toBe(0);
  });
});
