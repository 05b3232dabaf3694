/**
 * The router's unit suite: every command, hook and limit, over in-memory connections
 * (test-support/memory-connection.ts) and fake timers. No sockets: what is tested here is the
 * router's logic; the conformance suite runs it over every real transport.
 *
 * `settle()` waits until every queued microtask has run (the fake connections and the router do
 * all their work in microtasks), so "nothing more arrives" is a fact, not a guess.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { decodeEnvelope, encodeEnvelope, type ClientCommand, type Envelope, type ServerEvent } from '../transports/codec/envelope.ts';
import type { CloseInfo, Lane } from '../transports/transport.ts';
import { MemoryConnection, type MemoryConnectionOptions } from '../test-support/memory-connection.ts';
import { Router, type Action, type RouterOptions } from './router.ts';

type Welcome = Extract<ServerEvent, { t: 'welcome' }>;
type Delivery = Extract<ServerEvent, { t: 'message' }>;

/** One client's end of an in-memory connection to the router, with what it received. */
class Peer {
  readonly inbox: Envelope[] = [];
  readonly lanes: Lane[] = [];
  closeInfo: CloseInfo | undefined;
  welcome: Welcome | undefined;

  constructor(
    readonly client: MemoryConnection,
    readonly server: MemoryConnection,
  ) {
    client.on('message', (frame, lane) => {
      const envelope = decodeEnvelope(frame);
      if (envelope.t === 'welcome') this.welcome = envelope;
      this.inbox.push(envelope);
      this.lanes.push(lane);
    });
    client.on('close', (info) => (this.closeInfo = info));
  }

  get id(): string {
    if (!this.welcome) throw new Error('no welcome yet');
    return this.welcome.clientId;
  }

  send(envelope: Envelope, lane?: Lane): void {
    this.client.send(encodeEnvelope(envelope), lane);
  }

  of<T extends Envelope['t']>(type: T): Extract<Envelope, { t: T }>[] {
    return this.inbox.filter((envelope): envelope is Extract<Envelope, { t: T }> => envelope.t === type);
  }

  deliveries(): Delivery[] {
    return this.of('message') as Delivery[];
  }

  clear(): void {
    this.inbox.length = 0;
    this.lanes.length = 0;
  }
}

/** Runs every pending microtask (a real setImmediate: fake timers leave it alone here). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

let router: Router;

function start(options: RouterOptions = {}): Router {
  router = new Router(options);
  return router;
}

function attach(options: MemoryConnectionOptions = {}): Peer {
  const { client, server } = MemoryConnection.pair(options);
  const peer = new Peer(client, server);
  router.attach(server);
  return peer;
}

/** A connection that said hello and got its welcome. */
async function join(hello: Extract<ClientCommand, { t: 'hello' }> = { t: 'hello' }, options: MemoryConnectionOptions = {}): Promise<Peer> {
  const peer = attach(options);
  peer.send(hello);
  await settle();
  expect(peer.welcome).toBeDefined();
  peer.clear();
  return peer;
}

async function joinMany(count: number): Promise<Peer[]> {
  const peers: Peer[] = [];
  for (let i = 0; i < count; i++) peers.push(await join());
  return peers;
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
});

afterEach(() => {
  router?.close();
  vi.useRealTimers();
});

