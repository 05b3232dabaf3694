/**
 * The Redis engine: several server processes (nodes) sharing one Redis behave as one server.
 *
 * Redis Streams carry everything, so one mechanism is both the history and the fan-out between
 * nodes: each room and topic is a stream (`sy:s:room:<name>`), broadcasts go to `sy:s:all`, and
 * each node has an inbox stream (`sy:i:<node>`) for unicasts, id-list multicasts, receipts and
 * control. A node reads, with one blocking XREAD, its inbox, the broadcast stream and the streams
 * of the rooms and topics it has members in, from the last id it read of each, and delivers every
 * entry to its local recipients (encoded once per node). After a Redis outage a node reads on from
 * where it was: nothing in between is skipped, which pub/sub could not promise (it drops what a
 * disconnected subscriber missed).
 *
 * Acknowledged means durable for every live reader: each node records in Redis how far it has read
 * each stream, and a stream is trimmed to its history (count, age) but never below its slowest live
 * reader (STREAM_LUA says how, and why not consumer groups). The history bounds what a reconnecting
 * client can recover (a stream id is a message's offset: a resuming client names the last it got
 * and gets what follows from XRANGE), not what live nodes receive. Only a node more than
 * `maxBacklog` entries behind (stalled) is trimmed past, and it is told by the gap in the entries'
 * counts: its members there are closed (4011) and resume, learning what was lost.
 *
 * Sessions (`sy:c:<id>`: node, secret, memberships) let any node resume a client; the
 * de-duplication window of each client's message ids (`sy:d:<id>`) lives in Redis, checked in the
 * same script that appends, so a retry after a node died is dropped wherever it lands. A command is
 * acknowledged once its script returned: the message is in Redis. Scripts touch keys they compute
 * (a recipient's session and inbox): standalone Redis (or one shard), not Redis Cluster.
 *
 * Presence: `sy:p:<room>` maps each member to its node, and every join and leave is an entry in the
 * room's stream, so the nodes reading that room hear it (a node whose first member joins later
 * reads the whole list from the hash). Each node renews `sy:n:<node>` every second; one that stops
 * is found dead by the others after `nodeTimeoutMs`: its clients leave their rooms (their sessions
 * stay resumable elsewhere until they expire), its reader records and its inbox are deleted.
 *
 * While Redis is unreachable the node serves its own clients alone (unacknowledged messages are
 * delivered locally; acknowledged ones are refused with ERR_CLUSTER_UNAVAILABLE), says so in its
 * status and log, and resynchronises (sessions, memberships, reading positions) when it is back.
 */
import { Redis } from 'ioredis';
import { decodeEnvelope, encodeEnvelope } from '../transports/codec/envelope.ts';
import { randomId } from '../transports/random-id.ts';
import type { Lane } from '../transports/transport.ts';
import {
  compareOffsets,
  HISTORY_DEFAULTS,
  type Channel,
  type Delivery,
  type EngineHost,
  type EngineStatus,
  type HistoryAnswer,
  type HistoryEntry,
  type HistoryOptions,
  type Publication,
  type PublishOutcome,
  type ReceiptEvent,
  type RouterEngine,
  type SessionRecord,
} from './engine.ts';

export interface RedisEngineOptions {
  /** `redis://host:port` (ioredis URL syntax). */
  url: string;
  history?: HistoryOptions;
  /** How many recent message ids per client are checked for retries. Default 4096. */
  dedupWindow?: number;
  /** A connected client's session outlives a dead node by this much (ms). Default 60 000. */
  sessionTtlMs?: number;
  /** A node silent this long (ms) is dead: its clients leave their rooms. Default 5 000. */
  nodeTimeoutMs?: number;
  /**
   * How far (entries) a live node may fall behind a room's or topic's stream before the stream is
   * trimmed under it anyway (it then closes its members there with 4011, and they resume). Bounds
   * Redis memory when a node stalls. Default 100 000 (at least the history's maxLength).
   */
  maxBacklog?: number;
}

const PREFIX = 'sy:';
/** Entries read per stream per XREAD. */
const READ_BATCH = 1000;
/** A node's inbox keeps at most this many entries (its own reading trims it to what it has not read). */
const INBOX_LENGTH = 100_000;
/** The broadcast stream keeps this many entries past its slowest live reader: broadcasts have no history. */
const BROADCAST_LENGTH = 1000;
/** How often (at most) a node records how far it has read: a position a little stale only keeps a few more entries. */
const RECORD_EVERY_MS = 20;
/** A blocked XREAD returns after this long anyway, so new watches join the read within it even without a wake. */
const BLOCK_MS = 2000;
const OK: PublishOutcome = { ok: true };
const UNAVAILABLE = { ok: false, code: 'ERR_CLUSTER_UNAVAILABLE', message: 'the cluster store (Redis) is unreachable: acknowledged sends are refused until it is back' } as const;
const DUPLICATE = { ok: false, code: 'ERR_DUPLICATE', message: 'already published' } as const;

