/**
 * The in-memory engine (the default): one process is the whole server. A message is delivered in
 * the turn it is published; rooms and topics with members keep a bounded history (count, age,
 * bytes) so a client that resumes within the grace period gets what it missed. Sessions are the
 * router's own: nothing to claim from elsewhere.
 *
 * Offsets are `<sequence>-<epoch>`: one sequence for the process, so each channel's offsets grow,
 * and a random epoch, so an offset from an earlier process is never taken for one of this one.
 */
import { randomId } from '../transports/random-id.ts';
import {
  channelOf,
  HISTORY_DEFAULTS,
  type Channel,
  type EngineHost,
  type EngineStatus,
  type HistoryAnswer,
  type HistoryEntry,
  type HistoryOptions,
  type Publication,
  type PublishOutcome,
  type RouterEngine,
  type SessionRecord,
} from './engine.ts';

interface Stored extends HistoryEntry {
  sequence: number;
  at: number;
  size: number;
}

interface History {
  entries: Stored[];
  /** Index of the oldest kept entry in `entries` (dropped ones are spliced out in batches). */
  head: number;
  bytes: number;
  /** Every message of this channel up to this sequence is gone (or came before the history began). */
  lostThrough: number;
}

const OK: PublishOutcome = { ok: true };

export class MemoryEngine implements RouterEngine {
  readonly #limits: Required<HistoryOptions>;
  readonly #epoch = String(Math.floor(Math.random() * 2 ** 31));
  readonly #node = randomId(8);
  readonly #histories = new Map<Channel, History>();
  #sequence = 0;
  #host: EngineHost | undefined;

  constructor(history: HistoryOptions = {}) {
    this.#limits = { ...HISTORY_DEFAULTS, ...Object.fromEntries(Object.entries(history).filter(([, value]) => value !== undefined)) };
  }

  start(host: EngineHost): void {
    this.#host = host;
  }

  status(): EngineStatus {
    return { engine: 'memory', node: this.#node, connected: true };
  }

  publish(publication: Publication, done: (outcome: PublishOutcome) => void): void {
    const { target, event, lane } = publication;
    if ('client' in target && !this.#host!.hasClient(target.client)) {
      done({ ok: false, code: 'ERR_UNKNOWN_CLIENT', message: `no client '${target.client}'` });
      return;
    }
    const channel = channelOf(target);
    const history = channel && event.t === 'message' ? this.#histories.get(channel) : undefined;
    let offset: string | undefined;
    if (history && event.t === 'message') {
      const sequence = ++this.#sequence;
      offset = `${sequence}-${this.#epoch}`;
      history.entries.push({ offset, event, lane, sequence, at: Date.now(), size: publication.size });
      history.bytes += publication.size;
      this.#trim(history);
    }
    this.#host!.deliver(target, event, lane, offset);
    done(OK);
  }

  watch(channel: Channel, done: (error?: string) => void): void {
    if (!this.#histories.has(channel)) this.#histories.set(channel, { entries: [], head: 0, bytes: 0, lostThrough: this.#sequence });
    done();
  }

  unwatch(channel: Channel): void {
    this.#histories.delete(channel);
  }

  position(channel: Channel): string | undefined {
    return this.#histories.has(channel) ? `${this.#sequence}-${this.#epoch}` : undefined;
  }

  history(channel: Channel, offset: string, done: (answer: HistoryAnswer) => void): void {
    const history = this.#histories.get(channel);
    const dash = offset.indexOf('-');
    const sequence = Number(offset.slice(0, dash));
    if (!history || offset.slice(dash + 1) !== this.#epoch || sequence > this.#sequence) {
      done({ entries: [], complete: false });
      return;
    }
    this.#trim(history);
    const complete = sequence >= history.lostThrough;
    const entries: HistoryEntry[] = [];
    for (let i = history.head; i < history.entries.length; i++) {
      const entry = history.entries[i]!;
      if (entry.sequence > sequence) entries.push({ offset: entry.offset, event: entry.event, lane: entry.lane });
    }
    done({ entries, complete });
  }

  /** Drops the oldest entries past the count, byte and age limits. */
  #trim(history: History): void {
    const oldest = Date.now() - this.#limits.maxAgeMs;
    while (history.head < history.entries.length) {
      const entry = history.entries[history.head]!;
      const kept = history.entries.length - history.head;
      if (kept <= this.#limits.maxLength && history.bytes <= this.#limits.maxBytes && entry.at >= oldest) break;
      history.bytes -= entry.size;
      history.lostThrough = entry.sequence;
      history.head++;
    }
    // Splice dropped entries out once they are a good share of the array (amortised O(1) per message).
    if (history.head > 64 && history.head * 2 > history.entries.length) {
      history.entries.splice(0, history.head);
      history.head = 0;
    }
  }

  register(_clientId: string, _session: SessionRecord, done: () => void): void {
    done();
  }

  claim(_clientId: string, _secret: string, _newSecret: string, done: (session: SessionRecord | undefined) => void): void {
    done(undefined);
  }

  membership(clientId: string, channel: Channel, member: boolean): void {
    if (channel.startsWith('room:')) this.#host!.presence(channel.slice(5), clientId, member ? 'join' : 'leave');
  }

  presence(room: string, done: (clientIds: string[]) => void): void {
    done(this.#host!.localMembers(room));
  }

  renew(): void {}
  suspend(): void {}
  reattach(): void {}
  forget(): void {}

  async close(): Promise<void> {
    this.#histories.clear();
  }
}