describe('hello and welcome', () => {
  it('welcomes a hello with a fresh id and secret, the heartbeat and the message size limit', async () => {
    start({ heartbeatMs: 1_000, maxMessageSize: 4096 });
    const peer = attach();
    peer.send({ t: 'hello' });
    await settle();
    expect(peer.inbox).toHaveLength(1);
    const welcome = peer.welcome!;
    expect(welcome).toMatchObject({ t: 'welcome', resumed: false, heartbeatMs: 1_000, maxMessageSize: 4096 });
    expect(welcome.clientId).toMatch(/^\S{8,}$/);
    expect(welcome.secret).toMatch(/^\S{8,}$/);
    expect(router.clients.get(welcome.clientId)?.connection).toBe(peer.server);
    const other = await join();
    expect(other.id).not.toBe(welcome.clientId);
  });

  it('refuses a command before hello with ERR_NO_HELLO naming its id, and stays open', async () => {
    start();
    const peer = attach();
    peer.send({ t: 'join', room: 'r', id: 'early' });
    await settle();
    expect(peer.inbox).toEqual([expect.objectContaining({ t: 'error', code: 'ERR_NO_HELLO', ref: 'early' })]);
    expect(peer.client.state).toBe('open');
    expect(router.rooms.size).toBe(0);
  });

  it('answers a second hello with ERR_ALREADY_HELLO and keeps the session', async () => {
    start();
    const peer = await join();
    const id = peer.id;
    peer.send({ t: 'hello' });
    await settle();
    expect(peer.inbox).toEqual([expect.objectContaining({ t: 'error', code: 'ERR_ALREADY_HELLO' })]);
    expect(router.clients.size).toBe(1);
    expect(router.clients.get(id)?.connection).toBe(peer.server);
  });

  it('answers a malformed envelope with its typed error and keeps the connection', async () => {
    start();
    const peer = await join();
    peer.client.send('{not json');
    peer.client.send(JSON.stringify({ v: 1, t: 'teleport' }));
    peer.client.send(Uint8Array.of(0x42, 1, 2));
    await settle();
    // Malformed frames that arrive together get one answer: the first one's, counting the others.
    expect(peer.of('error')).toEqual([expect.objectContaining({ code: 'ERR_ENVELOPE_INVALID_JSON', message: expect.stringContaining('and 2 more') })]);
    peer.client.send(JSON.stringify({ v: 1, t: 'teleport' }));
    await settle();
    expect(peer.of('error').map((error) => error.code)).toEqual(['ERR_ENVELOPE_INVALID_JSON', 'ERR_ENVELOPE_UNKNOWN_TYPE']);
    expect(peer.client.state).toBe('open');
    expect(router.stats().errors).toBe(4);
  });

  it('closes a connection that says no hello within helloTimeoutMs with 1008', async () => {
    start({ helloTimeoutMs: 500 });
    const silent = attach();
    const greeted = attach();
    greeted.send({ t: 'hello' });
    await settle();
    vi.advanceTimersByTime(499);
    await settle();
    expect(silent.closeInfo).toBeUndefined();
    vi.advanceTimersByTime(1);
    await settle();
    expect(silent.closeInfo).toEqual({ code: 1008, reason: 'no hello in time', wasClean: true });
    // The hello cleared the timer: the greeted connection is untouched.
    expect(greeted.closeInfo).toBeUndefined();
  });
});

describe('authenticate hook', () => {
  it('passes the token and connection, and a string verdict becomes the user id', async () => {
    const seen: { token: string | undefined; transport: string }[] = [];
    start({
      authenticate: async ({ token, connection }) => {
        seen.push({ token, transport: connection.transport });
        return token === 'good' ? 'alice' : false;
      },
    });
    const peer = await join({ t: 'hello', token: 'good' }, { transport: 'polling' });
    expect(seen).toEqual([{ token: 'good', transport: 'polling' }]);
    expect(router.clients.get(peer.id)?.userId).toBe('alice');
  });

  it('closes with 1008 when it answers false or throws, and creates no client', async () => {
    start({
      authenticate: ({ token }) => {
        if (token === 'boom') throw new Error('auth backend down');
        return false;
      },
    });
    const refused = attach();
    const crashed = attach();
    refused.send({ t: 'hello', token: 'bad' });
    crashed.send({ t: 'hello', token: 'boom' });
    await settle();
    expect(refused.closeInfo).toEqual({ code: 1008, reason: 'authentication failed', wasClean: true });
    expect(crashed.closeInfo).toEqual({ code: 1008, reason: 'authentication failed', wasClean: true });
    expect(refused.welcome).toBeUndefined();
    expect(router.clients.size).toBe(0);
  });

  it('true accepts without a user id; a connection gone before the verdict gets no client', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    start({ authenticate: ({ token }) => (token === 'slow' ? gate.then(() => true) : true) });
    const quick = await join({ t: 'hello', token: 'fast' });
    expect(router.clients.get(quick.id)?.userId).toBeUndefined();
    const slow = attach();
    slow.send({ t: 'hello', token: 'slow' });
    await settle();
    slow.client.close(1000, 'gave up');
    await settle();
    release();
    await settle();
    expect(slow.welcome).toBeUndefined();
    expect(router.clients.size).toBe(1);
  });
});

