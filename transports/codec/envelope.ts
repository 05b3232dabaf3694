/**
 * The Switchyard envelope, protocol version 1 (PRODUCT.md §3): typed commands and deliveries.
 *
 * Two encodings, both accepted on every transport:
 * - JSON text (`{"v":1,"t":"join","room":"lobby"}`) for control messages and structured payloads;
 * - a compact binary form for the envelopes that carry a binary payload (publish, send, multicast,
 *   broadcast, message), so bytes are never base64-inflated:
 *
 *     0xB1 | type | flags | fields… | payload
 *
 *   flags bit 0: an `id` field follows; bit 1: recipient receipt asked (`receipt`); on a `message`,
 *   bit 2: a `user` field follows, bit 3: an `offset` field follows (last).
 *   Fields are varint-length-prefixed UTF-8 strings in a fixed order per type (see BINARY_FIELDS);
 *   a multicast names its target kind in one byte and an id list as a varint count of strings.
 *   The payload is the rest of the frame.
 *
 * `encodeEnvelope` picks the binary form exactly when `data` is a Uint8Array. Decoding never
 * returns a half-valid value: every problem is an EnvelopeError with a stable code.
 * Pure functions; no I/O.
 */
import { ProtocolError } from '../errors.ts';
import { allocBytes } from './bytes.ts';
import { utf8Length, writeUtf8 } from './utf8.ts';
import { readVarint, varintLength, writeVarint } from './varint.ts';

export const PROTOCOL_VERSION = 1;

/** JSON-compatible values (what a JSON payload may hold). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** A payload: structured JSON or raw bytes. */
export type Payload = Json | Uint8Array;

/** Where a multicast goes. */
export type MulticastTarget = { room: string } | { topic: string } | { ids: string[] };

/** How a delivery reached its recipient. */
export type DeliveryKind = 'broadcast' | 'send' | 'room' | 'topic' | 'ids';

/** Fields any client command may carry for acknowledged delivery. */
interface Acked {
  /** Sender-chosen message id: the server answers with an `ack` of the same id; retries reuse it. */
  id?: string;
  /** Ask recipients for a receipt too (delivered to the sender as `ack` with `from`). */
  receipt?: boolean;
}

export type ClientCommand =
  | {
      t: 'hello';
      token?: string;
      resume?: { clientId: string; secret: string };
      /** With `resume`: the offset of the last message received per room and topic (`room:<name>`, `topic:<name>`), to get what came after. */
      offsets?: Record<string, string>;
    }
  | ({ t: 'join'; room: string } & Acked)
  | ({ t: 'leave'; room: string } & Acked)
  | ({ t: 'subscribe'; topic: string } & Acked)
  | ({ t: 'unsubscribe'; topic: string } & Acked)
  | ({ t: 'publish'; topic: string; data: Payload } & Acked)
  | ({ t: 'send'; to: string; data: Payload } & Acked)
  | ({ t: 'multicast'; target: MulticastTarget; data: Payload } & Acked)
  | ({ t: 'broadcast'; data: Payload } & Acked);

export type ServerEvent =
  | {
      t: 'welcome';
      clientId: string;
      secret: string;
      resumed: boolean;
      heartbeatMs: number;
      maxMessageSize: number;
      /**
       * Answers a hello that gave `offsets`: true when every message after them follows (before any
       * live one), false when some could not be recovered (outside the history, or no session).
       */
      recovered?: boolean;
    }
  | {
      t: 'message';
      from: string;
      kind: DeliveryKind;
      /** Room or topic name for room/topic deliveries. */
      to?: string;
      data: Payload;
      id?: string;
      receipt?: boolean;
      /** The sender's user id, as the server's `authenticate` hook named it. */
      user?: string;
      /** Position in the room's or topic's history: what a resuming client names to get what came after. */
      offset?: string;
    }
  | { t: 'error'; code: string; message: string; ref?: string };

/** Either direction: receipts and heartbeats. `from` on an ack names the recipient that confirmed. */
export type Shared =
  | {
      t: 'ack';
      id: string;
      from?: string;
      to?: string;
      /** On the ack of a join or subscribe: the history offset from which its messages come live (a resume before any arrived names it). */
      offset?: string;
    }
  | { t: 'ping'; ts: number }
  | { t: 'pong'; ts: number };