/**
 * Shared by every script that appends to a room's, topic's or the broadcast stream (`sy:s:<channel>`).
 *
 * Each such stream has a readers hash (`sy:r:<channel>`): `#` counts the entries ever appended
 * (each entry carries its count as `n`), and each live node reading the stream records `<n>:<id>`,
 * the last entry it read. The stream is trimmed to its history (`minKeep` entries, `ageMs`) but
 * never below the slowest live reader, so an acknowledged message reaches every live node that
 * reads the stream whatever the history settings; only a reader more than `cap` entries behind is
 * trimmed past (memory stays bounded), and it notices the gap in `n` and says so. Own positions
 * with MINID/MAXLEN trimming rather than consumer groups: each node is the only reader of its own
 * position, so a group's pending-entries list and XACK per entry would be pure cost, and Redis 7.0
 * cannot trim by groups anyway (the minimum would be computed here all the same).
 *
 * While a stream has readers it does not expire (PERSIST at watch); without, it expires with its
 * history (`ageMs` after its last entry). Keys are computed from the prefix: standalone Redis (or
 * one shard), as the other scripts.
 */
const STREAM_LUA = `
local function streamAppend(p, channel, minKeep, ageMs, cap, ...)
  local stream, readers = p .. 's:' .. channel, p .. 'r:' .. channel
  local n = redis.call('HINCRBY', readers, '#', 1)
  local slowN, slowId
  local fields = redis.call('HGETALL', readers)
  for i = 1, #fields, 2 do
    if fields[i] ~= '#' then
      local rn, rid = string.match(fields[i + 1], '^(%d+):(.+)$')
      rn = tonumber(rn)
      if rn and (slowN == nil or rn < slowN) then slowN, slowId = rn, rid end
    end
  end
  local keep = minKeep
  if slowN then keep = math.max(minKeep, math.min(n - slowN, cap)) end
  local id = redis.call('XADD', stream, 'MAXLEN', '~', keep, '*', 'n', n, ...)
  if ageMs > 0 then
    local t = redis.call('TIME')
    local cut = t[1] * 1000 + math.floor(t[2] / 1000) - ageMs
    local minId = string.format('%d', cut)
    if slowN and n - slowN <= cap and tonumber(string.match(slowId, '^(%d+)')) < cut then minId = slowId end
    redis.call('XTRIM', stream, 'MINID', '~', minId)
    if not slowN then
      redis.call('PEXPIRE', stream, ageMs)
      redis.call('PEXPIRE', readers, ageMs)
    end
  end
  return {id, n}
end
local function dropReader(p, channel, node, ageMs)
  local readers = p .. 'r:' .. channel
  redis.call('HDEL', readers, node)
  redis.call('SREM', p .. 'nw:' .. node, channel)
  if redis.call('HLEN', readers) <= 1 and ageMs > 0 then
    redis.call('PEXPIRE', p .. 's:' .. channel, ageMs)
    redis.call('PEXPIRE', readers, ageMs)
  end
end
`;

/** Appends a message to a room's, topic's or the broadcast stream; a retried id (already in the client's window) appends nothing and returns nil. */
const PUBLISH_SCRIPT = `${STREAM_LUA}
if ARGV[6] ~= '' then
  if redis.call('ZSCORE', KEYS[1], ARGV[6]) then return false end
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[1], string.format('%d', t[1] * 1000000 + t[2]), ARGV[6])
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[7]) + 1))
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
end
return streamAppend(ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), 'e', ARGV[9], 'l', ARGV[10])[1]`;

/**
 * This node starts reading a stream from its end: records it as a reader there (so nothing after
 * is trimmed before it reads it) and returns `{id, n}` of the last entry. An empty stream gets a
 * `start` entry first, so the position (a join's ack offset) is an entry a resume can find.
 */
const WATCH_SCRIPT = `${STREAM_LUA}
local p, channel, node = ARGV[1], ARGV[2], ARGV[3]
local stream, readers = p .. 's:' .. channel, p .. 'r:' .. channel
local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
local id, n
if #last == 0 then
  local added = streamAppend(p, channel, tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), 'x', 'start')
  id, n = added[1], added[2]
else
  id, n = last[1][1], tonumber(redis.call('HGET', readers, '#') or '0')
end
redis.call('HSET', readers, node, n .. ':' .. id)
redis.call('PERSIST', stream)
redis.call('PERSIST', readers)
redis.call('SADD', p .. 'nw:' .. node, channel)
return {id, n}`;

/** This node stops reading a stream (its last member here left). */
const UNWATCH_SCRIPT = `${STREAM_LUA}
dropReader(ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]))
return 0`;

/**
 * Records how far this node has read (`<channel>`, `<n>:<id>` pairs), where it is still a reader
 * (an unwatch or a reaper may have come first), and trims its inbox to what it has not read.
 */
const READ_SCRIPT = `
local p, node = ARGV[1], ARGV[2]
for i = 5, #ARGV, 2 do
  local readers = p .. 'r:' .. ARGV[i]
  if redis.call('HEXISTS', readers, node) == 1 then redis.call('HSET', readers, node, ARGV[i + 1]) end
end
if ARGV[4] ~= '' then redis.call('XTRIM', ARGV[3], 'MINID', '~', ARGV[4]) end
return 0`;

/**
 * Appends to the inboxes of the nodes holding the named clients (one entry per node, naming its
 * recipients). Returns -1 when a strict send's client is unknown, -2 for a retried id, else the
 * count found. An inbox expires when nothing came for the session TTL (a dead node's stops being written).
 */