describe('rooms and topics', () => {
  it('join then multicast to the room reaches its members but not the sender; leave stops it', async () => {
    start();
    const [sender, member, outsider] = await joinMany(3);
    sender!.send({ t: 'join', room: 'r', id: 'j1' });
    member!.send({ t: 'join', room: 'r', id: 'j2' });
    await settle();
    expect(sender!.of('ack')).toEqual([{ t: 'ack', id: 'j1', offset: expect.stringMatching(/^\d+-\d+$/) }]);
    expect(router.rooms.get('r')?.size).toBe(2);

    sender!.send({ t: 'multicast', target: { room: 'r' }, data: { n: 1 } });
    await settle();
    expect(member!.deliveries()).toEqual([{ t: 'message', from: sender!.id, kind: 'room', to: 'r', data: { n: 1 }, offset: expect.any(String) }]);
    expect(sender!.deliveries()).toEqual([]);
    expect(outsider!.deliveries()).toEqual([]);

    member!.send({ t: 'leave', room: 'r', id: 'l1' });
    await settle();
    expect(member!.of('ack')).toEqual([{ t: 'ack', id: 'j2', offset: expect.any(String) }, { t: 'ack', id: 'l1' }]);
    member!.clear();
    sender!.send({ t: 'multicast', target: { room: 'r' }, data: 2 });
    await settle();
    expect(member!.deliveries()).toEqual([]);
    sender!.send({ t: 'leave', room: 'r' });
    await settle();
    // The last member gone, the room is gone too.
    expect(router.rooms.has('r')).toBe(false);
  });

  it('subscribe then publish reaches subscribers (kind topic) but not the publisher; unsubscribe stops it', async () => {
    start();
    const [publisher, subscriber, other] = await joinMany(3);
    publisher!.send({ t: 'subscribe', topic: 'news' });
    subscriber!.send({ t: 'subscribe', topic: 'news' });
    other!.send({ t: 'subscribe', topic: 'sport' });
    await settle();
    publisher!.send({ t: 'publish', topic: 'news', data: 'headline' });
    await settle();
    expect(subscriber!.deliveries()).toEqual([{ t: 'message', from: publisher!.id, kind: 'topic', to: 'news', data: 'headline', offset: expect.any(String) }]);
    expect(publisher!.deliveries()).toEqual([]);
    expect(other!.deliveries()).toEqual([]);

    subscriber!.send({ t: 'unsubscribe', topic: 'news' });
    await settle();
    subscriber!.clear();
    publisher!.send({ t: 'publish', topic: 'news', data: 'later' });
    publisher!.send({ t: 'multicast', target: { topic: 'news' }, data: 'later too' });
    await settle();
    expect(subscriber!.deliveries()).toEqual([]);
    expect([...router.topics.keys()].sort()).toEqual(['news', 'sport']);
  });

  it('multicast to a topic reaches its subscribers with kind topic', async () => {
    start();
    const [sender, subscriber] = await joinMany(2);
    subscriber!.send({ t: 'subscribe', topic: 't' });
    await settle();
    sender!.send({ t: 'multicast', target: { topic: 't' }, data: Uint8Array.of(9, 8) });
    await settle();
    const [delivery] = subscriber!.deliveries();
    expect(delivery).toMatchObject({ from: sender!.id, kind: 'topic', to: 't' });
    expect([...(delivery!.data as Uint8Array)]).toEqual([9, 8]);
  });

  it('publishing to a topic without subscribers is routed and acked, delivering nothing', async () => {
    start();
    const [publisher] = await joinMany(1);
    publisher!.send({ t: 'publish', topic: 'empty', data: 1, id: 'p' });
    await settle();
    expect(publisher!.inbox).toEqual([{ t: 'ack', id: 'p' }]);
    expect(router.stats()).toMatchObject({ routed: 1, deliveries: 0 });
  });
});

describe('send, multicast to ids, broadcast', () => {
  it('send reaches its one target (itself too), and an unknown target is ERR_UNKNOWN_CLIENT', async () => {
    start();
    const [sender, target, bystander] = await joinMany(3);
    sender!.send({ t: 'send', to: target!.id, data: 'hi' });
    sender!.send({ t: 'send', to: sender!.id, data: 'me' });
    sender!.send({ t: 'send', to: 'nobody', data: 'lost', id: 's3' });
    await settle();
    expect(target!.deliveries()).toEqual([{ t: 'message', from: sender!.id, kind: 'send', data: 'hi' }]);
    expect(sender!.deliveries()).toEqual([{ t: 'message', from: sender!.id, kind: 'send', data: 'me' }]);
    expect(bystander!.inbox).toEqual([]);
    expect(sender!.of('error')).toEqual([expect.objectContaining({ code: 'ERR_UNKNOWN_CLIENT', ref: 's3' })]);
    expect(sender!.of('ack')).toEqual([]);
  });

  it('multicast to ids reaches each named client once, the sender if named, and skips unknown ids', async () => {
    start();
    const [sender, a, b, c] = await joinMany(4);
    sender!.send({ t: 'multicast', target: { ids: [a!.id, a!.id, 'ghost', c!.id, sender!.id] }, data: 'x' });
    await settle();
    for (const peer of [a!, c!, sender!]) expect(peer.deliveries()).toEqual([{ t: 'message', from: sender!.id, kind: 'ids', data: 'x' }]);
    expect(b!.deliveries()).toEqual([]);
    expect(router.stats().deliveries).toBe(3);
  });

  it('a client broadcast reaches everyone but the sender', async () => {
    start();
    const peers = await joinMany(4);
    peers[0]!.send({ t: 'broadcast', data: { all: true } });
    await settle();
    expect(peers[0]!.deliveries()).toEqual([]);
    for (const peer of peers.slice(1)) expect(peer.deliveries()).toEqual([{ t: 'message', from: peers[0]!.id, kind: 'broadcast', data: { all: true } }]);
  });

  it('router.broadcast() sends from "server" to every client and returns how many it reached', async () => {
    start();
    const peers = await joinMany(3);
    expect(router.broadcast('maintenance')).toBe(3);
    await settle();
    for (const peer of peers) expect(peer.deliveries()).toEqual([{ t: 'message', from: 'server', kind: 'broadcast', data: 'maintenance' }]);
  });

  it('delivers on the lane the command came on', async () => {
    start();
    const channels = { independentChannels: true };
    const sender = await join({ t: 'hello' }, { capabilities: channels });
    const receiver = await join({ t: 'hello' }, { capabilities: channels });
    sender.send({ t: 'send', to: receiver.id, data: 'on a channel' }, 'channel:chat');
    await settle();
    expect(receiver.deliveries()).toHaveLength(1);
    expect(receiver.lanes).toEqual(['channel:chat']);
  });
});

