/**
 * Several server processes as one, on a private redis-server: each node is a child process
 * (test-support/cluster-node.ts) so one can die by SIGKILL. The router's cross-transport cases run
 * with the sender on one node and the recipients on another; a client moves between nodes through
 * a TCP forwarder standing in for a load balancer (test-support/tcp-proxy.ts). Real sockets, real
 * Redis; where redis-server is absent the suite skips and says why.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeClientOptions } from '../transports/node-client.ts';
import type { TransportName } from '../transports/transport.ts';
import { deliverEveryKind, END_MARKER, InboxClients, sinceMark, type Connected } from '../test-support/clients.ts';
import { REDIS_MISSING, startRedis, type TestRedis } from '../test-support/redis.ts';
import { waitFor } from '../test-support/servers.ts';
import { startTcpProxy, type TcpProxy } from '../test-support/tcp-proxy.ts';
import { startServer, type ClusterOptions } from './index.ts';
import type { RouterOptions } from './router.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const TRANSPORTS: TransportName[] = ['websocket', 'long-polling', 'polling', 'webtransport'];

interface Node {
  child: ChildProcess;
  port: number;
  url: string;
  node: string;
  /** What it logged on stderr so far. */
  log: () => string;
}

/** A cluster node in its own process, resolved once it listens. */
function startNode(redis: TestRedis, router: RouterOptions = {}, cluster: Omit<ClusterOptions, 'redis'> = {}): Promise<Node> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test-support/cluster-node.ts'), JSON.stringify({ redis: redis.url, router, cluster })], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  return new Promise((resolve, reject) => {
    let errors = '';
    child.stderr!.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    child.stdout!.once('data', (line: Buffer) => {
      const { port, node } = JSON.parse(line.toString()) as { port: number; node: string };
      resolve({ child, port, node, url: `http://127.0.0.1:${port}`, log: () => errors });
    });
    child.once('exit', (code) => reject(new Error(`cluster node exited with ${code}: ${errors}`)));
  });
}

async function stopNode(node: Node, signal: 'SIGKILL' | 'SIGTERM' = 'SIGTERM'): Promise<void> {
  if (node.child.exitCode !== null || node.child.signalCode !== null) return;
  const exited = new Promise((resolve) => node.child.once('exit', resolve));
  node.child.kill(signal);
  await exited;
}