export type Envelope = ClientCommand | ServerEvent | Shared;
export type EnvelopeType = Envelope['t'];

/** Envelope decode failures. `code` is one of the ERR_ENVELOPE_* constants. */
export class EnvelopeError extends ProtocolError {}

const BINARY_MAGIC = 0xb1;
const FLAG_ID = 1;
const FLAG_RECEIPT = 2;
/** A `message` names its sender's user id (after `to`). */
const FLAG_USER = 4;
/** A `message` carries its history offset (after `user`). */
const FLAG_OFFSET = 8;

/** Binary type codes (only payload-carrying envelopes have one). */
const BINARY_TYPE = { publish: 1, send: 2, multicast: 3, broadcast: 4, message: 5 } as const;
type BinaryType = keyof typeof BINARY_TYPE;
const BINARY_TYPE_BY_CODE = new Map<number, BinaryType>(
  Object.entries(BINARY_TYPE).map(([name, code]) => [code, name as BinaryType]),
);
const DELIVERY_KINDS: readonly DeliveryKind[] = ['broadcast', 'send', 'room', 'topic', 'ids'];
const TARGET_ROOM = 0;
const TARGET_TOPIC = 1;
const TARGET_IDS = 2;

const textDecoder = new TextDecoder('utf-8', { fatal: true });
/** A decoded envelope's data until its payload is read (the payload is read last). */
const EMPTY = new Uint8Array(0);

/** Encodes an envelope: binary when `data` is bytes, JSON text otherwise. */
export function encodeEnvelope(envelope: Envelope): string | Uint8Array {
  if ('data' in envelope && envelope.data instanceof Uint8Array) return encodeBinary(envelope as BinaryEnvelope);
  return JSON.stringify({ v: PROTOCOL_VERSION, ...envelope });
}

/** Decodes a frame as it came off a transport: strings are JSON, bytes are the binary form. */
export function decodeEnvelope(frame: string | Uint8Array): Envelope {
  return typeof frame === 'string' ? decodeJson(frame) : decodeBinary(frame);
}

type BinaryEnvelope = Extract<Envelope, { t: BinaryType }> & { data: Uint8Array };

/** encodeBinary's working lists, reused (it runs once per message sent and is never re-entered): `fields` entries are valid. */
const fieldStrings: string[] = ['', '', '', '', ''];
const fieldLengths: number[] = [0, 0, 0, 0, 0];

function encodeBinary(envelope: BinaryEnvelope): Uint8Array {
  const strings = fieldStrings;
  let fields = 0;
  let targetKind = -1;
  let ids: readonly string[] = NO_IDS;
  if (envelope.id !== undefined) strings[fields++] = envelope.id;
  switch (envelope.t) {
    case 'publish':
      strings[fields++] = envelope.topic;
      break;
    case 'send':
      strings[fields++] = envelope.to;
      break;
    case 'broadcast':
      break;
    case 'multicast':
      if ('room' in envelope.target) {
        targetKind = TARGET_ROOM;
        strings[fields++] = envelope.target.room;
      } else if ('topic' in envelope.target) {
        targetKind = TARGET_TOPIC;
        strings[fields++] = envelope.target.topic;
      } else {
        targetKind = TARGET_IDS;
        ids = envelope.target.ids;
      }
      break;
    case 'message':
      strings[fields++] = envelope.from;
      strings[fields++] = envelope.to ?? '';
      if (envelope.user !== undefined) strings[fields++] = envelope.user;
      if (envelope.offset !== undefined) strings[fields++] = envelope.offset;
      break;
  }
  // Sized first, then written in place: no encoded copy of each string.
  const lengths = fieldLengths;
  let size = 3 + envelope.data.byteLength;
  for (let i = 0; i < fields; i++) {
    const length = utf8Length(strings[i]!);
    lengths[i] = length;
    size += varintLength(length) + length;
  }
  if (envelope.t === 'message') size += 1;
  if (targetKind >= 0) size += 1;
  const idLengths = targetKind === TARGET_IDS ? ids.map(utf8Length) : NO_LENGTHS;
  if (targetKind === TARGET_IDS) {
    size += varintLength(ids.length);
    for (const length of idLengths) size += varintLength(length) + length;
  }
  const out = allocBytes(size);
  out[0] = BINARY_MAGIC;
  out[1] = BINARY_TYPE[envelope.t];
  out[2] = (envelope.id !== undefined ? FLAG_ID : 0) | (envelope.receipt ? FLAG_RECEIPT : 0) | (envelope.t === 'message' && envelope.user !== undefined ? FLAG_USER : 0) | (envelope.t === 'message' && envelope.offset !== undefined ? FLAG_OFFSET : 0);
  let offset = 3;
  if (envelope.t === 'message') out[offset++] = DELIVERY_KINDS.indexOf(envelope.kind);
  if (targetKind >= 0) out[offset++] = targetKind;
  for (let i = 0; i < fields; i++) offset = writeString(out, offset, strings[i]!, lengths[i]!);
  if (targetKind === TARGET_IDS) {
    offset = writeVarint(out, offset, ids.length);
    for (let i = 0; i < ids.length; i++) offset = writeString(out, offset, ids[i]!, idLengths[i]!);
  }
  out.set(envelope.data, offset);
  return out;
}

