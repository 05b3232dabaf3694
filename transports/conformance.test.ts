/**
 * The conformance suite: the same cases for every transport, over real sockets on loopback.
 * Part 1 talks to a transport-level echo server through bare Connections; part 2 runs clients
 * through the full server and router, mixing transports. A new transport joins by adding its
 * connector to `nodeConnectors` (and its server to the echo server / startServer).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { startServer, type SwitchyardServer } from '../server/index.ts';
import { ALL_TRANSPORTS as TRANSPORTS, deliverEveryKind, endMarker, InboxClients, nodeConnectors, sinceMark, type Connected } from '../test-support/clients.ts';
import { collect, startEchoServer, waitFor, type EchoServer } from '../test-support/servers.ts';
import type { Connection, SendOutcome, SlowConsumerPolicy, TransportName } from './transport.ts';


/**
 * What each stack lets a connection measure by itself: long-polling and polling time their
 * requests, QUIC reports its RTT and losses; a WebSocket hides both (the client core's heartbeat
 * measures RTT instead). Wire bytes (framing and headers included), per side: the WebSocket client
 * computes its frames, the servers read their sockets; fetch hides the HTTP client's bytes.
 */
const STACK_MEASURES: Record<TransportName, { rtt: boolean; losses: boolean; wire: { client: boolean; server: boolean } }> = {
  websocket: { rtt: false, losses: false, wire: { client: true, server: true } },
  'long-polling': { rtt: true, losses: false, wire: { client: false, server: true } },
  polling: { rtt: true, losses: false, wire: { client: false, server: true } },
  webtransport: { rtt: true, losses: true, wire: { client: true, server: true } },
  // getStats(): the selected candidate pair's RTT and bytes; SCTP's losses and retransmissions are not reported.
  webrtc: { rtt: true, losses: false, wire: { client: true, server: true } },
};

/**
 * Cases a transport cannot run, and why: the case calls `skipUnsupported` and is reported skipped
 * with this reason.
 */
const CANNOT: Partial<Record<TransportName, Partial<Record<'stop reading', string>>>> = {
  webrtc: { 'stop reading': 'an RTCDataChannel cannot stop reading: the API has no receive-side flow control, so SCTP keeps taking data' },
};

function skipUnsupported(context: TestContext, name: TransportName, what: 'stop reading'): void {
  const reason = CANNOT[name]?.[what];
  if (reason) context.skip(`${name}: ${reason}`);
}

/** Resolves false after `ms`: the deadline of a wait on an event that may not come (a lost datagram). */
function overdue(ms: number): Promise<false> {
  return new Promise((resolve) => setTimeout(() => resolve(false), ms));
}

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

  it('counts messages and bytes in its stats, and the RTT and losses its stack can measure', async () => {
    const started = Date.now();
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
    const measures = STACK_MEASURES[name];
    if (measures.rtt) {
      // Whole milliseconds (0 is a real loopback value), never more than this test has lasted.
      expect(Number.isFinite(stats.rttMs)).toBe(true);
      expect(stats.rttMs).toBeGreaterThanOrEqual(0);
      expect(stats.rttMs).toBeLessThanOrEqual(Date.now() - started);
    } else expect(stats.rttMs).toBeNull();
    if (measures.losses) {
      expect(Number.isInteger(stats.packetsLost)).toBe(true);
      expect(Number.isInteger(stats.packetsRetransmitted)).toBe(true);
    } else {
      expect(stats.packetsLost).toBeNull();
      expect(stats.packetsRetransmitted).toBeNull();
    }
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
      // Datagrams may be lost even on loopback: send another each time an echo is overdue.
      const echoed = new Promise<true>((resolve) => connection.on('message', (_message, lane) => void (lane === 'unreliable' && resolve(true))));
      for (let attempt = 0; attempt < 50; attempt++) {
        connection.send(Uint8Array.of(attempt), 'unreliable');
        if (await Promise.race([echoed, overdue(100)])) break;
      }
      expect(received.find(([, lane]) => lane === 'unreliable')?.[0]).toBeInstanceOf(Uint8Array);
    } else {
      expect(() => connection.send('x', 'unreliable')).toThrow(expect.objectContaining({ code: 'ERR_LANE_UNSUPPORTED' }));
    }
    connection.close();
  });

  it('with laneFallback reliable, sends a lane it lacks on the reliable lane and counts it; a lane it has is never downgraded', async () => {
    // (Refusal without laneFallback is the case above.)
    const lenient = nodeConnectors[name]!({ url: server.url, laneFallback: 'reliable' });
    const received: [string | Uint8Array, string][] = [];
    lenient.on('message', (message, lane) => received.push([message, lane]));
    await lenient.opened;
    const { unreliable, independentChannels } = lenient.capabilities;
    lenient.send('z', 'channel:moves');
    // A datagram that would be honoured may be lost: only a downgraded one is sure to come back.
    if (!unreliable) lenient.send('y', 'unreliable');
    await waitFor(() => received.length === (unreliable ? 1 : 2), 10_000, 'echoes');
    expect(received).toContainEqual(['z', independentChannels ? 'channel:moves' : 'reliable']);
    if (!unreliable) expect(received).toContainEqual(['y', 'reliable']);
    expect(lenient.stats().laneDowngrades).toBe((independentChannels ? 0 : 1) + (unreliable ? 0 : 1));
    lenient.close();
  });
});

