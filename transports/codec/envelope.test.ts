import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeEnvelope, encodeEnvelope, EnvelopeError, type Envelope, type Json } from './envelope.ts';

function decodeError(frame: string | Uint8Array): EnvelopeError {
  try {
    decodeEnvelope(frame);
  } catch (error) {
    expect(error).toBeInstanceOf(EnvelopeError);
    return error as EnvelopeError;
  }
  throw new Error('expected decode to fail');
}

describe('envelope JSON form', () => {
  it('encodes control commands as versioned JSON text', () => {
    expect(encodeEnvelope({ t: 'join', room: 'lobby', id: 'm1' })).toBe('{"v":1,"t":"join","room":"lobby","id":"m1"}');
  });

  it('decodes a literal frame', () => {
    expect(decodeEnvelope('{"v":1,"t":"publish","topic":"news","data":{"a":[1,2]},"id":"x"}')).toEqual({
      t: 'publish',
      topic: 'news',
      data: { a: [1, 2] },
      id: 'x',
    });
  });

  it('drops fields the type does not define', () => {
    expect(decodeEnvelope('{"v":1,"t":"ping","ts":5,"evil":true}')).toEqual({ t: 'ping', ts: 5 });
  });

  it.each([
    ['{not json', 'ERR_ENVELOPE_INVALID_JSON'],
    ['[1,2]', 'ERR_ENVELOPE_BAD_FIELD'],
    ['"text"', 'ERR_ENVELOPE_BAD_FIELD'],
    ['{"t":"ping","ts":1}', 'ERR_ENVELOPE_VERSION'],
    ['{"v":2,"t":"ping","ts":1}', 'ERR_ENVELOPE_VERSION'],
    ['{"v":1,"t":"explode"}', 'ERR_ENVELOPE_UNKNOWN_TYPE'],
    ['{"v":1,"t":"toString"}', 'ERR_ENVELOPE_UNKNOWN_TYPE'],
    ['{"v":1,"t":"join"}', 'ERR_ENVELOPE_BAD_FIELD'],
    ['{"v":1,"t":"join","room":7}', 'ERR_ENVELOPE_BAD_FIELD'],
    ['{"v":1,"t":"ping","ts":"soon"}', 'ERR_ENVELOPE_BAD_FIELD'],
    ['{"v":1,"t":"multicast","target":{"room":"a","topic":"b"},"data":1}', 'ERR_ENVELOPE_BAD_FIELD'],
    ['{"v":1,"t":"multicast","target":{"ids":["a",2]},"data":1}', 'ERR_ENVELOPE_BAD_FIELD'],
    ['{"v":1,"t":"hello","resume":{"clientId":"a"}}', 'ERR_ENVELOPE_BAD_FIELD'],
  ])('rejects %s with %s', (frame, code) => {
    expect(decodeError(frame).code).toBe(code);
  });
});

describe('envelope binary form', () => {
  it('encodes a byte payload without inflating it', () => {
    const data = Uint8Array.of(1, 2, 3);
    // magic, type 4 (broadcast), flags 1 (id), id "a", payload
    expect(encodeEnvelope({ t: 'broadcast', id: 'a', data })).toEqual(Uint8Array.of(0xb1, 4, 1, 1, 0x61, 1, 2, 3));
  });

  it('decodes a literal delivery frame', () => {
    // magic, type 5 (message), flags 0, kind 3 (topic), from "c1", to "t", payload ff
    const frame = Uint8Array.of(0xb1, 5, 0, 3, 2, 0x63, 0x31, 1, 0x74, 0xff);
    expect(decodeEnvelope(frame)).toEqual({ t: 'message', kind: 'topic', from: 'c1', to: 't', data: Uint8Array.of(0xff) });
  });

  it('carries a delivery\'s history offset after its user id (flag 8)', () => {
    // magic, type 5, flags 8 (offset), kind 2 (room), from "c", to "r", offset "1-0", payload 07
    const frame = Uint8Array.of(0xb1, 5, 8, 2, 1, 0x63, 1, 0x72, 3, 0x31, 0x2d, 0x30, 7);
    expect(encodeEnvelope({ t: 'message', kind: 'room', from: 'c', to: 'r', offset: '1-0', data: Uint8Array.of(7) })).toEqual(frame);
    expect(decodeEnvelope(frame)).toEqual({ t: 'message', kind: 'room', from: 'c', to: 'r', offset: '1-0', data: Uint8Array.of(7) });
    expect(() => decodeEnvelope(Uint8Array.of(0xb1, 1, 8, 1, 0x74))).toThrow(expect.objectContaining({ code: 'ERR_ENVELOPE_BAD_FIELD' }));
  });

  it('decodes each short field as itself, however many alike share its cache slot', () => {
    // 2000 distinct ids over 256 cache slots, decoded in two passes: every slot is shared and
    // overwritten, and a cached string must never stand in for different bytes of the same length.
    const ids = Array.from({ length: 2000 }, (_, i) => `client-${i.toString(36).padStart(4, '0')}`);
    for (let pass = 0; pass < 2; pass++) {
      for (const to of ids) expect((decodeEnvelope(encodeEnvelope({ t: 'send', to, data: new Uint8Array(1) })) as { to: string }).to).toBe(to);
    }
  });

  it('encodes envelopes into arrays that do not overlap (small ones share a slab)', () => {
    const frames = Array.from({ length: 300 }, (_, i) => encodeEnvelope({ t: 'send', to: 'c', data: new Uint8Array(40).fill(i & 0xff) }) as Uint8Array);
    frames.forEach((frame, i) => expect((decodeEnvelope(frame) as { data: Uint8Array }).data).toEqual(new Uint8Array(40).fill(i & 0xff)));
  });

  it('reports truncation at every cut point as a typed error', () => {
    const frame = encodeEnvelope({ t: 'multicast', target: { ids: ['alpha', 'beta'] }, id: 'm', data: new Uint8Array(0) }) as Uint8Array;
    for (let cut = 0; cut < frame.length; cut++) {
      expect(decodeError(frame.subarray(0, cut)).code).toBe('ERR_ENVELOPE_TRUNCATED');
    }
  });

  it.each([
    [Uint8Array.of(0x7b, 5, 0), 'ERR_ENVELOPE_VERSION'],
    [Uint8Array.of(0xb1, 99, 0), 'ERR_ENVELOPE_UNKNOWN_TYPE'],
    [Uint8Array.of(0xb1, 4, 0x80), 'ERR_ENVELOPE_BAD_FIELD'],
    [Uint8Array.of(0xb1, 3, 0, 9), 'ERR_ENVELOPE_BAD_FIELD'],
    [Uint8Array.of(0xb1, 2, 0, 1, 0xff), 'ERR_ENVELOPE_BAD_FIELD'],
  ])('rejects %o with %s', (frame, code) => {
    expect(decodeError(frame).code).toBe(code);
  });
});