const NO_IDS: readonly string[] = [];
const NO_LENGTHS: readonly number[] = [];

function writeString(out: Uint8Array, offset: number, text: string, length: number): number {
  return writeUtf8(out, writeVarint(out, offset, length), text, length);
}

/** Sequential reader over a binary envelope; every shortfall is ERR_ENVELOPE_TRUNCATED. */
class BinaryCursor {
  offset = 3;
  constructor(readonly bytes: Uint8Array) {}

  byte(): number {
    if (this.offset >= this.bytes.length) throw truncated();
    return this.bytes[this.offset++]!;
  }

  varint(): number {
    let read;
    try {
      read = readVarint(this.bytes, this.offset);
    } catch (cause) {
      throw new EnvelopeError('ERR_ENVELOPE_BAD_FIELD', 'length out of range', { cause });
    }
    if (!read) throw truncated();
    this.offset = read.next;
    return read.value;
  }

  string(field: string): string {
    const length = this.varint();
    if (this.offset + length > this.bytes.length) throw truncated();
    const start = this.offset;
    this.offset += length;
    const ascii = length <= SHORT_ASCII ? shortAscii(this.bytes, start, this.offset) : undefined;
    if (ascii !== undefined) return ascii;
    const slice = this.bytes.subarray(start, this.offset);
    try {
      return textDecoder.decode(slice);
    } catch (cause) {
      throw new EnvelopeError('ERR_ENVELOPE_BAD_FIELD', `field '${field}' is not valid UTF-8`, { cause, closeCode: 1007 });
    }
  }

  rest(): Uint8Array {
    return this.bytes.subarray(this.offset);
  }
}

/**
 * Fields up to this long that are ASCII (ids, topics, rooms: the usual case) are made with
 * String.fromCharCode, cheaper than a TextDecoder call, or taken from `recentFields`.
 */
const SHORT_ASCII = 64;

/**
 * Short ASCII fields decoded lately, by a hash of their bytes: the same few client ids and topics
 * recur in message after message, and a cached one costs a comparison instead of a new string.
 * 256 slots of at most SHORT_ASCII characters: bounded whatever arrives.
 */
const recentFields: (string | undefined)[] = new Array<string | undefined>(256).fill(undefined);

/** `bytes[start, end)` as a string when it is all ASCII, else undefined. */
function shortAscii(bytes: Uint8Array, start: number, end: number): string | undefined {
  let hash = end - start;
  for (let i = start; i < end; i++) {
    const byte = bytes[i]!;
    if (byte > 0x7f) return undefined;
    hash = (hash * 31 + byte) | 0;
  }
  const slot = hash & 255;
  const cached = recentFields[slot];
  if (cached !== undefined && cached.length === end - start) {
    let i = 0;
    while (i < cached.length && cached.charCodeAt(i) === bytes[start + i]) i++;
    if (i === cached.length) return cached;
  }
  const text = String.fromCharCode.apply(null, bytes.subarray(start, end) as unknown as number[]);
  recentFields[slot] = text;
  return text;
}

function truncated(): EnvelopeError {
  return new EnvelopeError('ERR_ENVELOPE_TRUNCATED', 'binary envelope ends before its fields do');
}