describe('receipts', () => {
  it('acks a command with an id, and not one without', async () => {
    start();
    const [peer] = await joinMany(1);
    peer!.send({ t: 'join', room: 'a' });
    peer!.send({ t: 'join', room: 'b', id: 'with-id' });
    await settle();
    expect(peer!.inbox).toEqual([{ t: 'ack', id: 'with-id', offset: expect.any(String) }]);
  });

  it('asks recipients for a receipt and forwards each recipient ack to the sender, naming the recipient', async () => {
    start();
    const [sender, a, b] = await joinMany(3);
    sender!.send({ t: 'broadcast', data: 'confirm please', id: 'm1', receipt: true });
    await settle();
    for (const peer of [a!, b!]) expect(peer.deliveries()).toEqual([{ t: 'message', from: sender!.id, kind: 'broadcast', data: 'confirm please', id: 'm1', receipt: true }]);
    a!.send({ t: 'ack', id: 'm1', to: sender!.id });
    b!.send({ t: 'ack', id: 'm1', to: sender!.id });
    await settle();
    expect(sender!.of('ack')).toEqual([
      { t: 'ack', id: 'm1' },
      { t: 'ack', id: 'm1', from: a!.id },
      { t: 'ack', id: 'm1', from: b!.id },
    ]);
  });

  it('a delivery carries no id unless a receipt was asked', async () => {
    start();
    const [sender, receiver] = await joinMany(2);
    sender!.send({ t: 'send', to: receiver!.id, data: 1, id: 'only-server-ack' });
    await settle();
    expect(receiver!.deliveries()).toEqual([{ t: 'message', from: sender!.id, kind: 'send', data: 1 }]);
  });
});

describe('de-duplication window', () => {
  it('a retried id is acked again but delivered once, and counted', async () => {
    start();
    const [sender, receiver] = await joinMany(2);
    for (let i = 0; i < 3; i++) sender!.send({ t: 'send', to: receiver!.id, data: 'once', id: 'retry-me' });
    await settle();
    expect(receiver!.deliveries()).toHaveLength(1);
    expect(sender!.of('ack')).toEqual([
      { t: 'ack', id: 'retry-me' },
      { t: 'ack', id: 'retry-me' },
      { t: 'ack', id: 'retry-me' },
    ]);
    expect(router.stats()).toMatchObject({ routed: 1, duplicates: 2, deliveries: 1 });
  });

  it('remembers only the last dedupWindow ids: an older retry is routed again', async () => {
    start({ dedupWindow: 2 });
    const [sender, receiver] = await joinMany(2);
    for (const id of ['a', 'b', 'c']) sender!.send({ t: 'send', to: receiver!.id, data: id, id });
    sender!.send({ t: 'send', to: receiver!.id, data: 'c again', id: 'c' });
    sender!.send({ t: 'send', to: receiver!.id, data: 'a again', id: 'a' });
    await settle();
    expect(receiver!.deliveries().map((delivery) => delivery.data)).toEqual(['a', 'b', 'c', 'a again']);
    expect(router.stats().duplicates).toBe(1);
  });

  it('ids are per client: the same id from two clients is routed twice', async () => {
    start();
    const [a, b, receiver] = await joinMany(3);
    a!.send({ t: 'send', to: receiver!.id, data: 'from a', id: 'same' });
    b!.send({ t: 'send', to: receiver!.id, data: 'from b', id: 'same' });
    await settle();
    expect(receiver!.deliveries().map((delivery) => delivery.data)).toEqual(['from a', 'from b']);
  });

  it('a refused command is not remembered: its retry is judged again', async () => {
    start();
    const [sender, late] = await joinMany(2);
    sender!.send({ t: 'send', to: 'not-yet', data: 1, id: 'r' });
    await settle();
    expect(sender!.of('error')).toHaveLength(1);
    sender!.send({ t: 'send', to: late!.id, data: 1, id: 'r' });
    await settle();
    expect(sender!.of('ack')).toEqual([{ t: 'ack', id: 'r' }]);
    expect(late!.deliveries()).toHaveLength(1);
  });
});