const name = fc.string({ maxLength: 12 });
const json: fc.Arbitrary<Json> = fc.jsonValue() as fc.Arbitrary<Json>;
const payload = fc.oneof(json, fc.uint8Array({ maxLength: 64 }));
// `receipt: false` and an absent receipt mean the same; the binary form keeps only the flag.
const acked = fc.record({ id: name, receipt: fc.constant(true) }, { requiredKeys: [] });
const target = fc.oneof(
  fc.record({ room: name }),
  fc.record({ topic: name }),
  fc.record({ ids: fc.array(name, { maxLength: 5 }) }),
);

const envelope: fc.Arbitrary<Envelope> = fc.oneof(
  fc.record({ t: fc.constant('publish' as const), topic: name, data: payload }).chain((e) => acked.map((a) => ({ ...e, ...a }))),
  fc.record({ t: fc.constant('send' as const), to: name, data: payload }).chain((e) => acked.map((a) => ({ ...e, ...a }))),
  fc.record({ t: fc.constant('broadcast' as const), data: payload }).chain((e) => acked.map((a) => ({ ...e, ...a }))),
  fc.record({ t: fc.constant('multicast' as const), target, data: payload }).chain((e) => acked.map((a) => ({ ...e, ...a }))),
  fc
    .record({
      t: fc.constant('message' as const),
      from: name,
      kind: fc.constantFrom('broadcast' as const, 'send' as const, 'room' as const, 'topic' as const, 'ids' as const),
      to: name.filter((s) => s.length > 0),
      data: payload,
      user: name,
      offset: name,
    }, { requiredKeys: ['t', 'from', 'kind', 'to', 'data'] })
    .chain((e) => acked.map((a) => ({ ...e, ...a }))),
  fc.record({ t: fc.constant('hello' as const), resume: fc.record({ clientId: name, secret: name }), offsets: fc.dictionary(name, name, { maxKeys: 3 }) }, { requiredKeys: ['t'] }),
  fc.record({ t: fc.constant('welcome' as const), clientId: name, secret: name, resumed: fc.boolean(), heartbeatMs: fc.nat(), maxMessageSize: fc.nat(), recovered: fc.boolean() }, { requiredKeys: ['t', 'clientId', 'secret', 'resumed', 'heartbeatMs', 'maxMessageSize'] }),
  fc.record({ t: fc.constant('join' as const), room: name }),
  fc.record({ t: fc.constant('ack' as const), id: name }),
  fc.record({ t: fc.constant('ping' as const), ts: fc.double({ noNaN: true, noDefaultInfinity: true }) }),
  fc.record({ t: fc.constant('error' as const), code: name, message: name }),
);

describe('envelope round trips', () => {
  it('decode(encode(e)) equals e for random envelopes in both forms', () => {
    fc.assert(
      fc.property(envelope, (e) => {
        const decoded = decodeEnvelope(encodeEnvelope(e));
        // normalize() compares as JSON would (JSON cannot tell -0 from 0) and keeps bytes as bytes.
        expect(normalize(decoded)).toEqual(normalize(e));
        expect(decoded.t).toBe(e.t);
      }),
      { numRuns: 500 },
    );
  });

  it('never throws anything but EnvelopeError on random bytes or text', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 40 }).map((b) => (b.length ? Uint8Array.of(0xb1, ...b) : b)), fc.string()), (frame) => {
        try {
          decodeEnvelope(frame);
        } catch (error) {
          expect(error).toBeInstanceOf(EnvelopeError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

function normalize(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value, (_k, v: unknown) => (v instanceof Uint8Array ? { bytes: [...v] } : v)));
}