function decodeBinary(bytes: Uint8Array): Envelope {
  if (bytes.length < 3) throw truncated();
  if (bytes[0] !== BINARY_MAGIC) {
    throw new EnvelopeError('ERR_ENVELOPE_VERSION', `binary envelope starts with 0x${bytes[0]!.toString(16)}, expected 0xb1 (version 1)`);
  }
  const type = BINARY_TYPE_BY_CODE.get(bytes[1]!);
  if (!type) throw new EnvelopeError('ERR_ENVELOPE_UNKNOWN_TYPE', `unknown binary envelope type ${bytes[1]}`);
  const flags = bytes[2]!;
  if (flags & ~(FLAG_ID | FLAG_RECEIPT | (type === 'message' ? FLAG_USER | FLAG_OFFSET : 0))) throw new EnvelopeError('ERR_ENVELOPE_BAD_FIELD', `unknown flags 0x${flags.toString(16)}`);
  const cursor = new BinaryCursor(bytes);
  const acked: Acked = {};
  switch (type) {
    case 'message': {
      const kind = DELIVERY_KINDS[cursor.byte()];
      if (!kind) throw new EnvelopeError('ERR_ENVELOPE_BAD_FIELD', 'unknown delivery kind');
      // Built field by field, not spread from optional parts: this runs once per message received.
      const id = flags & FLAG_ID ? cursor.string('id') : undefined;
      const from = cursor.string('from');
      const to = cursor.string('to');
      const message: Extract<Envelope, { t: 'message' }> = { t: 'message', kind, from, data: EMPTY };
      if (to) message.to = to;
      if (flags & FLAG_USER) message.user = cursor.string('user');
      if (flags & FLAG_OFFSET) message.offset = cursor.string('offset');
      if (id !== undefined) message.id = id;
      if (flags & FLAG_RECEIPT) message.receipt = true;
      message.data = cursor.rest();
      return message;
    }
    case 'multicast': {
      const kind = cursor.byte();
      if (flags & FLAG_ID) acked.id = cursor.string('id');
      if (flags & FLAG_RECEIPT) acked.receipt = true;
      let target: MulticastTarget;
      if (kind === TARGET_ROOM) target = { room: cursor.string('room') };
      else if (kind === TARGET_TOPIC) target = { topic: cursor.string('topic') };
      else if (kind === TARGET_IDS) {
        const count = cursor.varint();
        // Each id needs at least one byte, so a count beyond the remaining bytes is a lie.
        if (count > bytes.length - cursor.offset) throw truncated();
        const ids: string[] = [];
        for (let i = 0; i < count; i++) ids.push(cursor.string('ids'));
        target = { ids };
      } else throw new EnvelopeError('ERR_ENVELOPE_BAD_FIELD', `unknown multicast target kind ${kind}`);
      return { t: 'multicast', target, ...acked, data: cursor.rest() };
    }
    default: {
      const id = flags & FLAG_ID ? cursor.string('id') : undefined;
      const command: Extract<Envelope, { t: 'publish' | 'send' | 'broadcast' }> =
        type === 'publish' ? { t: 'publish', topic: cursor.string('topic'), data: EMPTY } : type === 'send' ? { t: 'send', to: cursor.string('to'), data: EMPTY } : { t: 'broadcast', data: EMPTY };
      if (id !== undefined) command.id = id;
      if (flags & FLAG_RECEIPT) command.receipt = true;
      command.data = cursor.rest();
      return command;
    }
  }
}