describe('authorize hook', () => {
  const denied: Action['kind'][] = ['join', 'subscribe', 'publish', 'multicast-room', 'multicast-ids', 'send', 'broadcast'];
  it.each(denied)('refuses %s with ERR_FORBIDDEN (ref = the command id) and changes nothing', async (kind) => {
    const asked: Action[] = [];
    start({
      authenticate: ({ token }) => token ?? false,
      authorize: (client, action) => {
        if (client.userId === 'mallory') asked.push(action);
        return client.userId !== 'mallory' || action.kind !== kind;
      },
    });
    const member = await join({ t: 'hello', token: 'member' });
    const peer = await join({ t: 'hello', token: 'mallory' });
    member.send({ t: 'join', room: 'vault' });
    member.send({ t: 'subscribe', topic: 'secrets' });
    await settle();
    const commands: Record<Action['kind'], ClientCommand> = {
      join: { t: 'join', room: 'vault', id: 'x' },
      subscribe: { t: 'subscribe', topic: 'secrets', id: 'x' },
      publish: { t: 'publish', topic: 'secrets', data: 'leak', id: 'x' },
      'multicast-room': { t: 'multicast', target: { room: 'vault' }, data: 'leak', id: 'x' },
      'multicast-ids': { t: 'multicast', target: { ids: [member.id] }, data: 'leak', id: 'x' },
      send: { t: 'send', to: member.id, data: 'leak', id: 'x' },
      broadcast: { t: 'broadcast', data: 'leak', id: 'x' },
    };
    peer.send(commands[kind]);
    await settle();
    expect(peer.inbox).toEqual([{ t: 'error', code: 'ERR_FORBIDDEN', message: expect.stringContaining(kind), ref: 'x' }]);
    expect(asked).toContainEqual(expect.objectContaining({ kind }));
    expect(member.deliveries()).toEqual([]);
    expect(router.rooms.get('vault')?.size).toBe(1);
    expect(router.topics.get('secrets')?.size).toBe(1);
  });

  it('checks a multicast to a topic as publishing to it', async () => {
    const asked: Action[] = [];
    start({ authorize: (_client, action) => (asked.push(action), action.kind !== 'publish') });
    const [peer] = await joinMany(1);
    peer!.send({ t: 'multicast', target: { topic: 'secrets' }, data: 1, id: 'm' });
    await settle();
    expect(asked).toContainEqual({ kind: 'publish', topic: 'secrets' });
    expect(peer!.of('error')).toEqual([expect.objectContaining({ code: 'ERR_FORBIDDEN', ref: 'm' })]);
  });
});

describe('beforeRoute hook', () => {
  it('sees every command (id-less too) and its client; "drop" routes nothing and acks nothing', async () => {
    const seen: string[] = [];
    start({
      beforeRoute: (command, client) => {
        seen.push(`${client.id}:${command.t}:${command.id}`);
        return command.id === 'drop-me' ? 'drop' : undefined;
      },
    });
    const [sender, receiver] = await joinMany(2);
    sender!.send({ t: 'send', to: receiver!.id, data: 'no id' });
    sender!.send({ t: 'send', to: receiver!.id, data: 'dropped', id: 'drop-me' });
    sender!.send({ t: 'send', to: receiver!.id, data: 'kept', id: 'keep-me' });
    await settle();
    expect(seen).toEqual([`${sender!.id}:send:undefined`, `${sender!.id}:send:drop-me`, `${sender!.id}:send:keep-me`]);
    expect(receiver!.deliveries().map((delivery) => delivery.data)).toEqual(['no id', 'kept']);
    expect(sender!.of('ack')).toEqual([{ t: 'ack', id: 'keep-me' }]);
  });

  it('a dropped command is not remembered: its retry is routed', async () => {
    let drops = 1;
    start({ beforeRoute: () => (drops-- > 0 ? 'drop' : undefined) });
    const [sender, receiver] = await joinMany(2);
    sender!.send({ t: 'send', to: receiver!.id, data: 'retried', id: 'r' });
    sender!.send({ t: 'send', to: receiver!.id, data: 'retried', id: 'r' });
    await settle();
    expect(receiver!.deliveries()).toHaveLength(1);
    expect(sender!.of('ack')).toEqual([{ t: 'ack', id: 'r' }]);
    expect(router.stats().duplicates).toBe(0);
  });
});