const CLIENTS_SCRIPT = `
local strict = ARGV[6] == '1'
local nodes = {}
local found = 0
for i = 9, #ARGV do
  local node = redis.call('HGET', ARGV[7] .. ARGV[i], 'node')
  if node then
    found = found + 1
    if nodes[node] then nodes[node] = nodes[node] .. ',' .. ARGV[i] else nodes[node] = ARGV[i] end
  end
end
if strict and found == 0 then return -1 end
if ARGV[1] ~= '' then
  if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return -2 end
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[1], string.format('%d', t[1] * 1000000 + t[2]), ARGV[1])
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
for node, ids in pairs(nodes) do
  redis.call('XADD', ARGV[8] .. node, 'MAXLEN', '~', ${INBOX_LENGTH}, '*', 'e', ARGV[4], 'l', ARGV[5], 'c', ids)
  redis.call('PEXPIRE', ARGV[8] .. node, ARGV[3])
end
return found`;

/** Takes a session over when the secret matches: returns its fields; tells the node that held it to let go. */
const CLAIM_SCRIPT = `
local secret = redis.call('HGET', KEYS[1], 'secret')
if not secret or secret ~= ARGV[1] then return false end
local previous = redis.call('HGET', KEYS[1], 'node')
redis.call('HSET', KEYS[1], 'secret', ARGV[2], 'node', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if previous and previous ~= ARGV[3] then
  redis.call('XADD', ARGV[5] .. previous, 'MAXLEN', '~', ${INBOX_LENGTH}, '*', 'x', 'release', 'c', ARGV[6])
  redis.call('PEXPIRE', ARGV[5] .. previous, ARGV[4])
end
return redis.call('HGETALL', KEYS[1])`;

/** A room membership change: the presence hash, and a join/leave entry in the room's stream when it changed anything. */
const PRESENCE_SCRIPT = `${STREAM_LUA}
local p, room = ARGV[1], ARGV[2]
local changed
if ARGV[5] == 'join' then changed = redis.call('HSET', p .. 'p:' .. room, ARGV[3], ARGV[4]) == 1
else changed = redis.call('HDEL', p .. 'p:' .. room, ARGV[3]) == 1 end
if changed then streamAppend(p, 'room:' .. room, tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), 'x', ARGV[5], 'c', ARGV[3]) end
return 0`;

/**
 * Renews this node's liveness; any node found silent is reaped (once: the script is atomic): it
 * stops holding back the trimming of the streams it read, its inbox is deleted, and its clients
 * leave their rooms. Returns whether this node was itself still registered (false: it was reaped
 * while alive, or it is new).
 */
const BEAT_SCRIPT = `${STREAM_LUA}
local p, self = ARGV[1], ARGV[2]
local minKeep, ageMs, cap = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local registered = redis.call('SISMEMBER', p .. 'nodes', self)
redis.call('SET', p .. 'n:' .. self, '1', 'PX', ARGV[3])
redis.call('SADD', p .. 'nodes', self)
for _, node in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  if redis.call('EXISTS', p .. 'n:' .. node) == 0 then
    redis.call('SREM', p .. 'nodes', node)
    for _, channel in ipairs(redis.call('SMEMBERS', p .. 'nw:' .. node)) do
      dropReader(p, channel, node, channel == 'all' and 0 or ageMs)
    end
    redis.call('DEL', p .. 'nw:' .. node, p .. 'i:' .. node)
    for _, client in ipairs(redis.call('SMEMBERS', p .. 'nc:' .. node)) do
      local fields = redis.call('HGETALL', p .. 'c:' .. client)
      for i = 1, #fields, 2 do
        if string.sub(fields[i], 1, 5) == 'room:' then
          local room = string.sub(fields[i], 6)
          if redis.call('HGET', p .. 'p:' .. room, client) == node then
            redis.call('HDEL', p .. 'p:' .. room, client)
            streamAppend(p, 'room:' .. room, minKeep, ageMs, cap, 'x', 'leave', 'c', client)
          end
        end
      end
    end
    redis.call('DEL', p .. 'nc:' .. node)
  end
end
return registered`;

/** Ends a session, unless another node has taken it over meanwhile. */
const FORGET_SCRIPT = `
if redis.call('HGET', KEYS[1], 'node') == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2]) end
return 0`;

interface Scripts {
  syPublish(dedup: string, prefix: string, channel: string, minKeep: number, maxAgeMs: number, cap: number, id: string, window: number, ttl: number, frame: string | Buffer, lane: string, callback: (error: Error | null, appended: string | null) => void): void;
  syWatch(prefix: string, channel: string, node: string, minKeep: number, maxAgeMs: number, cap: number): Promise<[string, number]>;
  syUnwatch(prefix: string, channel: string, node: string, maxAgeMs: number): Promise<number>;
  syRead(prefix: string, node: string, inbox: string, inboxPosition: string, ...channelsAndPositions: string[]): Promise<number>;
  syClients(...args: [dedup: string, id: string, window: number, ttl: number, frame: string | Buffer, lane: string, strict: string, sessionPrefix: string, inboxPrefix: string, ...ids: string[], callback: (error: Error | null, found: number) => void]): void;
  syClaim(session: string, secret: string, fresh: string, node: string, ttl: number, inboxPrefix: string, clientId: string): Promise<string[] | null>;
  syForget(session: string, dedup: string, node: string): Promise<number>;
  syPresence(prefix: string, room: string, clientId: string, node: string, change: 'join' | 'leave', minKeep: number, maxAgeMs: number, cap: number): Promise<number>;
  syBeat(prefix: string, node: string, timeoutMs: number, minKeep: number, maxAgeMs: number, cap: number): Promise<number>;
}

