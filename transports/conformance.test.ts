/**
 * The conformance suite: the same cases for every transport, over real sockets on loopback.
 * Part 1 talks to a transport-level echo server through bare Connections; part 2 runs clients
 * through the full server and router, mixing transports. A new transport joins by adding its
 * connector to `nodeConnectors` (and its server to the echo server / startServer).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type SwitchyardServer } from '../server/index.ts';
import { collect, startEchoServer, waitFor, type EchoServer } from '../test-support/servers.ts';
import type { Delivery, SwitchyardClient } from './client.ts';
import { createClient, nodeConnectors } from './node-webtransport.ts';
import type { Connection, TransportName } from './transport.ts';

const TRANSPORTS = Object.keys(nodeConnectors) as TransportName[];

function open(name: TransportName, url: string): Connection {
  return nodeConnectors[name]!({ url });
}

describe.each(TRANSPORTS)('transport conformance: %s', (name) => {
  let server: EchoServer;
  beforeAll(async () => {
    server = await startEchoServer({ pollTimeoutMs: 5_000 });
  });
  afterAll(() => server.close());

  it('opens, and a client close reaches the server with code, reason and wasClean', async () => {
    const before = server.connections.length;
    const connection = open(name, server.url);
    await connection.opened;
    expect(connection.state).toBe('open');
    await waitFor(() => server.connections.length > before, 5_000, 'the server side to open');
    const serverSide = server.connections.at(-1)!;
    expect(serverSide.transport).toBe(name);
    connection.close(4001, 'client says bye');
    const [clientInfo, serverInfo] = await Promise.all([connection.closed, serverSide.closed]);
    expect(serverInfo).toEqual({ code: 4001, reason: 'client says bye', wasClean: true });
    expect(clientInfo.code).toBe(4001);
    expect(connection.state).toBe('closed');
  });

  it('a server close reaches the client with code, reason and wasClean', async () => {
    const connection = open(name, server.url);
    await connection.opened;
    connection.send('close:4002:server says bye');
    expect(await connection.closed).toEqual({ code: 4002, reason: 'server says bye', wasClean: true });
  });

  it('echoes text as text and binary as identical bytes', async () => {
    const connection = open(name, server.url);
    const received = collect(connection);
    await connection.opened;
    const bytes = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff);
    connection.send('héllo wörld ✓');
    connection.send(bytes);
    connection.send('');
    connection.send(new Uint8Array(0));
    await waitFor(() => received.length === 4, 10_000, 'echoes');
    expect(received[0]).toBe('héllo wörld ✓');
    expect(received[1]).toBeInstanceOf(Uint8Array);
    expect([...(received[1] as Uint8Array)]).toEqual([...bytes]);
    expect(received[2]).toBe('');
    expect(received[3]).toBeInstanceOf(Uint8Array);
    expect((received[3] as Uint8Array).length).toBe(0);
    connection.close();
  });

  it('keeps order over 10 000 messages', async () => {
    const connection = open(name, server.url);
    const received = collect(connection);
    await connection.opened;
    for (let i = 0; i < 10_000; i++) {
      if (connection.send(String(i)) !== 'queued') await connection.drained();
    }
    await waitFor(() => received.length === 10_000, 20_000, '10 000 echoes');
    expect(received.every((message, i) => message === String(i))).toBe(true);
    connection.close();
  });

  it('carries a 1 MiB message intact', async () => {
    const connection = open(name, server.url);
    const received = collect(connection);
    await connection.opened;
    const big = new Uint8Array(1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
    connection.send(big);
    await waitFor(() => received.length === 1, 20_000, '1 MiB echo');
    expect(Buffer.compare(Buffer.from(received[0] as Uint8Array), Buffer.from(big))).toBe(0);
    connection.close();
  });

  it('serves 100 concurrent clients', async () => {
    const connections = Array.from({ length: 100 }, () => open(name, server.url));
    const inboxes = connections.map(collect);
    await Promise.all(connections.map((c) => c.opened));
    connections.forEach((c, i) => c.send(`client ${i}`));
    await waitFor(() => inboxes.every((inbox) => inbox.length === 1), 20_000, '100 echoes');
    inboxes.forEach((inbox, i) => expect(inbox[0]).toBe(`client ${i}`));
    for (const c of connections) c.close();
    await Promise.all(connections.map((c) => c.closed));
  });

  it('reports queued bytes, turns unwritable above the high-water mark, and drains', async () => {
    const connection = open(name, server.url);
    const received = collect(connection);
    await connection.opened;
    const chunk = new Uint8Array(64 * 1024);
    for (let i = 0; i < 64; i++) expect(connection.send(chunk)).toBe('queued');
    expect(connection.queued.bytes).toBeGreaterThanOrEqual(1024 * 1024);
    expect(connection.queued.messages).toBeGreaterThan(0);
    expect(connection.writable).toBe(false);
    await connection.drained();
    expect(connection.queued.bytes).toBeLessThan(1024 * 1024);
    await waitFor(() => received.length === 64, 20_000, '4 MiB of echoes');
    connection.close();
  });

  it('counts messages and bytes in its stats', async () => {
    const connection = open(name, server.url);
    const received = collect(connection);
    await connection.opened;
    connection.send('12345');
    await waitFor(() => received.length === 1);
    const stats = connection.stats();
    expect(stats.messagesOut).toBe(1);
    expect(stats.messagesIn).toBe(1);
    expect(stats.bytesOut).toBe(5);
    expect(stats.bytesIn).toBe(5);
    // Where the stack reports losses (QUIC), it reports an RTT too (quiche's, in whole ms: 0 on loopback).
    if (stats.packetsLost !== null) expect(stats.rttMs).toBeGreaterThanOrEqual(0);
    connection.close();
  });

  it('carries every lane its capabilities offer, keeps order within a channel, refuses the rest', async () => {
    const connection = open(name, server.url);
    const received: [string | Uint8Array, string][] = [];
    connection.on('message', (message, lane) => received.push([message, lane]));
    await connection.opened;
    const { unreliable, independentChannels, maxUnreliableSize } = connection.capabilities;
    if (independentChannels) {
      for (let i = 0; i < 50; i++) {
        connection.send(`a${i}`, 'channel:a');
        connection.send(`b${i}`, 'channel:b');
      }
      await waitFor(() => received.length === 100, 10_000, 'channel echoes');
      for (const channel of ['a', 'b']) {
        expect(received.filter(([, lane]) => lane === `channel:${channel}`).map(([m]) => m)).toEqual(Array.from({ length: 50 }, (_, i) => `${channel}${i}`));
      }
    } else {
      expect(() => connection.send('x', 'channel:a')).toThrow(expect.objectContaining({ code: 'ERR_LANE_UNSUPPORTED' }));
    }
    if (unreliable) {
      expect(maxUnreliableSize).toBeGreaterThan(1000);
      // Never split or silently dropped when too big: refused at once.
      expect(() => connection.send(new Uint8Array(maxUnreliableSize + 1), 'unreliable')).toThrow(expect.objectContaining({ code: 'ERR_MESSAGE_TOO_LARGE' }));
      // Datagrams may be lost even on loopback: send until one comes back.
      for (let attempt = 0; attempt < 20 && !received.some(([, lane]) => lane === 'unreliable'); attempt++) {
        connection.send(Uint8Array.of(attempt), 'unreliable');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(received.find(([, lane]) => lane === 'unreliable')?.[0]).toBeInstanceOf(Uint8Array);
    } else {
      expect(() => connection.send('x', 'unreliable')).toThrow(expect.objectContaining({ code: 'ERR_LANE_UNSUPPORTED' }));
    }
    connection.close();
  });

  it('refuses the unreliable lane unless asked to downgrade, and then counts it', async () => {
    const strict = open(name, server.url);
    await strict.opened;
    if (strict.capabilities.unreliable) return strict.close();
    expect(() => strict.send('x', 'unreliable')).toThrow(expect.objectContaining({ code: 'ERR_LANE_UNSUPPORTED' }));
    strict.close();
    const lenient = nodeConnectors[name]!({ url: server.url, laneFallback: 'reliable' });
    const received = collect(lenient);
    await lenient.opened;
    lenient.send('y', 'unreliable');
    lenient.send('z', 'channel:moves');
    await waitFor(() => received.length === 2);
    expect(lenient.stats().laneDowngrades).toBe(2);
    lenient.close();
  });
});

describe('router over mixed transports', () => {
  let server: SwitchyardServer;
  const clients: SwitchyardClient[] = [];
  let dropFirstAttempt = false;
  const attempts = new Map<string, number>();

  beforeAll(async () => {
    server = await startServer({
      port: 0,
      certificate: 'ephemeral',
      longPolling: { holdMs: 5_000 },
      router: {
        beforeRoute: (command) => {
          if (!dropFirstAttempt || command.id === undefined || command.t === 'join' || command.t === 'subscribe') return undefined;
          const seen = (attempts.get(command.id) ?? 0) + 1;
          attempts.set(command.id, seen);
          return seen === 1 ? 'drop' : undefined;
        },
      },
    });
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await server.close();
  });

  async function connect(transport: TransportName): Promise<{ client: SwitchyardClient; inbox: Delivery[] }> {
    const client = createClient({ url: server.urls.http, transports: transport, ackTimeoutMs: 200 });
    const inbox: Delivery[] = [];
    client.on('message', (delivery) => inbox.push(delivery));
    await client.connect();
    clients.push(client);
    return { client, inbox };
  }

  describe.each(TRANSPORTS)('sender on %s', (senderTransport) => {
    it('broadcasts, unicasts, multicasts and publishes to clients on every transport', async () => {
      const sender = await connect(senderTransport);
      const peers = await Promise.all(TRANSPORTS.map((t) => connect(t)));
      const room = `room-${senderTransport}`;
      const topic = `topic-${senderTransport}`;
      await Promise.all(peers.map((p, i) => (i % 2 === 0 ? p.client.join(room) : p.client.subscribe(topic))));
      const all = [sender, ...peers];
      const marks = all.map((p) => p.inbox.length);

      await sender.client.broadcast({ hello: 'everyone' }, { ack: true });
      await sender.client.send(peers[0]!.client.id!, Uint8Array.of(1, 2, 3), { ack: true });
      await sender.client.multicast({ room }, 'room only', { ack: true });
      await sender.client.publish(topic, { topic: true }, { ack: true });
      await sender.client.multicast({ ids: [peers[1]!.client.id!, sender.client.id!] }, 'ids', { ack: true });

      await waitFor(() => peers.every((p, i) => p.inbox.length - marks[i + 1]! >= expectedCount(i)), 10_000, 'deliveries');
      await new Promise((resolve) => setTimeout(resolve, 100)); // nothing extra may trickle in
      peers.forEach((peer, i) => {
        const got = peer.inbox.slice(marks[i + 1]).filter((d) => d.from === sender.client.id);
        const kinds = got.map((d) => d.kind);
        expect(kinds.filter((k) => k === 'broadcast')).toHaveLength(1);
        expect(kinds.filter((k) => k === 'send')).toHaveLength(i === 0 ? 1 : 0);
        expect(kinds.filter((k) => k === 'room')).toHaveLength(i % 2 === 0 ? 1 : 0);
        expect(kinds.filter((k) => k === 'topic')).toHaveLength(i % 2 === 1 ? 1 : 0);
        expect(kinds.filter((k) => k === 'ids')).toHaveLength(i === 1 ? 1 : 0);
        const unicast = got.find((d) => d.kind === 'send');
        if (unicast) expect([...(unicast.data as Uint8Array)]).toEqual([1, 2, 3]);
      });
      // The sender hears only the id-list multicast that named it.
      expect(sender.inbox.slice(marks[0]).map((d) => d.kind)).toEqual(['ids']);
      function expectedCount(i: number): number {
        return 1 + (i === 0 ? 1 : 0) + 1 + (i === 1 ? 1 : 0);
      }
    });

    it('acked delivery survives a server that drops the first attempt, exactly once', async () => {
      const sender = await connect(senderTransport);
      const receiver = await connect('websocket');
      dropFirstAttempt = true;
      try {
        await Promise.all(Array.from({ length: 5 }, (_, i) => sender.client.send(receiver.client.id!, `m${i}`, { ack: true })));
      } finally {
        dropFirstAttempt = false;
      }
      await waitFor(() => receiver.inbox.length >= 5);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(receiver.inbox.map((d) => d.data).sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    });

    it('reconnects after the connection drops, keeps its id and rooms, and resends unacked messages', async () => {
      const mover = await connect(senderTransport);
      const listener = await connect('websocket');
      const room = `reconnect-${senderTransport}`;
      await mover.client.join(room);
      await listener.client.join(room);
      const id = mover.client.id;
      // Kill the server side of the mover's connection abnormally.
      const states: string[] = [];
      mover.client.on('state', (s) => states.push(s));
      server.router.clients.get(id!)!.connection!.close(1011, 'test kills the connection');
      const pending = mover.client.multicast({ room }, 'after reconnect', { ack: true });
      await pending;
      expect(states).toContain('reconnecting');
      expect(mover.client.id).toBe(id);
      await waitFor(() => listener.inbox.some((d) => d.data === 'after reconnect'));
      // The room survived: a message to the room from the listener reaches the mover.
      await listener.client.multicast({ room }, 'welcome back', { ack: true });
      await waitFor(() => mover.inbox.some((d) => d.data === 'welcome back'));
    });
  });
});