describe('heartbeats and liveness', () => {
  it('answers ping with pong of the same ts, and a pong from the client sets its RTT', async () => {
    start();
    const [peer] = await joinMany(1);
    peer!.send({ t: 'ping', ts: 12345.5 });
    await settle();
    expect(peer!.inbox).toEqual([{ t: 'pong', ts: 12345.5 }]);
    peer!.send({ t: 'pong', ts: Date.now() - 42 });
    await settle();
    expect(router.clients.get(peer!.id)?.rttMs).toBe(42);
  });

  it('pings every heartbeatMs and closes a client silent past livenessTimeoutMs with 4009', async () => {
    start({ heartbeatMs: 1_000, livenessTimeoutMs: 2_500 });
    const [silent, chatty] = await joinMany(2);
    for (let beat = 1; beat <= 2; beat++) {
      vi.advanceTimersByTime(1_000);
      chatty!.send({ t: 'pong', ts: Date.now() });
      await settle();
      expect(silent!.of('ping')).toHaveLength(beat);
      expect(silent!.of('ping').at(-1)?.ts).toBe(Date.now());
    }
    expect(silent!.closeInfo).toBeUndefined();
    vi.advanceTimersByTime(1_000); // 3 s silent > 2.5 s
    await settle();
    expect(silent!.closeInfo).toEqual({ code: 4009, reason: 'no traffic within the liveness timeout', wasClean: true });
    expect(chatty!.closeInfo).toBeUndefined();
  });

  it('livenessTimeoutMs defaults to 2.5 heartbeats', async () => {
    start({ heartbeatMs: 1_000 });
    const [peer] = await joinMany(1);
    vi.advanceTimersByTime(2_000);
    await settle();
    expect(peer!.closeInfo).toBeUndefined();
    vi.advanceTimersByTime(1_000);
    await settle();
    expect(peer!.closeInfo?.code).toBe(4009);
  });
});

describe('resume after a reconnect', () => {
  async function dropped(options: RouterOptions = {}): Promise<{ peer: Peer; id: string; secret: string }> {
    start({ resumeGraceMs: 1_000, ...options });
    const peer = await join();
    peer.send({ t: 'join', room: 'kept' });
    peer.send({ t: 'subscribe', topic: 'kept' });
    await settle();
    const { clientId: id, secret } = peer.welcome!;
    peer.client.abort();
    await settle();
    return { peer, id, secret };
  }

  it('a hello with the id and secret within the grace period resumes: same id, rooms and topics kept', async () => {
    const { id, secret } = await dropped();
    expect(router.clients.get(id)?.connection).toBeNull();
    vi.advanceTimersByTime(999);
    const back = attach();
    back.send({ t: 'hello', resume: { clientId: id, secret } });
    await settle();
    expect(back.welcome).toMatchObject({ clientId: id, resumed: true });
    // A secret works once: the resume issues a new one.
    expect(back.welcome!.secret).not.toBe(secret);
    // Past the first grace period: the resume cancelled the expiry.
    vi.advanceTimersByTime(5_000);
    expect(router.clients.get(id)?.connection).toBe(back.server);
    const [other] = await joinMany(1);
    other!.send({ t: 'multicast', target: { room: 'kept' }, data: 'room' });
    other!.send({ t: 'publish', topic: 'kept', data: 'topic' });
    await settle();
    expect(back.deliveries().map((delivery) => delivery.data)).toEqual(['room', 'topic']);
  });

  it('a wrong secret gets a fresh session, not the old one', async () => {
    const { id } = await dropped();
    const impostor = attach();
    impostor.send({ t: 'hello', resume: { clientId: id, secret: 'guessed' } });
    await settle();
    expect(impostor.welcome).toMatchObject({ resumed: false });
    expect(impostor.id).not.toBe(id);
    expect(router.clients.get(id)?.connection).toBeNull();
  });

  it('after the grace period the session is forgotten with its rooms and topics, and a resume starts afresh', async () => {
    const { id, secret } = await dropped();
    vi.advanceTimersByTime(1_000);
    expect(router.clients.has(id)).toBe(false);
    expect(router.rooms.has('kept')).toBe(false);
    expect(router.topics.has('kept')).toBe(false);
    const late = attach();
    late.send({ t: 'hello', resume: { clientId: id, secret } });
    await settle();
    expect(late.welcome).toMatchObject({ resumed: false });
    expect(late.id).not.toBe(id);
  });

  it('a clean 1000 close ends the session at once (no grace)', async () => {
    start({ resumeGraceMs: 60_000 });
    const peer = await join();
    peer.send({ t: 'join', room: 'gone' });
    await settle();
    peer.client.close(1000, 'bye');
    await settle();
    expect(router.clients.size).toBe(0);
    expect(router.rooms.size).toBe(0);
  });

  it('a resume while the old connection is still open replaces it, closing the old one with 4010', async () => {
    start();
    const first = await join();
    const { clientId: id, secret } = first.welcome!;
    const second = attach();
    second.send({ t: 'hello', resume: { clientId: id, secret } });
    await settle();
    expect(second.welcome).toMatchObject({ clientId: id, resumed: true });
    expect(first.closeInfo).toEqual({ code: 4010, reason: 'replaced by a resumed connection', wasClean: true });
    // The old connection's close does not start a grace timer over the new one.
    vi.advanceTimersByTime(60_000);
    expect(router.clients.get(id)?.connection).toBe(second.server);
  });
});