/** What this node keeps of its own clients' sessions, to write them again after an outage. */
interface LocalSession {
  secret: string;
  userId: string | undefined;
  channels: Set<Channel>;
  /** Grace left when suspended (ms), undefined while connected. */
  graceMs: number | undefined;
}

/** Where this node is in a stream: the last entry id read, and its count `n` (-1 where entries carry none: the inbox). */
interface Position {
  id: string;
  n: number;
}

type XReadReply = [Buffer, [Buffer, Buffer[]][]][] | null;

export class RedisEngine implements RouterEngine {
  readonly #node = randomId(9);
  readonly #limits: Required<HistoryOptions>;
  readonly #dedupWindow: number;
  readonly #sessionTtlMs: number;
  readonly #nodeTimeoutMs: number;
  readonly #maxBacklog: number;
  /** This node's set of client ids, for whoever reaps it if it dies. */
  readonly #clientsKey: string;
  /** Commands: pipelined on one connection, so one client's commands run in the order they came. */
  readonly #redis: Redis & Scripts;
  /** The blocking XREAD. */
  readonly #reader: Redis;
  /** Streams this node reads (by key), with where it is in each; null until it is known (watched while Redis was away). */
  readonly #positions = new Map<string, Position | null>();
  /** Streams read further since their position was last recorded in Redis. */
  readonly #unrecorded = new Set<string>();
  /** A recording of positions is under way or scheduled. */
  #recording = false;
  readonly #sessions = new Map<string, LocalSession>();
  readonly #inbox: string;
  #host: EngineHost | undefined;
  #connected = false;
  #closed = false;
  /** Whether this node has beaten once (a later beat that finds it unregistered means it was reaped). */
  #beaten = false;
  #wakeReader: (() => void) | undefined;
  #refresh: ReturnType<typeof setInterval> | undefined;
  #beat: ReturnType<typeof setInterval> | undefined;

  constructor(options: RedisEngineOptions) {
    this.#limits = { ...HISTORY_DEFAULTS, ...Object.fromEntries(Object.entries(options.history ?? {}).filter(([, value]) => value !== undefined)) };
    this.#dedupWindow = options.dedupWindow ?? 4096;
    this.#sessionTtlMs = options.sessionTtlMs ?? 60_000;
    this.#nodeTimeoutMs = options.nodeTimeoutMs ?? 5_000;
    this.#maxBacklog = Math.max(options.maxBacklog ?? 100_000, this.#limits.maxLength);
    this.#inbox = `${PREFIX}i:${this.#node}`;
    this.#clientsKey = `${PREFIX}nc:${this.#node}`;
    // Fail fast while disconnected (a typed refusal beats a command waiting in a queue), reconnect forever.
    const common = { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false, retryStrategy: (times: number) => Math.min(50 * times, 1000) };
    this.#redis = new Redis(options.url, common) as Redis & Scripts;
    this.#reader = new Redis(options.url, { ...common, connectionName: `switchyard-reader-${this.#node}` });
    this.#redis.defineCommand('syPublish', { numberOfKeys: 1, lua: PUBLISH_SCRIPT });
    this.#redis.defineCommand('syWatch', { numberOfKeys: 0, lua: WATCH_SCRIPT });
    this.#redis.defineCommand('syUnwatch', { numberOfKeys: 0, lua: UNWATCH_SCRIPT });
    this.#redis.defineCommand('syRead', { numberOfKeys: 0, lua: READ_SCRIPT });
    this.#redis.defineCommand('syClients', { numberOfKeys: 1, lua: CLIENTS_SCRIPT });
    this.#redis.defineCommand('syClaim', { numberOfKeys: 1, lua: CLAIM_SCRIPT });
    this.#redis.defineCommand('syForget', { numberOfKeys: 2, lua: FORGET_SCRIPT });
    this.#redis.defineCommand('syPresence', { numberOfKeys: 0, lua: PRESENCE_SCRIPT });
    this.#redis.defineCommand('syBeat', { numberOfKeys: 0, lua: BEAT_SCRIPT });
    this.#redis.on('error', () => undefined);
    this.#reader.on('error', () => undefined);
    this.#redis.on('close', () => this.#lost());
    this.#redis.on('ready', () => void this.#resynchronise());
    this.#reader.on('ready', () => this.#wakeReader?.());
  }