describe.skipIf(REDIS_MISSING !== undefined)(`cluster on Redis${REDIS_MISSING ? ` (skipped: ${REDIS_MISSING})` : ''}`, () => {
  let redis: TestRedis;
  let a: Node;
  let b: Node;
  const clients = new InboxClients();
  const nodes: Node[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    [a, b] = await Promise.all([startNode(redis), startNode(redis)]);
    nodes.push(a, b);
  }, 60_000);
  afterAll(async () => {
    clients.close();
    await Promise.all(nodes.map((node) => stopNode(node)));
    await redis?.close();
  });

  function connect(url: string, transport: TransportName, options: Partial<NodeClientOptions> = {}): Promise<Connected> {
    return clients.connect({ url, transports: transport, ackTimeoutMs: 500, ...options });
  }

  /** A websocket client that reaches a node through `proxy` (pointed elsewhere to move it), and what each of its resumes recovered. */
  async function moverThrough(proxy: TcpProxy): Promise<{ mover: Connected; recovered: boolean[] }> {
    const mover = await connect(`http://127.0.0.1:${proxy.port}`, 'websocket');
    const recovered: boolean[] = [];
    mover.client.on('recovery', (complete) => recovered.push(complete));
    return { mover, recovered };
  }

  describe.each(TRANSPORTS)('sender on %s at node A, recipients at node B', (senderTransport) => {
    it('broadcasts, unicasts, multicasts and publishes to clients on every transport; receipts come back across', async () => {
      const sender = await connect(a.url, senderTransport);
      const peers = await Promise.all(TRANSPORTS.map((t) => connect(b.url, t)));
      const receipts: [string, string][] = [];
      sender.client.on('receipt', (id, from) => receipts.push([id, from]));
      const { got, roomMessageId: confirmed } = await deliverEveryKind(sender, peers, senderTransport, { receipt: true });
      // Room and topic deliveries carry their history offset.
      for (const d of got.flat()) if (d.kind === 'room' || d.kind === 'topic') expect(d.offset).toMatch(/^\d+-\d+$/);
      await expect(sender.client.send('nobody-has-this-id', 'x', { ack: true })).rejects.toMatchObject({ code: 'ERR_UNKNOWN_CLIENT' });
      // Every room member (on node B) confirmed the room message to its sender (on node A).
      const roomMembers = peers.filter((_, i) => i % 2 === 0).map((p) => p.client.id!);
      await waitFor(() => receipts.filter(([id]) => id === confirmed).length === roomMembers.length, 10_000, 'recipient receipts');
      expect(receipts.filter(([id]) => id === confirmed).map(([, from]) => from).sort()).toEqual([...roomMembers].sort());
    });
  });

  /** Resolves once `check` holds (polled: /info is asked, nothing announces it). */
  async function until(check: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async function reachable(node: Node): Promise<boolean> {
    const info = (await (await fetch(`${node.url}/info`)).json()) as { cluster: { connected: boolean } };
    return info.cluster.connected;
  }

  it('a client that reconnects to another node recovers exactly the room messages it missed, in order, then live ones', async () => {
    const proxy = await startTcpProxy(a.port);
    try {
      const { mover, recovered } = await moverThrough(proxy);
      const sender = await connect(b.url, 'long-polling');
      const id = mover.client.id;
      await mover.client.join('recovery');
      for (let i = 0; i < 5; i++) await sender.client.multicast({ room: 'recovery' }, `m${i}`, { ack: true });
      await waitFor(() => mover.inbox.length === 5, 10_000, 'the first five');
      // Node A becomes unreachable for the mover (its connection cut, the balancer refusing) while 20 more are sent.
      const away = new Promise<void>((resolve) => mover.client.on('state', (state) => state === 'reconnecting' && resolve()));
      proxy.pointAt(1);
      proxy.cutAll();
      await away;
      for (let i = 5; i < 25; i++) await sender.client.multicast({ room: 'recovery' }, `m${i}`, { ack: true });
      proxy.pointAt(b.port);
      await waitFor(() => recovered.length === 1, 15_000, 'the resume');
      await sender.client.multicast({ room: 'recovery' }, 'live', { ack: true });
      await waitFor(() => mover.inbox.some((d) => d.data === 'live'), 10_000, 'the live message');
      expect(recovered).toEqual([true]);
      expect(mover.client.id).toBe(id);
      expect(mover.inbox.map((d) => d.data)).toEqual([...Array.from({ length: 25 }, (_, i) => `m${i}`), 'live']);
    } finally {
      await proxy.close();
    }
  });

  it('a member that got nothing yet resumes on another node from the offset its join ack named (an empty stream gets a start entry to point at)', async () => {
    const proxy = await startTcpProxy(a.port);
    try {
      const { mover, recovered } = await moverThrough(proxy);
      const sender = await connect(b.url, 'websocket');
      await mover.client.join('quiet');
      const away = new Promise<void>((resolve) => mover.client.on('state', (state) => state === 'reconnecting' && resolve()));
      proxy.pointAt(1);
      proxy.cutAll();
      await away;
      await sender.client.multicast({ room: 'quiet' }, 'while away', { ack: true });
      proxy.pointAt(b.port);
      await waitFor(() => recovered.length === 1, 15_000, 'the resume');
      expect(recovered).toEqual([true]);
      await waitFor(() => mover.inbox.length === 1, 10_000, 'the missed message');
      expect(mover.inbox.map((d) => d.data)).toEqual(['while away']);
    } finally {
      await proxy.close();
    }
  });

  it('kill -9 of the sender\'s node with 2000 acknowledged messages in flight: the receiver on another node has each exactly once', async () => {
    const doomed = await startNode(redis);
    nodes.push(doomed);
    const proxy = await startTcpProxy(doomed.port);
    try {
      const receiver = await connect(b.url, 'websocket');
      await receiver.client.join('durable');
      const sender = await connect(`http://127.0.0.1:${proxy.port}`, 'websocket', { ackTimeoutMs: 1_000, maxAttempts: 10 });
      const sends = Array.from({ length: 2000 }, (_, i) => sender.client.multicast({ room: 'durable' }, i, { ack: true }));
      await waitFor(() => receiver.inbox.length >= 300, 30_000, 'the first deliveries');
      proxy.pointAt(b.port);
      await stopNode(doomed, 'SIGKILL');
      const outcomes = await Promise.allSettled(sends);
      expect(outcomes.filter((o) => o.status === 'rejected')).toEqual([]);
      // The end marker goes the same way (the room's stream): once it is in, everything before it is.
      await sender.client.multicast({ room: 'durable' }, END_MARKER, { ack: true });
      await waitFor(() => receiver.inbox.some((d) => d.data === END_MARKER), 10_000, 'the end marker');
      const counts = new Map<number, number>();
      for (const d of sinceMark(receiver.inbox, 0, sender.client.id!)) counts.set(d.data as number, (counts.get(d.data as number) ?? 0) + 1);
      const lost = Array.from({ length: 2000 }, (_, i) => i).filter((i) => !counts.has(i));
      const duplicated = [...counts].filter(([, n]) => n > 1);
      expect({ lost: lost.length, duplicated: duplicated.length }).toEqual({ lost: 0, duplicated: 0 });
      // It was a real crash mid-stream: some arrived before it, and the sender resumed on node B.
      expect(receiver.inbox.length).toBeGreaterThanOrEqual(2000);
    } finally {
      await proxy.close();
    }
  }, 120_000);

  /** Stops a node's process (SIGSTOP) until `resume` (SIGCONT): a node that reads nothing for a while, without dying. */
  function pause(node: Node): () => void {
    node.child.kill('SIGSTOP');
    return () => void node.child.kill('SIGCONT');
  }

  it('a burst larger than the history reaches a receiver on another node completely (its node stalled meanwhile); a resume meanwhile gets only the newest of the history, told recovered: false; the stream is trimmed back once read', async () => {
    // Default history (1000): live nodes are not bounded by it. The stalled node's own liveness timeout outlasts the stall.
    const slow = await startNode(redis, {}, { nodeTimeoutMs: 60_000 });
    nodes.push(slow);
    const store = new Redis(redis.url);
    const proxy = await startTcpProxy(a.port);
    try {
      const receiver = await connect(slow.url, 'websocket');
      await receiver.client.join('burst');
      const sender = await connect(a.url, 'websocket');
      // A second member goes away before the burst, and resumes while the stream holds more than the history.
      const { mover, recovered } = await moverThrough(proxy);
      await mover.client.join('burst');
      const away = new Promise<void>((resolve) => mover.client.on('state', (state) => state === 'reconnecting' && resolve()));
      proxy.pointAt(1);
      proxy.cutAll();
      await away;
      const burst = 3000;
      const resume = pause(slow);
      try {
        await Promise.all(Array.from({ length: burst }, (_, i) => sender.client.multicast({ room: 'burst' }, i, { ack: true })));
        // Every one is acknowledged while the receiver's node read nothing: more than the history holds.
        expect(await store.xlen('sy:s:room:burst')).toBeGreaterThanOrEqual(burst);
        // A resume is bounded by the history, not by what the stalled node holds back: the newest 1000 + 128, and told so.
        proxy.pointAt(b.port);
        await waitFor(() => recovered.length === 1, 15_000, 'the resume');
        expect(recovered).toEqual([false]);
        await waitFor(() => mover.inbox.length >= 1128, 15_000, 'the recovered messages');
        expect(mover.inbox.map((d) => d.data)).toEqual(Array.from({ length: 1128 }, (_, i) => burst - 1128 + i));
      } finally {
        resume();
      }
      await sender.client.multicast({ room: 'burst' }, END_MARKER, { ack: true });
      await waitFor(() => receiver.inbox.some((d) => d.data === END_MARKER), 30_000, 'the end marker');
      expect(sinceMark(receiver.inbox, 0, sender.client.id!).map((d) => d.data)).toEqual(Array.from({ length: burst }, (_, i) => i));
      expect(slow.log()).not.toMatch(/fell behind/);
      // Once read, the next messages trim it back to the history's length (approximate trimming: whole stream nodes of 100).
      await until(async () => {
        await sender.client.multicast({ room: 'burst' }, 'tick', { ack: true });
        return (await store.xlen('sy:s:room:burst')) <= 1000 + 100;
      }, 'the stream to be trimmed to its history');
    } finally {
      store.disconnect();
      await proxy.close();
      await stopNode(slow);
    }
  }, 120_000);

  it('a client resuming with offsets older than the history gets recovered: false and what there is, in order, no duplicates', async () => {
    const proxy = await startTcpProxy(a.port);
    try {
      const { mover, recovered } = await moverThrough(proxy);
      const sender = await connect(b.url, 'websocket');
      await mover.client.join('window');
      await sender.client.multicast({ room: 'window' }, -1, { ack: true });
      await waitFor(() => mover.inbox.length === 1, 10_000, 'the first message');
      const away = new Promise<void>((resolve) => mover.client.on('state', (state) => state === 'reconnecting' && resolve()));
      proxy.pointAt(1);
      proxy.cutAll();
      await away;
      // More than the history (1000) while it is away, until its last offset is trimmed (a node
      // still reading the room, its old one, holds back trimming until it has read).
      const store = new Redis(redis.url);
      let missed = 0;
      try {
        const offset = mover.inbox[0]!.offset!;
        while (missed < 1300 || (await store.xrange('sy:s:room:window', offset, offset)).length > 0) {
          await Promise.all(Array.from({ length: 100 }, (_, i) => sender.client.multicast({ room: 'window' }, missed + i, { ack: true })));
          missed += 100;
        }
      } finally {
        store.disconnect();
      }
      proxy.pointAt(b.port);
      await waitFor(() => recovered.length === 1, 15_000, 'the resume');
      await sender.client.multicast({ room: 'window' }, 'live', { ack: true });
      await waitFor(() => mover.inbox.some((d) => d.data === 'live'), 10_000, 'the live message');
      expect(recovered).toEqual([false]);
      const got = mover.inbox.slice(1, -1).map((d) => d.data as number);
      // What the history still held: the newest, in order, each once, and not all of them.
      expect(got.length).toBeGreaterThanOrEqual(1000);
      expect(got.length).toBeLessThan(missed);
      expect(got).toEqual(Array.from({ length: got.length }, (_, i) => missed - got.length + i));
    } finally {
      await proxy.close();
    }
  }, 60_000);

  it('a node stalled past the backlog is told it fell behind: its members are closed (4011), resume, and hear recovered: false', async () => {
    // The publishing node trims past a reader more than 200 entries behind (history 100).
    const publisher = await startServer({ port: 0, certificate: 'none', cluster: { redis: redis.url, maxBacklog: 200 }, router: { history: { maxLength: 100 } } });
    const stalled = await startNode(redis, { history: { maxLength: 100 } }, { nodeTimeoutMs: 60_000 });
    nodes.push(stalled);
    try {
      const receiver = await connect(stalled.url, 'websocket');
      const recovered: boolean[] = [];
      receiver.client.on('recovery', (complete) => recovered.push(complete));
      await receiver.client.join('behind');
      const sender = await connect(publisher.urls.http, 'websocket');
      await sender.client.multicast({ room: 'behind' }, -1, { ack: true });
      await waitFor(() => receiver.inbox.length === 1, 10_000, 'the first message');
      const total = 1500;
      const resume = pause(stalled);
      try {
        await Promise.all(Array.from({ length: total }, (_, i) => sender.client.multicast({ room: 'behind' }, i, { ack: true })));
      } finally {
        resume();
      }
      await waitFor(() => recovered.length === 1, 20_000, 'the resume after the fall-behind');
      await sender.client.multicast({ room: 'behind' }, 'live', { ack: true });
      await waitFor(() => receiver.inbox.some((d) => d.data === 'live'), 10_000, 'the live message');
      expect(stalled.log()).toMatch(/fell behind room:behind/);
      expect(recovered).toEqual([false]);
      const got = receiver.inbox.slice(1, -1).map((d) => d.data as number);
      expect(got.length).toBeLessThan(total);
      expect(new Set(got).size).toBe(got.length);
      expect(got).toEqual([...got].sort((x, y) => x - y));
    } finally {
      await publisher.close();
      await stopNode(stalled);
    }
  }, 60_000);

  it('Redis restart: nodes keep serving their own clients, refuse acknowledged sends with a typed error, say so, and resynchronise', async () => {
    const [x1, x2] = await Promise.all([connect(a.url, 'websocket'), connect(a.url, 'polling')]);
    const y = await connect(b.url, 'websocket');
    await Promise.all([x1.client.join('outage'), x2.client.join('outage'), y.client.join('outage')]);
    await redis.stop();
    await until(async () => !(await reachable(a)), 'node A to notice');
    expect(a.log()).toMatch(/Redis connection lost/);
    await expect(x1.client.multicast({ room: 'outage' }, 'acked', { ack: true })).rejects.toMatchObject({ code: 'ERR_CLUSTER_UNAVAILABLE' });
    await x1.client.multicast({ room: 'outage' }, 'local only');
    await waitFor(() => x2.inbox.some((d) => d.data === 'local only'), 10_000, 'a local delivery without Redis');

    await redis.restart();
    await until(async () => (await reachable(a)) && (await reachable(b)), 'both nodes to reconnect');
    expect(a.log()).toMatch(/Redis connection back/);
    await x1.client.multicast({ room: 'outage' }, 'after', { ack: true });
    await waitFor(() => y.inbox.some((d) => d.data === 'after') && x2.inbox.some((d) => d.data === 'after'), 10_000, 'cross-node delivery after the restart');
    // Sessions were written again: a unicast from node B to a client of node A finds it.
    await y.client.send(x1.client.id!, 'found you', { ack: true });
    await waitFor(() => x1.inbox.some((d) => d.data === 'found you'), 10_000, 'the unicast');
    expect(x1.inbox.filter((d) => d.data === 'acked')).toEqual([]);
  }, 60_000);

  it('presence across nodes: joins and leaves reach other nodes, and a killed node\'s clients leave after its timeout', async () => {
    // An observer node in this process, to listen to its events; the member's node is a child to kill.
    const observer = await startServer({ port: 0, certificate: 'none', cluster: { redis: redis.url } });
    // Found dead 1.5 s after its last beat (its own nodeTimeoutMs sets how long its liveness key lives).
    const doomed = await startNode(redis, {}, { nodeTimeoutMs: 1_500 });
    nodes.push(doomed);
    const store = new Redis(redis.url);
    try {
      const changes: string[] = [];
      observer.on('presence', (room, clientId, change) => room === 'presence' && changes.push(`${change} ${clientId}`));
      const local = await connect(observer.urls.http, 'websocket');
      await local.client.join('presence');
      const remote = await connect(doomed.url, 'long-polling');
      const leaver = await connect(doomed.url, 'websocket');
      await remote.client.join('presence');
      await leaver.client.join('presence');
      await leaver.client.leave('presence');
      await waitFor(() => changes.length === 4, 10_000, 'join and leave events');
      expect(changes).toEqual([`join ${local.client.id}`, `join ${remote.client.id}`, `join ${leaver.client.id}`, `leave ${leaver.client.id}`]);
      expect((await observer.presence('presence')).sort()).toEqual([local.client.id, remote.client.id].sort());

      // A crash, not a goodbye: the member's client stays, trying to reconnect to a dead node.
      await stopNode(doomed, 'SIGKILL');
      const killed = Date.now();
      await waitFor(() => changes.length >= 5, 40_000, `the dead node's member to leave (${JSON.stringify(changes)})`);
      console.log(`presence healed ${Date.now() - killed} ms after the kill`);
      expect(changes.slice(4)).toEqual([`leave ${remote.client.id}`]);
      expect(await observer.presence('presence')).toEqual([local.client.id]);
      // The reaper deleted its inbox and its reader records: nothing of it is left to hold the streams back.
      expect(await store.exists(`sy:i:${doomed.node}`, `sy:nw:${doomed.node}`)).toBe(0);
      expect(await store.hexists('sy:r:room:presence', doomed.node)).toBe(0);
    } finally {
      store.disconnect();
      await observer.close();
    }
  }, 90_000);

  it('presence on a node whose first member joins after the others: the full list at once, and later changes as events', async () => {
    const early = await Promise.all([connect(a.url, 'websocket'), connect(b.url, 'polling')]);
    await Promise.all(early.map((c) => c.client.join('late')));
    // A node that had no member of the room (so read nothing of its stream) until now.
    const late = await startServer({ port: 0, certificate: 'none', cluster: { redis: redis.url } });
    try {
      const changes: string[] = [];
      late.on('presence', (room, clientId, change) => room === 'late' && changes.push(`${change} ${clientId}`));
      const newcomer = await connect(late.urls.http, 'websocket');
      await newcomer.client.join('late');
      expect((await late.presence('late')).sort()).toEqual([...early, newcomer].map((c) => c.client.id).sort());
      await early[0]!.client.leave('late');
      await waitFor(() => changes.includes(`leave ${early[0]!.client.id}`), 10_000, 'the leave event');
      expect(changes).toEqual([`join ${newcomer.client.id}`, `leave ${early[0]!.client.id}`]);
      expect((await late.presence('late')).sort()).toEqual([early[1]!, newcomer].map((c) => c.client.id).sort());
    } finally {
      await late.close();
    }
  });

  it('a node taken for dead while alive (stalled past its timeout) registers again: its member is announced again and still gets messages', async () => {
    const observer = await startServer({ port: 0, certificate: 'none', cluster: { redis: redis.url } });
    const stalled = await startNode(redis, {}, { nodeTimeoutMs: 1_000 });
    nodes.push(stalled);
    try {
      const changes: string[] = [];
      observer.on('presence', (room, clientId, change) => room === 'revive' && changes.push(`${change} ${clientId}`));
      const local = await connect(observer.urls.http, 'websocket');
      await local.client.join('revive');
      const member = await connect(stalled.url, 'websocket');
      await member.client.join('revive');
      await waitFor(() => changes.includes(`join ${member.client.id}`), 10_000, 'the join');
      const resume = pause(stalled);
      try {
        await waitFor(() => changes.includes(`leave ${member.client.id}`), 20_000, 'the stalled node to be taken for dead');
      } finally {
        resume();
      }
      await waitFor(() => changes.filter((c) => c === `join ${member.client.id}`).length === 2, 10_000, 'the member announced again');
      expect(stalled.log()).toMatch(/taken for dead/);
      expect((await observer.presence('revive')).sort()).toEqual([local.client.id, member.client.id].sort());
      await local.client.multicast({ room: 'revive' }, 'still here?', { ack: true });
      await waitFor(() => member.inbox.some((d) => d.data === 'still here?'), 10_000, 'a message after the revival');
    } finally {
      await observer.close();
      await stopNode(stalled);
    }
  }, 60_000);

  it('/info names the node and says Redis is reachable', async () => {
    const info = (await (await fetch(`${a.url}/info`)).json()) as { cluster: { engine: string; node: string; connected: boolean } };
    expect(info.cluster).toEqual({ engine: 'redis', node: a.node, connected: true });
  });
});