describe('history and recovery (in-memory engine)', () => {
  /** A member of room 'r' and topic 't' that got `before` messages, then dropped; `after` more were sent meanwhile. */
  async function away(options: RouterOptions, before: number, after: number) {
    start({ resumeGraceMs: 10_000, ...options });
    const [member, sender] = await joinMany(2);
    member!.send({ t: 'join', room: 'r' });
    member!.send({ t: 'subscribe', topic: 't' });
    await settle();
    for (let i = 0; i < before; i++) sender!.send({ t: 'multicast', target: { room: 'r' }, data: `r${i}` });
    sender!.send({ t: 'publish', topic: 't', data: 't0' });
    await settle();
    const got = member!.deliveries();
    const offsets = { 'room:r': got.at(-2)!.offset!, 'topic:t': got.at(-1)!.offset! };
    member!.client.abort();
    await settle();
    for (let i = before; i < before + after; i++) sender!.send({ t: 'multicast', target: { room: 'r' }, data: `r${i}` });
    await settle();
    return { sender: sender!, id: member!.id, secret: member!.welcome!.secret, offsets };
  }

  it('a resume with offsets gets exactly the missed room messages, in order, after a welcome saying recovered, then live ones', async () => {
    const { sender, id, secret, offsets } = await away({}, 3, 5);
    const back = attach();
    back.send({ t: 'hello', resume: { clientId: id, secret }, offsets });
    await settle();
    expect(back.inbox[0]).toMatchObject({ t: 'welcome', resumed: true, recovered: true });
    expect(back.deliveries().map((d) => d.data)).toEqual(['r3', 'r4', 'r5', 'r6', 'r7']);
    sender.send({ t: 'multicast', target: { room: 'r' }, data: 'live' });
    await settle();
    expect(back.deliveries().map((d) => d.data)).toEqual(['r3', 'r4', 'r5', 'r6', 'r7', 'live']);
    // Offsets grow within the room.
    const numbers = back.deliveries().map((d) => Number(d.offset!.split('-')[0]));
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
  });

  it('says recovered: false when the history no longer reaches back (count), and sends what it has', async () => {
    const { id, secret, offsets } = await away({ history: { maxLength: 4 } }, 1, 6);
    const back = attach();
    back.send({ t: 'hello', resume: { clientId: id, secret }, offsets });
    await settle();
    expect(back.welcome).toMatchObject({ resumed: true, recovered: false });
    expect(back.deliveries().map((d) => d.data)).toEqual(['r3', 'r4', 'r5', 'r6']);
  });

  it('says recovered: false when the missed messages aged out, and for offsets of another process', async () => {
    const { id, secret, offsets } = await away({ history: { maxAgeMs: 1_000 } }, 1, 2);
    vi.advanceTimersByTime(1_001);
    const back = attach();
    back.send({ t: 'hello', resume: { clientId: id, secret }, offsets: { ...offsets, 'topic:t': '1-12345' } });
    await settle();
    expect(back.welcome).toMatchObject({ resumed: true, recovered: false });
    expect(back.deliveries()).toEqual([]);
  });

  it('says recovered: false when the session is gone (a fresh welcome), and offsets for rooms it is not in do not leak history', async () => {
    const { id, secret, offsets } = await away({}, 1, 2);
    const stranger = attach();
    stranger.send({ t: 'hello', offsets });
    await settle();
    expect(stranger.welcome).toMatchObject({ resumed: false, recovered: false });
    vi.advanceTimersByTime(10_000);
    const late = attach();
    late.send({ t: 'hello', resume: { clientId: id, secret }, offsets });
    await settle();
    expect(late.welcome).toMatchObject({ resumed: false, recovered: false });
    expect(late.deliveries()).toEqual([]);
  });

  it('a member that got nothing yet resumes from the offset its join ack named', async () => {
    start({ resumeGraceMs: 10_000 });
    const [member, sender] = await joinMany(2);
    member!.send({ t: 'join', room: 'quiet', id: 'j' });
    await settle();
    const offset = member!.of('ack')[0]!.offset!;
    const { clientId: id, secret } = member!.welcome!;
    member!.client.abort();
    await settle();
    sender!.send({ t: 'multicast', target: { room: 'quiet' }, data: 'while away' });
    await settle();
    const back = attach();
    back.send({ t: 'hello', resume: { clientId: id, secret }, offsets: { 'room:quiet': offset } });
    await settle();
    expect(back.welcome).toMatchObject({ resumed: true, recovered: true });
    expect(back.deliveries().map((d) => d.data)).toEqual(['while away']);
  });

  it('the history bounds what a resume recovers, not what live members get: a burst past maxLength reaches a member whole', async () => {
    start({ history: { maxLength: 4 } });
    const [member, sender] = await joinMany(2);
    member!.send({ t: 'join', room: 'burst' });
    await settle();
    for (let i = 0; i < 20; i++) sender!.send({ t: 'multicast', target: { room: 'burst' }, data: i });
    await settle();
    expect(member!.deliveries().map((d) => d.data)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('binary deliveries carry their offset too', async () => {
    start();
    const [member, sender] = await joinMany(2);
    member!.send({ t: 'join', room: 'b' });
    await settle();
    sender!.send({ t: 'multicast', target: { room: 'b' }, data: Uint8Array.of(7) });
    await settle();
    expect(member!.deliveries()[0]).toMatchObject({ kind: 'room', to: 'b', offset: expect.stringMatching(/^\d+-\d+$/) });
  });
});

describe('limits and accounting', () => {
  it('closes connections past maxConnections with 1013, and accepts again once one leaves', async () => {
    start({ maxConnections: 2 });
    const [a] = await joinMany(2);
    const third = attach();
    await settle();
    expect(third.closeInfo).toEqual({ code: 1013, reason: 'server at its connection limit', wasClean: true });
    expect(router.stats().connections).toBe(2);
    a!.client.close(1000);
    await settle();
    const fourth = await join();
    expect(fourth.closeInfo).toBeUndefined();
    expect(router.stats().connections).toBe(2);
  });

  it('counts a delivery too large for a recipient as undeliverable, and still delivers to the rest', async () => {
    start();
    const sender = await join();
    // Room for its welcome (about 130 bytes), not for the broadcast.
    const small = await join({ t: 'hello' }, { capabilities: { maxMessageSize: 180 } });
    const big = await join();
    sender.send({ t: 'broadcast', data: 'x'.repeat(200) });
    await settle();
    expect(small.deliveries()).toEqual([]);
    expect(big.deliveries()).toHaveLength(1);
    expect(router.stats()).toMatchObject({ undeliverable: 1, deliveries: 1 });
  });

  it('counts a delivery a full queue refuses under the wait policy', async () => {
    start();
    const sender = await join();
    const data = 'y'.repeat(100);
    const size = String(encodeEnvelope({ t: 'message', from: sender.id, kind: 'send', data })).length;
    // Room for two deliveries, not three.
    const slow = await join({ t: 'hello' }, { backpressure: { policy: 'wait', maxQueuedBytes: 2 * size + 10 } });
    slow.server.stall();
    for (let i = 0; i < 3; i++) sender.send({ t: 'send', to: slow.id, data });
    await settle();
    expect(router.stats()).toMatchObject({ deliveries: 2, refused: 1 });
    slow.server.unstall();
    await settle();
    expect(slow.deliveries()).toHaveLength(2);
  });

  it('stats count connections, clients, rooms, topics, routed commands, deliveries and errors', async () => {
    start();
    const [a, b] = await joinMany(2);
    attach(); // no hello yet: a connection, not a client
    a!.send({ t: 'join', room: 'r' });
    b!.send({ t: 'subscribe', topic: 't' });
    await settle();
    a!.send({ t: 'publish', topic: 't', data: 1 });
    a!.send({ t: 'send', to: 'nobody', data: 1 });
    await settle();
    expect(router.stats()).toEqual({ connections: 3, clients: 2, rooms: 1, topics: 1, routed: 3, deliveries: 1, duplicates: 0, errors: 1, undeliverable: 0, refused: 0 });
  });

  it('close() closes every connection with 1001 and forgets every client', async () => {
    start();
    const peers = await joinMany(2);
    const pending = attach();
    router.close();
    await settle();
    for (const peer of [...peers, pending]) expect(peer.closeInfo).toEqual({ code: 1001, reason: 'server shutting down', wasClean: true });
    expect(router.stats()).toMatchObject({ clients: 0, rooms: 0, topics: 0, connections: 0 });
  });
});