  /** Connects both connections; rejects when Redis cannot be reached at start. */
  async connect(): Promise<void> {
    await Promise.all([this.#redis.connect(), this.#reader.connect()]);
    await this.#whenConnected();
  }

  start(host: EngineHost): void {
    this.#host = host;
    this.#positions.set(this.#inbox, { id: '0-0', n: -1 });
    this.#positions.set(`${PREFIX}s:all`, null);
    if (this.#connected) void this.#resynchronise();
    void this.#readLoop();
    this.#refresh = setInterval(() => this.#refreshSessions(), this.#sessionTtlMs / 3);
    this.#refresh.unref?.();
    this.#beat = setInterval(() => {
      if (!this.#connected) return;
      this.#beatOnce().then((registered) => {
        if (registered || this.#closed) return;
        // Found dead while alive (a beat came too late): its readings and clients were dropped; record them again.
        this.#host!.log(`node ${this.#node}: was taken for dead by the other nodes; registering its streams and clients again`);
        void this.#resynchronise();
      }, noop);
    }, Math.min(1000, this.#nodeTimeoutMs / 3));
    this.#beat.unref?.();
  }

  status(): EngineStatus {
    return { engine: 'redis', node: this.#node, connected: this.#connected };
  }

  publish(publication: Publication, done: (outcome: PublishOutcome) => void): void {
    const { target, event, lane, dedup } = publication;
    if (!this.#connected) {
      // Alone: this node's own recipients still get what needs no guarantee; an acknowledgement would be a lie.
      if (dedup) return done(UNAVAILABLE);
      this.#host!.deliver(target, event, lane, undefined);
      return done(OK);
    }
    const frame = toRedis(encodeEnvelope(event));
    const dedupKey = dedup ? `${PREFIX}d:${dedup.clientId}` : '';
    const id = dedup?.id ?? '';
    // One callback per command (no promise chain): this is the hot path.
    if ('client' in target || 'ids' in target) {
      const ids = 'client' in target ? [target.client] : target.ids;
      this.#redis.syClients(dedupKey || this.#inbox, id, this.#dedupWindow, this.#sessionTtlMs, frame, lane, 'client' in target ? '1' : '0', `${PREFIX}c:`, `${PREFIX}i:`, ...ids, (error: Error | null, found: number) => {
        if (error) done(UNAVAILABLE);
        else if (found === -1) done({ ok: false, code: 'ERR_UNKNOWN_CLIENT', message: `no client '${ids[0]}'` });
        else done(found === -2 ? DUPLICATE : OK);
      });
      return;
    }
    const channel = 'all' in target ? 'all' : 'room' in target ? `room:${target.room}` : `topic:${target.topic}`;
    const [minKeep, maxAgeMs] = this.#historyOf(channel);
    this.#redis.syPublish(dedupKey || `${PREFIX}s:${channel}`, PREFIX, channel, minKeep, maxAgeMs, this.#maxBacklog, id, this.#dedupWindow, this.#sessionTtlMs, frame, lane, (error: Error | null, appended: string | null) => {
      done(error ? UNAVAILABLE : appended === null ? DUPLICATE : OK);
    });
  }