/** Field validators per JSON envelope type: each names the fields it requires or allows. */
type FieldKind = 'string' | 'number' | 'boolean' | 'json' | 'target' | 'resume' | 'kind' | 'offsets';
const JSON_FIELDS: Record<EnvelopeType, Record<string, [FieldKind, 'required' | 'optional']>> = {
  hello: { token: ['string', 'optional'], resume: ['resume', 'optional'], offsets: ['offsets', 'optional'] },
  join: { room: ['string', 'required'], id: ['string', 'optional'], receipt: ['boolean', 'optional'] },
  leave: { room: ['string', 'required'], id: ['string', 'optional'], receipt: ['boolean', 'optional'] },
  subscribe: { topic: ['string', 'required'], id: ['string', 'optional'], receipt: ['boolean', 'optional'] },
  unsubscribe: { topic: ['string', 'required'], id: ['string', 'optional'], receipt: ['boolean', 'optional'] },
  publish: { topic: ['string', 'required'], data: ['json', 'required'], id: ['string', 'optional'], receipt: ['boolean', 'optional'] },
  send: { to: ['string', 'required'], data: ['json', 'required'], id: ['string', 'optional'], receipt: ['boolean', 'optional'] },
  multicast: { target: ['target', 'required'], data: ['json', 'required'], id: ['string', 'optional'], receipt: ['boolean', 'optional'] },
  broadcast: { data: ['json', 'required'], id: ['string', 'optional'], receipt: ['boolean', 'optional'] },
  welcome: {
    clientId: ['string', 'required'],
    secret: ['string', 'required'],
    resumed: ['boolean', 'required'],
    heartbeatMs: ['number', 'required'],
    maxMessageSize: ['number', 'required'],
    recovered: ['boolean', 'optional'],
  },
  message: {
    from: ['string', 'required'],
    kind: ['kind', 'required'],
    to: ['string', 'optional'],
    data: ['json', 'required'],
    id: ['string', 'optional'],
    receipt: ['boolean', 'optional'],
    user: ['string', 'optional'],
    offset: ['string', 'optional'],
  },
  error: { code: ['string', 'required'], message: ['string', 'required'], ref: ['string', 'optional'] },
  ack: { id: ['string', 'required'], from: ['string', 'optional'], to: ['string', 'optional'], offset: ['string', 'optional'] },
  ping: { ts: ['number', 'required'] },
  pong: { ts: ['number', 'required'] },
};

function decodeJson(text: string): Envelope {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new EnvelopeError('ERR_ENVELOPE_INVALID_JSON', 'frame is not valid JSON', { cause, closeCode: 1007 });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new EnvelopeError('ERR_ENVELOPE_BAD_FIELD', 'envelope must be a JSON object');
  }
  const record = value as Record<string, unknown>;
  if (record.v !== PROTOCOL_VERSION) {
    throw new EnvelopeError('ERR_ENVELOPE_VERSION', `unsupported envelope version ${JSON.stringify(record.v)} (this side speaks ${PROTOCOL_VERSION})`);
  }
  const type = record.t;
  if (typeof type !== 'string' || !Object.hasOwn(JSON_FIELDS, type)) {
    throw new EnvelopeError('ERR_ENVELOPE_UNKNOWN_TYPE', `unknown envelope type ${JSON.stringify(type)}`);
  }
  const fields = JSON_FIELDS[type as EnvelopeType];
  const envelope: Record<string, unknown> = { t: type };
  for (const [name, [kind, presence]] of Object.entries(fields)) {
    const field = record[name];
    if (field === undefined) {
      if (presence === 'required') throw badField(type, name, 'is missing');
      continue;
    }
    if (!fieldMatches(kind, field)) throw badField(type, name, `must be ${kind}`);
    envelope[name] = field;
  }
  return envelope as Envelope;
}

function badField(type: string, name: string, problem: string): EnvelopeError {
  return new EnvelopeError('ERR_ENVELOPE_BAD_FIELD', `'${type}' field '${name}' ${problem}`);
}

function fieldMatches(kind: FieldKind, value: unknown): boolean {
  switch (kind) {
    case 'string':
      return typeof value === 'string';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'json':
      return true;
    case 'kind':
      return DELIVERY_KINDS.includes(value as DeliveryKind);
    case 'resume': {
      const resume = value as Record<string, unknown>;
      return typeof value === 'object' && value !== null && typeof resume.clientId === 'string' && typeof resume.secret === 'string';
    }
    case 'offsets':
      return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.values(value).every((offset) => typeof offset === 'string');
    case 'target': {
      if (typeof value !== 'object' || value === null) return false;
      const target = value as Record<string, unknown>;
      const keys = Object.keys(target);
      if (keys.length !== 1) return false;
      if (keys[0] === 'room' || keys[0] === 'topic') return typeof target[keys[0]] === 'string';
      return keys[0] === 'ids' && Array.isArray(target.ids) && target.ids.every((id) => typeof id === 'string');
    }
  }
}
