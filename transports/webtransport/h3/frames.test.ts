import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { H3Error, H3ErrorCode, http3ToWebTransportCode, webTransportCodeToHttp3 } from './errors.ts';
import { decodeGoaway, decodeSettings, encodeFrame, encodeGoaway, encodeSettings, FrameReader, FrameType, isReservedType, Setting, type FrameEvent } from './frames.ts';

function drain(reader: FrameReader): FrameEvent[] {
  const events: FrameEvent[] = [];
  for (let event = reader.next(); event; event = reader.next()) events.push(event);
  return events;
}

describe('HTTP/3 frames', () => {
  it('reads the SETTINGS our server sends, byte by byte', () => {
    const payload = encodeSettings([
      [Setting.QPACK_MAX_TABLE_CAPACITY, 0],
      [Setting.ENABLE_CONNECT_PROTOCOL, 1],
      [Setting.ENABLE_WEBTRANSPORT_DRAFT02, 1],
    ]);
    // 01 00 | 08 01 | ab 60 37 42 01 (0x2b603742 as a 4-byte varint)
    expect(payload).toEqual(Uint8Array.of(0x01, 0x00, 0x08, 0x01, 0xab, 0x60, 0x37, 0x42, 0x01));
    const reader = new FrameReader();
    const events: FrameEvent[] = [];
    for (const byte of encodeFrame(FrameType.SETTINGS, payload)) {
      reader.push(Uint8Array.of(byte));
      events.push(...drain(reader));
    }
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ kind: 'frame', type: FrameType.SETTINGS });
    expect([...decodeSettings((events[0] as { payload: Uint8Array }).payload)]).toEqual([
      [1, 0],
      [8, 1],
      [0x2b603742, 1],
    ]);
  });

  it("streams a DATA frame's payload in pieces without buffering it", () => {
    const reader = new FrameReader({ maxFramePayload: 16 });
    reader.push(Uint8Array.of(0x00, 0x44, 0x00)); // DATA, length 1024 (2-byte varint), no payload yet
    expect(drain(reader)).toEqual([]);
    reader.push(new Uint8Array(1000).fill(1));
    const first = drain(reader);
    expect(first).toHaveLength(1);
    expect(first[0]).toMatchObject({ kind: 'data', end: false });
    reader.push(new Uint8Array(24).fill(2));
    expect(drain(reader)[0]).toMatchObject({ kind: 'data', end: true });
    expect(reader.atBoundary).toBe(true);
  });

  it('hands over the bytes after a frame, such as capsules right behind the CONNECT response', () => {
    const reader = new FrameReader();
    reader.push(Uint8Array.of(...encodeFrame(FrameType.HEADERS, Uint8Array.of(0, 0, 0xd9)), 0x00, 0x02, 0x17));
    expect(reader.next()).toMatchObject({ kind: 'frame', type: FrameType.HEADERS });
    expect(reader.takeBuffered()).toEqual(Uint8Array.of(0x00, 0x02, 0x17));
    expect(reader.atBoundary).toBe(true);
  });

  it('skips GREASE frame types and reads GREASE settings beyond 2^53, as Chromium sends them', () => {
    const hugeGrease = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe); // a 62-bit reserved-looking type
    const reader = new FrameReader();
    reader.push(Uint8Array.of(...hugeGrease, 0x01, 0xaa, ...encodeFrame(FrameType.GOAWAY, Uint8Array.of(0))));
    expect(reader.next()).toMatchObject({ kind: 'frame', payload: Uint8Array.of(0xaa) });
    expect(reader.next()).toMatchObject({ kind: 'frame', type: FrameType.GOAWAY });
    const settings = decodeSettings(Uint8Array.of(0x01, 0x00, ...hugeGrease, ...hugeGrease));
    expect(settings.get(0x01)).toBe(0);
    expect(settings.size).toBe(2);
  });

  it("carries Chromium's close capsule in one DATA frame (fixture)", () => {
    const reader = new FrameReader();
    reader.push(Uint8Array.of(0x00, 0x0a, 0x68, 0x43, 0x07, 0x00, 0x00, 0x00, 0x07, 0x62, 0x79, 0x65));
    expect(drain(reader)).toEqual([{ kind: 'data', chunk: Uint8Array.of(0x68, 0x43, 0x07, 0x00, 0x00, 0x00, 0x07, 0x62, 0x79, 0x65), end: true }]);
  });

  it('refuses an oversized non-DATA frame from its header, and HTTP/2 frame types', () => {
    const reader = new FrameReader({ maxFramePayload: 100 });
    reader.push(Uint8Array.of(FrameType.HEADERS, 0x40, 0xff));
    expect(() => reader.next()).toThrow(expect.objectContaining({ h3Code: H3ErrorCode.EXCESSIVE_LOAD }));
    const http2 = new FrameReader();
    http2.push(Uint8Array.of(0x06, 0x00)); // HTTP/2 PING
    expect(() => http2.next()).toThrow(expect.objectContaining({ h3Code: H3ErrorCode.FRAME_UNEXPECTED }));
  });

  it('rejects duplicate, HTTP/2 and truncated settings', () => {
    expect(() => decodeSettings(Uint8Array.of(0x01, 0x00, 0x01, 0x00))).toThrow(expect.objectContaining({ h3Code: H3ErrorCode.SETTINGS_ERROR }));
    expect(() => decodeSettings(Uint8Array.of(0x02, 0x00))).toThrow(expect.objectContaining({ h3Code: H3ErrorCode.SETTINGS_ERROR }));
    expect(() => decodeSettings(Uint8Array.of(0x01))).toThrow(expect.objectContaining({ h3Code: H3ErrorCode.FRAME_ERROR }));
  });

  it('round-trips random frame sequences through random chunking', () => {
    const frame = fc.record({ type: fc.constantFrom(FrameType.HEADERS, FrameType.SETTINGS, FrameType.GOAWAY, 0x21, 0x40), payload: fc.uint8Array({ maxLength: 80 }) });
    fc.assert(
      fc.property(fc.array(frame, { maxLength: 8 }), fc.integer({ min: 1, max: 13 }), (frames, step) => {
        const bytes = Uint8Array.from(frames.flatMap((f) => [...encodeFrame(f.type, f.payload)]));
        const reader = new FrameReader();
        const events: FrameEvent[] = [];
        for (let i = 0; i < bytes.length; i += step) {
          reader.push(bytes.subarray(i, i + step));
          events.push(...drain(reader));
        }
        expect(events).toEqual(frames.map((f) => ({ kind: 'frame', type: f.type, payload: f.payload })));
      }),
    );
  });

  it('round-trips settings and GOAWAY, and knows reserved types', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 6, max: 2 ** 30 }), { maxLength: 10 }), fc.nat(), (ids, value) => {
        const settings = new Map(ids.map((id) => [id, value]));
        expect(decodeSettings(encodeSettings(settings))).toEqual(settings);
      }),
    );
    expect(decodeGoaway(encodeGoaway(1_000_000))).toBe(1_000_000);
    expect(isReservedType(0x21)).toBe(true);
    expect(isReservedType(0x21 + 0x1f * 7)).toBe(true);
    expect(isReservedType(0x54)).toBe(false);
  });
});

describe('WebTransport error code mapping', () => {
  it('maps the ends of the range and skips GREASE code points', () => {
    expect(webTransportCodeToHttp3(0)).toBe(0x52e4a40fa8db);
    expect(webTransportCodeToHttp3(0xffffffff)).toBe(0x52e5ac983162);
    expect(http3ToWebTransportCode(0x52e4a40fa8db)).toBe(0);
    expect(http3ToWebTransportCode(0x100)).toBeNull();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (code) => {
        const h3 = webTransportCodeToHttp3(code);
        expect(isReservedType(h3)).toBe(false);
        expect(http3ToWebTransportCode(h3)).toBe(code);
      }),
    );
  });

  it('is an H3Error with the code to send', () => {
    const error = new H3Error(H3ErrorCode.ID_ERROR, 'ERR_X', 'x');
    expect(error.h3Code).toBe(0x108);
    expect(error.code).toBe('ERR_X');
  });
});