  watch(channel: Channel, done: (error?: string) => void): void {
    const stream = `${PREFIX}s:${channel}`;
    if (this.#positions.has(stream)) return done();
    this.#positions.set(stream, null);
    if (!this.#connected) return done();
    // From the stream's current end: what is published once the join is acknowledged arrives here.
    this.#startReading(channel).then(
      () => {
        this.#wakeReader?.();
        this.#poke();
        done();
      },
      () => done(),
    );
  }

  unwatch(channel: Channel): void {
    this.#positions.delete(`${PREFIX}s:${channel}`);
    if (this.#connected) this.#redis.syUnwatch(PREFIX, channel, this.#node, this.#historyOf(channel)[1]).catch(noop);
  }

  position(channel: Channel): string | undefined {
    return this.#positions.get(`${PREFIX}s:${channel}`)?.id;
  }

  /**
   * The entries after `offset`, read from the offset itself: complete only when that entry is still
   * there (streams are trimmed from the oldest end, so nothing after it is gone), no entry is older
   * than the history's age, and no more than the history's length (plus slack) came after it (a
   * slow reader may hold more in the stream: then the newest that many are answered, incomplete).
   * Conservative: an offset whose own entry was just trimmed is answered incomplete even when
   * nothing after it was.
   */
  history(channel: Channel, offset: string, done: (answer: HistoryAnswer) => void): void {
    if (!this.#connected) return done({ entries: [], complete: false });
    void this.#history(`${PREFIX}s:${channel}`, offset).then(done, () => done({ entries: [], complete: false }));
  }

  async #history(stream: string, offset: string): Promise<HistoryAnswer> {
    const limit = this.#limits.maxLength + 128;
    let range = await this.#redis.xrangeBuffer(stream, offset, '+', 'COUNT', limit + 2);
    let complete = range.length > 0 && range[0]![0].toString() === offset;
    if (range.length > limit + 1) {
      complete = false;
      range = (await this.#redis.xrevrangeBuffer(stream, '+', `(${offset}`, 'COUNT', limit)).reverse();
    }
    const oldest = Date.now() - this.#limits.maxAgeMs;
    const entries: HistoryEntry[] = [];
    for (const [idBuffer, values] of range) {
      const id = idBuffer.toString();
      if (id === offset) continue;
      // Trimming by age is approximate (whole stream nodes), and a slow reader may hold older entries: they are not history.
      if (Number(id.slice(0, id.indexOf('-'))) < oldest) {
        complete = false;
        continue;
      }
      const entry = parseEntry(values);
      if (entry?.event?.t === 'message') entries.push({ offset: id, event: entry.event, lane: entry.lane });
    }
    return { entries, complete };
  }

  register(clientId: string, session: SessionRecord, done: () => void): void {
    this.#sessions.set(clientId, { secret: session.secret, userId: session.userId, channels: new Set(), graceMs: undefined });
    if (!this.#connected) return done();
    this.#writeSession(clientId).then(done, done);
  }

  claim(clientId: string, secret: string, newSecret: string, done: (session: SessionRecord | undefined) => void): void {
    if (!this.#connected) return done(undefined);
    this.#redis.syClaim(`${PREFIX}c:${clientId}`, secret, newSecret, this.#node, this.#sessionTtlMs, `${PREFIX}i:`, clientId).then(
      (flat) => {
        if (!flat) return done(undefined);
        const session: SessionRecord = { secret: newSecret, userId: undefined, rooms: [], topics: [] };
        const local: LocalSession = { secret: newSecret, userId: undefined, channels: new Set(), graceMs: undefined };
        for (let i = 0; i + 1 < flat.length; i += 2) {
          const field = flat[i]!;
          if (field === 'user') session.userId = local.userId = flat[i + 1];
          else if (field.startsWith('room:')) session.rooms.push(field.slice(5));
          else if (field.startsWith('topic:')) session.topics.push(field.slice(6));
        }
        this.#sessions.set(clientId, local);
        this.#redis.sadd(this.#clientsKey, clientId).catch(noop);
        done(session);
      },
      () => done(undefined),
    );
  }

  renew(clientId: string, secret: string): void {
    const local = this.#sessions.get(clientId);
    if (local) local.secret = secret;
    if (this.#connected) this.#redis.hset(`${PREFIX}c:${clientId}`, 'secret', secret, 'node', this.#node).catch(noop);
  }

  membership(clientId: string, channel: Channel, member: boolean): void {
    const local = this.#sessions.get(clientId);
    if (member) local?.channels.add(channel);
    else local?.channels.delete(channel);
    if (!this.#connected) return;
    const key = `${PREFIX}c:${clientId}`;
    (member ? this.#redis.hset(key, channel, '1') : this.#redis.hdel(key, channel)).catch(noop);
    if (channel.startsWith('room:')) {
      const [minKeep, maxAgeMs] = this.#historyOf(channel);
      this.#redis.syPresence(PREFIX, channel.slice(5), clientId, this.#node, member ? 'join' : 'leave', minKeep, maxAgeMs, this.#maxBacklog).catch(noop);
    }
  }

  presence(room: string, done: (clientIds: string[]) => void): void {
    if (!this.#connected) return done(this.#host!.localMembers(room));
    this.#redis.hkeys(`${PREFIX}p:${room}`).then(done, () => done(this.#host!.localMembers(room)));
  }

  suspend(clientId: string, graceMs: number): void {
    const local = this.#sessions.get(clientId);
    if (local) local.graceMs = graceMs;
    if (this.#connected) this.#redis.pexpire(`${PREFIX}c:${clientId}`, graceMs).catch(noop);
  }

  reattach(clientId: string): void {
    const local = this.#sessions.get(clientId);
    if (local) local.graceMs = undefined;
    if (this.#connected) this.#redis.pexpire(`${PREFIX}c:${clientId}`, this.#sessionTtlMs).catch(noop);
  }

  forget(clientId: string): void {
    this.#sessions.delete(clientId);
    if (!this.#connected) return;
    this.#redis.syForget(`${PREFIX}c:${clientId}`, `${PREFIX}d:${clientId}`, this.#node).catch(noop);
    this.#redis.srem(this.#clientsKey, clientId).catch(noop);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#refresh);
    clearInterval(this.#beat);
    this.#wakeReader?.();
    this.#reader.disconnect();
    // Gone on purpose: without its liveness key the next beat of any node reaps it at once (its
    // clients leave their rooms, the streams stop waiting for it), rather than after nodeTimeoutMs.
    if (this.#connected) await this.#redis.del(`${PREFIX}n:${this.#node}`).catch(noop);
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }

  /** A channel's history bounds: entries kept past the slowest reader, and their age (0: no expiry). */
  #historyOf(channel: string): [number, number] {
    return channel === 'all' ? [BROADCAST_LENGTH, 0] : [this.#limits.maxLength, this.#limits.maxAgeMs];
  }

  #beatOnce(): Promise<boolean> {
    return this.#redis.syBeat(PREFIX, this.#node, this.#nodeTimeoutMs, this.#limits.maxLength, this.#limits.maxAgeMs, this.#maxBacklog).then((registered) => {
      const first = !this.#beaten;
      this.#beaten = true;
      return first || registered === 1;
    });
  }

  /** Registers this node as a reader of a channel's stream at its end, unless it stopped watching meanwhile. */
  async #startReading(channel: string): Promise<void> {
    const stream = `${PREFIX}s:${channel}`;
    const [minKeep, maxAgeMs] = this.#historyOf(channel);
    const [id, n] = await this.#redis.syWatch(PREFIX, channel, this.#node, minKeep, maxAgeMs, this.#maxBacklog);
    if (!this.#positions.has(stream)) this.#redis.syUnwatch(PREFIX, channel, this.#node, maxAgeMs).catch(noop);
    else if (this.#positions.get(stream) === null) this.#positions.set(stream, { id, n: Number(n) });
  }

  #whenConnected(): Promise<void> {
    if (this.#connected) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => (this.#connected || this.#closed ? resolve() : setTimeout(check, 10));
      check();
    });
  }

  #lost(): void {
    if (!this.#connected || this.#closed) return;
    this.#connected = false;
    this.#host?.log(`node ${this.#node}: Redis connection lost; serving local clients only, acknowledged sends refused (ERR_CLUSTER_UNAVAILABLE) until it is back`);
  }

  /**
   * (Re)connected, or found reaped: writes this node's sessions and memberships again, records it
   * again as a reader where it was one (at the position it had: if the stream was trimmed past it
   * meanwhile, the gap shows in the entries' counts), stops reading streams it left meanwhile, finds
   * the end of streams watched meanwhile, reads on.
   */
  async #resynchronise(): Promise<void> {
    try {
      // Registered as live before any client is recorded under this node, so a node killed within
      // its first beat interval is still found dead and its clients leave.
      await this.#beatOnce();
      const pipeline = this.#redis.pipeline();
      for (const clientId of this.#sessions.keys()) this.#sessionWrites(pipeline, clientId);
      const watched = `${PREFIX}nw:${this.#node}`;
      for (const [stream, position] of this.#positions) {
        if (!position || stream === this.#inbox) continue;
        const channel = stream.slice(PREFIX.length + 2);
        pipeline.hset(`${PREFIX}r:${channel}`, this.#node, `${position.n}:${position.id}`).persist(stream).persist(`${PREFIX}r:${channel}`).sadd(watched, channel);
      }
      await pipeline.exec();
      for (const channel of await this.#redis.smembers(watched)) {
        if (!this.#positions.has(`${PREFIX}s:${channel}`)) await this.#redis.syUnwatch(PREFIX, channel, this.#node, this.#historyOf(channel)[1]);
      }
      for (const [stream, position] of this.#positions) if (position === null) await this.#startReading(stream.slice(PREFIX.length + 2));
    } catch {
      return; // Lost again: the next 'ready' tries again.
    }
    const wasDown = this.#host !== undefined && !this.#connected;
    if (this.#closed) return;
    this.#connected = true;
    if (wasDown) this.#host!.log(`node ${this.#node}: Redis connection back; sessions and memberships written again, reading on from where it stopped`);
    this.#wakeReader?.();
  }

  #writeSession(clientId: string): Promise<unknown> {
    const pipeline = this.#redis.pipeline();
    this.#sessionWrites(pipeline, clientId);
    return pipeline.exec();
  }

  #sessionWrites(pipeline: ReturnType<Redis['pipeline']>, clientId: string): void {
    const local = this.#sessions.get(clientId)!;
    const key = `${PREFIX}c:${clientId}`;
    const fields: string[] = ['node', this.#node, 'secret', local.secret];
    if (local.userId !== undefined) fields.push('user', local.userId);
    for (const channel of local.channels) fields.push(channel, '1');
    pipeline.hset(key, ...fields);
    pipeline.pexpire(key, local.graceMs ?? this.#sessionTtlMs);
    pipeline.sadd(this.#clientsKey, clientId);
    // Through the presence script: a member missing from the room's list (this node was taken for dead, or Redis lost it) is announced again.
    const [minKeep, maxAgeMs] = [this.#limits.maxLength, this.#limits.maxAgeMs];
    for (const channel of local.channels) if (channel.startsWith('room:')) void (pipeline as unknown as Scripts).syPresence(PREFIX, channel.slice(5), clientId, this.#node, 'join', minKeep, maxAgeMs, this.#maxBacklog);
  }

  /** Connected clients' sessions outlive this node by sessionTtlMs only: refreshed here while it lives. */
  #refreshSessions(): void {
    if (!this.#connected) return;
    const pipeline = this.#redis.pipeline();
    for (const [clientId, local] of this.#sessions) if (local.graceMs === undefined) pipeline.pexpire(`${PREFIX}c:${clientId}`, this.#sessionTtlMs);
    pipeline.exec().catch(noop);
  }

  /** Ends a blocked XREAD so a newly watched stream is read at once: a wake entry in this node's inbox. */
  #poke(): void {
    if (this.#connected) this.#redis.xadd(this.#inbox, 'MAXLEN', '~', INBOX_LENGTH, '*', 'x', 'wake').catch(noop);
  }

  /**
   * Records in Redis how far this node has read (what the streams may be trimmed up to), one
   * script at a time and at most every RECORD_EVERY_MS: positions read meanwhile wait for the next.
   */
  #recordPositions(): void {
    if (this.#recording || this.#unrecorded.size === 0) return;
    this.#recording = true;
    setTimeout(() => this.#recordNow(), RECORD_EVERY_MS).unref?.();
  }

  #recordNow(): void {
    if (!this.#connected || this.#closed) {
      this.#recording = false;
      return;
    }
    const args: string[] = [];
    let inboxPosition = '';
    for (const stream of this.#unrecorded) {
      const position = this.#positions.get(stream);
      if (!position) continue;
      if (stream === this.#inbox) inboxPosition = position.id;
      // An entry without a count (not one this engine wrote) leaves the last good record in place: it only keeps more.
      else if (position.n >= 0) args.push(stream.slice(PREFIX.length + 2), `${position.n}:${position.id}`);
    }
    this.#unrecorded.clear();
    this.#redis.syRead(PREFIX, this.#node, this.#inbox, inboxPosition, ...args).then(
      () => {
        this.#recording = false;
        this.#recordPositions();
      },
      () => (this.#recording = false),
    );
  }

  async #readLoop(): Promise<void> {
    while (!this.#closed) {
      if (!this.#connected || this.#reader.status !== 'ready') {
        await new Promise<void>((resolve) => {
          this.#wakeReader = resolve;
          setTimeout(resolve, 250);
        });
        continue;
      }
      const streams: string[] = [];
      const ids: string[] = [];
      for (const [stream, position] of this.#positions) {
        if (position === null) continue;
        streams.push(stream);
        ids.push(position.id);
      }
      let reply: XReadReply;
      try {
        reply = (await this.#reader.xreadBuffer('COUNT', READ_BATCH, 'BLOCK', BLOCK_MS, 'STREAMS', ...streams, ...ids)) as XReadReply;
      } catch {
        continue;
      }
      if (!reply) continue;
      // One reply is a snapshot of every stream: taken in id (time) order across streams, a sender's
      // room message and its unicast that followed arrive in the order they were sent.
      const batch: [string, string, Buffer[]][] = [];
      for (const [streamBuffer, entries] of reply) {
        const stream = streamBuffer.toString();
        for (const [idBuffer, values] of entries) batch.push([stream, idBuffer.toString(), values]);
      }
      if (reply.length > 1) batch.sort((x, y) => compareOffsets(x[1], y[1]));
      this.#take(batch);
      this.#recordPositions();
    }
  }

  /**
   * Delivers what the streams brought, past this node's position in each (a re-watched stream may
   * bring older entries again). An entry whose count does not follow the last one read means
   * entries were trimmed before this node read them (it was more than the backlog behind, or taken
   * for dead): its members there are told before any later message reaches them, so their offsets
   * still point before the gap.
   */
  #take(batch: [string, string, Buffer[]][]): void {
    for (const [stream, id, values] of batch) {
      const position = this.#positions.get(stream);
      if (!position || compareOffsets(id, position.id) <= 0) continue;
      const entry = parseEntry(values);
      const n = entry?.n ?? -1;
      if (position.n >= 0 && n >= 0 && n !== position.n + 1) this.#fellBehind(stream, position, id);
      position.id = id;
      position.n = n;
      this.#unrecorded.add(stream);
      if (!entry) continue;
      try {
        this.#dispatch(stream, id, entry);
      } catch (error) {
        this.#host!.log(`node ${this.#node}: delivering ${stream} ${id} failed: ${(error as Error).message}`);
      }
    }
  }

  #fellBehind(stream: string, position: Position, next: string): void {
    const channel = stream.slice(PREFIX.length + 2);
    this.#host!.log(`node ${this.#node}: fell behind ${channel} (entries after ${position.id}, count ${position.n}, up to ${next} were trimmed unread)${channel === 'all' ? '' : '; its members here resume to learn it'}`);
    if (channel !== 'all') this.#host!.fellBehind(channel as Channel);
  }

  #dispatch(stream: string, id: string, entry: ParsedEntry): void {
    const host = this.#host!;
    if (stream === this.#inbox) {
      if (entry.control === 'release' && entry.clients) {
        this.#sessions.delete(entry.clients);
        this.#redis.srem(this.#clientsKey, entry.clients).catch(noop);
        host.release(entry.clients);
      }
      if (!entry.event || !entry.clients) return;
      const ids = entry.clients.split(',');
      host.deliver(ids.length === 1 ? { client: ids[0]! } : { ids }, entry.event, entry.lane, undefined);
      return;
    }
    const name = stream.slice(PREFIX.length + 2);
    if ((entry.control === 'join' || entry.control === 'leave') && entry.clients && name.startsWith('room:')) {
      host.presence(name.slice(5), entry.clients, entry.control);
      return;
    }
    if (!entry.event || entry.event.t !== 'message') return;
    if (name === 'all') host.deliver({ all: true }, entry.event, entry.lane, undefined);
    else if (name.startsWith('room:')) host.deliver({ room: name.slice(5) }, entry.event, entry.lane, id);
    else if (name.startsWith('topic:')) host.deliver({ topic: name.slice(6) }, entry.event, entry.lane, id);
  }
}

interface ParsedEntry {
  /** The entry's count in its stream (rooms, topics, broadcast). */
  n: number | undefined;
  event: Delivery | ReceiptEvent | undefined;
  lane: Lane;
  clients: string | undefined;
  control: string | undefined;
}

/** A stream entry's fields: `n` its count, `e` the encoded event, `l` its lane, `c` recipients or subject, `x` a control word. */
function parseEntry(values: Buffer[]): ParsedEntry | undefined {
  const parsed: ParsedEntry = { n: undefined, event: undefined, lane: 'reliable', clients: undefined, control: undefined };
  for (let i = 0; i + 1 < values.length; i += 2) {
    const field = values[i]!.toString();
    const value = values[i + 1]!;
    if (field === 'e') {
      // Binary envelopes start with 0xB1; JSON ones with '{'.
      const frame = value[0] === 0xb1 ? new Uint8Array(value.buffer, value.byteOffset, value.byteLength) : value.toString('utf8');
      try {
        const envelope = decodeEnvelope(frame);
        if (envelope.t === 'message' || (envelope.t === 'ack' && envelope.from !== undefined)) parsed.event = envelope as Delivery | ReceiptEvent;
      } catch {
        return undefined;
      }
    } else if (field === 'l') parsed.lane = value.toString() as Lane;
    else if (field === 'c') parsed.clients = value.toString();
    else if (field === 'x') parsed.control = value.toString();
    else if (field === 'n') parsed.n = Number(value.toString());
  }
  return parsed;
}

function toRedis(frame: string | Uint8Array): string | Buffer {
  return typeof frame === 'string' ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
}

function noop(): void {}