/**
 * The slow-consumer policies and the wire counters, on the server side of every transport: the
 * policy is the base connection's, but what reaches the client (the 4008 with its reason, which
 * messages survive a drop, a drain that waits for the wire) is each transport's.
 */
describe.each(TRANSPORTS)('slow-consumer policies and wire stats: %s', (name) => {
  const MESSAGE = 1000;
  /** Room for four messages: the fifth meets the policy. */
  const LIMITS = { highWaterMark: 2 * MESSAGE, maxQueuedBytes: 4 * MESSAGE };
  const servers: EchoServer[] = [];
  afterEach(async () => {
    for (const server of servers.splice(0)) await server.close();
  });

  /** An echo server whose connections use `policy`, a client, and that client's server side, both open. */
  async function pair(policy: SlowConsumerPolicy, limits: { highWaterMark: number; maxQueuedBytes: number } = LIMITS) {
    const server = await startEchoServer({ pollTimeoutMs: 5_000, backpressure: { ...limits, policy } });
    servers.push(server);
    const client = open(name, server.url);
    const received = collect(client);
    await client.opened;
    await waitFor(() => server.connections[0]?.state === 'open', 10_000, 'the server side to open');
    return { server, client, received, serverSide: server.connections[0]! };
  }

  /** Numbered messages of MESSAGE bytes, sent in one turn: no flush can run between them. */
  function burst(connection: Connection, count = 10): SendOutcome[] {
    return Array.from({ length: count }, (_, i) => connection.send(String(i).padEnd(MESSAGE, '.')));
  }

  /** Sends `marker` after whatever was sent before, and waits until the client has it: nothing sent earlier arrives later. */
  async function upToMarker(serverSide: Connection, received: (string | Uint8Array)[], marker = 'end'): Promise<string[]> {
    await serverSide.drained();
    expect(serverSide.send(marker)).toBe('queued');
    await waitFor(() => received.includes(marker), 10_000, 'the end marker');
    return received.slice(0, received.indexOf(marker)).map((m) => (m as string)[0]!);
  }

  it("'drop-newest' keeps the oldest messages, drops the rest and counts them", async () => {
    const { serverSide, received } = await pair('drop-newest');
    expect(burst(serverSide)).toEqual([...Array(4).fill('queued'), ...Array(6).fill('dropped')]);
    expect(serverSide.stats().dropped).toBe(6);
    expect(await upToMarker(serverSide, received)).toEqual(['0', '1', '2', '3']);
  });

  it("'drop-oldest' keeps the newest messages, drops the rest and counts them", async () => {
    const { serverSide, received } = await pair('drop-oldest');
    expect(burst(serverSide).every((outcome) => outcome === 'queued')).toBe(true);
    expect(serverSide.stats().dropped).toBe(6);
    expect(await upToMarker(serverSide, received)).toEqual(['6', '7', '8', '9']);
  });

  it("'wait' refuses past the limit, drained() waits for the wire, and nothing is lost", async () => {
    const { serverSide, received } = await pair('wait');
    expect(burst(serverSide)).toEqual([...Array(4).fill('queued'), ...Array(6).fill('refused')]);
    expect(serverSide.writable).toBe(false);
    await serverSide.drained();
    expect(serverSide.writable).toBe(true);
    expect(await upToMarker(serverSide, received)).toEqual(['0', '1', '2', '3']);
    expect(serverSide.stats().dropped).toBe(0);
  });

  it('a close comes after everything sent before it: queued and in-flight messages all arrive, in order, then the close', async () => {
    const { client, serverSide, received } = await pair('wait', { highWaterMark: 1024 * 1024, maxQueuedBytes: 16 * 1024 * 1024 });
    // Some already on the wire, some still queued when close() is called in the same turn.
    const early = Array.from({ length: 50 }, (_, i) => `early ${i} `.padEnd(8 * 1024, '.'));
    for (const message of early) expect(serverSide.send(message)).toBe('queued');
    await new Promise((resolve) => setImmediate(resolve));
    const late = Array.from({ length: 50 }, (_, i) => `late ${i} `.padEnd(8 * 1024, '.'));
    for (const message of late) expect(serverSide.send(message)).toBe('queued');
    serverSide.close(4000, 'done');
    expect(await client.closed).toMatchObject({ code: 4000, reason: 'done' });
    expect(received).toEqual([...early, ...late]);
    expect(serverSide.stats().dropped).toBe(0);
  });

  it("a client's close comes after everything it sent: the server gets every message, in order, then the close", async () => {
    const { client, serverSide } = await pair('wait', { highWaterMark: 1024 * 1024, maxQueuedBytes: 16 * 1024 * 1024 });
    const got = collect(serverSide);
    const sent = Array.from({ length: 100 }, (_, i) => `from client ${i} `.padEnd(8 * 1024, '.'));
    for (const message of sent.slice(0, 50)) expect(client.send(message)).toBe('queued');
    await new Promise((resolve) => setImmediate(resolve));
    for (const message of sent.slice(50)) expect(client.send(message)).toBe('queued');
    client.close(4001, 'leaving');
    expect(await serverSide.closed).toMatchObject({ code: 4001, reason: 'leaving' });
    expect(got).toEqual(sent);
  });

  it("'disconnect' closes with 4008 and its reason on both sides; every queued message is sent or counted dropped", async () => {
    const { client, serverSide, received } = await pair('disconnect');
    expect(burst(serverSide, 5)).toEqual([...Array(4).fill('queued'), 'disconnected']);
    const [serverInfo, clientInfo] = await Promise.all([serverSide.closed, client.closed]);
    expect(serverInfo).toMatchObject({ code: 4008, reason: expect.stringMatching(/slow consumer/) });
    expect(clientInfo).toMatchObject({ code: 4008, reason: expect.stringMatching(/slow consumer/) });
    const stats = serverSide.stats();
    expect(stats.messagesOut + stats.dropped).toBe(4);
    const got = received.map((m) => (m as string)[0]);
    // What was sent arrived, in order.
    expect(got).toEqual(['0', '1', '2', '3'].slice(0, stats.messagesOut));
  });

  it("a client that stops reading holds the server back until its 'disconnect' policy cuts it with 4008", async (context) => {
    skipUnsupported(context, name, 'stop reading');
    const chunk = new Uint8Array(64 * 1024);
    const { client, serverSide } = await pair('disconnect', { highWaterMark: 256 * 1024, maxQueuedBytes: 1024 * 1024 });
    client.pauseReading();
    // One chunk per turn, so the wire takes what it can between sends: only a reader that stopped
    // (and flow control that reaches the server) lets the queue grow to its limit.
    let outcome: SendOutcome = 'queued';
    let sent = 0;
    while (outcome === 'queued' && sent < 20_000) {
      outcome = serverSide.send(chunk);
      sent++;
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(outcome).toBe('disconnected');
    expect((await serverSide.closed).code).toBe(4008);
    client.resumeReading();
    const info = await client.closed;
    // The close reaches a reader that resumes, unless the server gave up waiting for it first.
    expect([4008, 1006]).toContain(info.code);
  }, 60_000);

  it('counts wire bytes where the stack shows them: at least the payload each way', async () => {
    const { client, serverSide, received } = await pair('wait', { highWaterMark: 1024 * 1024, maxQueuedBytes: 16 * 1024 * 1024 });
    const measures = STACK_MEASURES[name];
    client.send('x');
    client.send(new Uint8Array(10_000));
    await waitFor(() => received.length === 2, 10_000, 'the echoes');
    const payload = client.stats();
    expect([payload.bytesOut, payload.bytesIn, serverSide.stats().bytesIn, serverSide.stats().bytesOut]).toEqual([10_001, 10_001, 10_001, 10_001]);
    // Payload plus framing (and headers where the side sees them). WebRTC's come from getStats(),
    // sampled: they catch up within a sample's age.
    const covers = (side: Connection) => (side.stats().wireBytesOut ?? 0) >= 10_001 && (side.stats().wireBytesIn ?? 0) >= 10_001;
    if (measures.wire.client) await waitFor(() => covers(client), 5_000, "the client's wire counters to cover the payload");
    else expect([payload.wireBytesIn, payload.wireBytesOut]).toEqual([null, null]);
    if (measures.wire.server) await waitFor(() => covers(serverSide), 5_000, "the server's wire counters to cover the payload");
    else expect([serverSide.stats().wireBytesIn, serverSide.stats().wireBytesOut]).toEqual([null, null]);
  });
});

describe('router over mixed transports', () => {
  let server: SwitchyardServer;
  const clients = new InboxClients();
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
    clients.close();
    await server.close();
  });

  function connect(transport: TransportName): Promise<Connected> {
    return clients.connect({ url: server.urls.http, transports: transport, ackTimeoutMs: 200 });
  }

  describe.each(TRANSPORTS)('sender on %s', (senderTransport) => {
    it('broadcasts, unicasts, multicasts and publishes to clients on every transport', async () => {
      const sender = await connect(senderTransport);
      const peers = await Promise.all(TRANSPORTS.map((t) => connect(t)));
      await deliverEveryKind(sender, peers, senderTransport);
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
      await endMarker(sender, [receiver]);
      expect(sinceMark(receiver.inbox, 0, sender.client.id!).map((d) => d.data).sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
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
