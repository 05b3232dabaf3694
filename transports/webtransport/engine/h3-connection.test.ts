/**
 * The HTTP/3 layer alone, fed byte fixtures through an in-memory StreamIO: no sockets, no quiche.
 * Malformed HTTP/3 from a peer, refused streams and requests, and what happens to a session's
 * streams when it ends (draft-ietf-webtrans-http3: reset them; late bytes never become a request).
 */
import { describe, expect, it } from 'vitest';
import { encodeVarint } from '../../codec/varint.ts';
import { CapsuleReader, CapsuleType, decodeCloseSession } from '../h3/capsules.ts';
import { H3ErrorCode, webTransportCodeToHttp3 } from '../h3/errors.ts';
import { encodeFrame, encodeFrameHeader, encodeSettings, FrameReader, FrameType, Setting, StreamType, WEBTRANSPORT_BIDI_SIGNAL } from '../h3/frames.ts';
import { decodeFieldSection, encodeFieldSection } from '../h3/qpack.ts';
import { H3Connection } from './h3-connection.ts';
import type { WebTransportSession } from './session.ts';
import type { StreamIO, StreamIOStats } from './stream-io.ts';

/** Records what the HTTP/3 layer asks of its connection. */
class MemoryIO implements StreamIO {
  readonly written = new Map<number, { bytes: number[]; fin: boolean }>();
  readonly shutdowns: { streamId: number; direction: 'read' | 'write'; code: number }[] = [];
  readonly paused = new Set<number>();
  readonly datagrams: Uint8Array[] = [];
  closedWith: { isApp: boolean; code: number; reason: string } | undefined;

  get isClosed(): boolean {
    return this.closedWith !== undefined;
  }
  write(streamId: number, bytes: Uint8Array, fin = false): void {
    const entry = this.written.get(streamId) ?? { bytes: [], fin: false };
    entry.bytes.push(...bytes);
    entry.fin ||= fin;
    this.written.set(streamId, entry);
  }
  queued(): number {
    return 0;
  }
  setReading(streamId: number, reading: boolean): void {
    if (reading) this.paused.delete(streamId);
    else this.paused.add(streamId);
  }
  shutdown(streamId: number, direction: 'read' | 'write', code: number): void {
    this.shutdowns.push({ streamId, direction, code });
  }
  readonly #afterFlush: (() => void)[] = [];
  afterFlush(task: () => void): void {
    this.#afterFlush.push(task);
  }
  /** What a flush of the connection would do: what waited for it runs. */
  flush(): void {
    for (const task of this.#afterFlush.splice(0)) task();
  }
  sendDatagram(payload: Uint8Array): boolean {
    this.datagrams.push(payload);
    return true;
  }
  maxDatagramPayload(): number {
    return 1200;
  }
  close(isApp: boolean, code: number, reason: string): void {
    this.closedWith ??= { isApp, code, reason };
  }
  stats(): StreamIOStats | null {
    return null;
  }
  /** HTTP/3 frames (HEADERS decoded) written on a request stream. */
  frames(streamId: number): { type: number; fields?: [string, string][]; data?: Uint8Array }[] {
    const reader = new FrameReader();
    reader.push(Uint8Array.from(this.written.get(streamId)?.bytes ?? []));
    const frames: { type: number; fields?: [string, string][]; data?: Uint8Array }[] = [];
    for (let event = reader.next(); event; event = reader.next()) {
      if (event.kind === 'data') frames.push({ type: FrameType.DATA, data: event.chunk });
      else frames.push({ type: event.type, ...(event.type === FrameType.HEADERS ? { fields: decodeFieldSection(event.payload) } : {}) });
    }
    return frames;
  }
}

const CLIENT_CONTROL = 2;
const controlStream = (frames: Uint8Array) => Uint8Array.of(StreamType.CONTROL, ...frames);
const settings = () => controlStream(encodeFrame(FrameType.SETTINGS, encodeSettings([[Setting.ENABLE_WEBTRANSPORT_DRAFT02, 1]])));
const connectRequest = (path: string) =>
  encodeFrame(
    FrameType.HEADERS,
    encodeFieldSection([
      [':method', 'CONNECT'],
      [':scheme', 'https'],
      [':authority', 'example.test'],
      [':path', path],
      [':protocol', 'webtransport'],
    ]),
  );
const bidiHeader = (sessionId: number) => Uint8Array.of(...encodeVarint(WEBTRANSPORT_BIDI_SIGNAL), ...encodeVarint(sessionId));

/** A server-side HTTP/3 connection after the handshake, with the peer's SETTINGS in. */
function server(paths = ['/echo']): { io: MemoryIO; h3: H3Connection; sessions: WebTransportSession[] } {
  const io = new MemoryIO();
  const sessions: WebTransportSession[] = [];
  const h3 = new H3Connection(io, 'server', { request: (request) => ({ status: paths.includes(request.path) ? 200 : 404 }), session: (session) => void sessions.push(session) });
  h3.established();
  h3.streamData(CLIENT_CONTROL, settings(), false);
  return { io, h3, sessions };
}

/** The server with one session open on stream 0. */
function withSession(): { io: MemoryIO; h3: H3Connection; session: WebTransportSession } {
  const { io, h3, sessions } = server();
  h3.streamData(0, connectRequest('/echo'), false);
  expect(sessions).toHaveLength(1);
  return { io, h3, session: sessions[0]! };
}

describe('HTTP/3 connection, in memory', () => {
  it('sends SETTINGS with WebTransport and no QPACK dynamic table on its control stream', () => {
    const { io } = server();
    const control = Uint8Array.from(io.written.get(3)!.bytes);
    expect(control[0]).toBe(StreamType.CONTROL);
    const reader = new FrameReader();
    reader.push(control.subarray(1));
    const frame = reader.next();
    expect(frame).toMatchObject({ kind: 'frame', type: FrameType.SETTINGS });
  });

  it.each([
    ['an oversized SETTINGS frame', controlStream(encodeFrameHeader(FrameType.SETTINGS, 1_000_000)), H3ErrorCode.EXCESSIVE_LOAD],
    ['a control stream not starting with SETTINGS', controlStream(encodeFrame(FrameType.GOAWAY, Uint8Array.of(0))), H3ErrorCode.MISSING_SETTINGS],
    ['DATA on the control stream', controlStream(Uint8Array.of(...encodeFrame(FrameType.SETTINGS, encodeSettings([])), ...encodeFrame(FrameType.DATA, Uint8Array.of(1)))), H3ErrorCode.FRAME_UNEXPECTED],
    ['duplicate settings', controlStream(encodeFrame(FrameType.SETTINGS, Uint8Array.of(0x01, 0x00, 0x01, 0x00))), H3ErrorCode.SETTINGS_ERROR],
    ['an HTTP/2 frame type', controlStream(Uint8Array.of(...encodeFrame(FrameType.SETTINGS, encodeSettings([])), 0x02, 0x00)), H3ErrorCode.FRAME_UNEXPECTED],
  ])('closes the connection that sends %s with the right HTTP/3 error', (_what, bytes, code) => {
    const io = new MemoryIO();
    const h3 = new H3Connection(io, 'server', {});
    h3.established();
    h3.streamData(CLIENT_CONTROL, bytes, false);
    expect(io.closedWith).toMatchObject({ isApp: true, code });
  });

  it('closes the connection when the peer ends its control stream', () => {
    const { io, h3 } = server();
    h3.streamData(CLIENT_CONTROL, new Uint8Array(0), true);
    expect(io.closedWith).toMatchObject({ code: H3ErrorCode.CLOSED_CRITICAL_STREAM });
  });

  it('takes bytes split anywhere: SETTINGS one byte at a time', () => {
    const io = new MemoryIO();
    const h3 = new H3Connection(io, 'server', {});
    h3.established();
    const settled = h3.peerSettings();
    for (const byte of settings()) h3.streamData(CLIENT_CONTROL, Uint8Array.of(byte), false);
    expect(io.closedWith).toBeUndefined();
    return expect(settled).resolves.toEqual(new Map([[Setting.ENABLE_WEBTRANSPORT_DRAFT02, 1]]));
  });

  it('answers a truncated QPACK field section with QPACK_DECOMPRESSION_FAILED', () => {
    const { io, h3 } = server();
    h3.streamData(0, encodeFrame(FrameType.HEADERS, Uint8Array.of(0x00, 0x00, 0x51, 0x09, 0x61)), false);
    expect(io.closedWith).toMatchObject({ code: H3ErrorCode.QPACK_DECOMPRESSION_FAILED });
  });

  it('ignores a unidirectional stream of a huge reserved type', () => {
    const { io, h3 } = server();
    const before = h3.streamCount; // the peer's control stream
    h3.streamData(6, Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 1, 2, 3), true);
    expect(io.closedWith).toBeUndefined();
    expect(h3.streamCount).toBe(before);
  });

  it('ends the connection that names a session id beyond 2^53', () => {
    const { io, h3 } = server();
    h3.streamData(0, Uint8Array.of(...encodeVarint(WEBTRANSPORT_BIDI_SIGNAL), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe), false);
    expect(io.closedWith).toMatchObject({ code: H3ErrorCode.GENERAL_PROTOCOL_ERROR });
  });

  it('refuses a stream that names no session with ID_ERROR both ways, drops its late bytes, and keeps the connection', () => {
    const { io, h3 } = server();
    const before = h3.streamCount; // the peer's control stream
    h3.streamData(0, Uint8Array.of(...bidiHeader(400), 1, 2, 3), false);
    expect(io.shutdowns).toEqual([
      { streamId: 0, direction: 'read', code: H3ErrorCode.ID_ERROR },
      { streamId: 0, direction: 'write', code: H3ErrorCode.ID_ERROR },
    ]);
    h3.streamData(0, Uint8Array.of(0x02, 0x00), false); // an HTTP/2 frame type, if it were parsed as a request
    expect(io.closedWith).toBeUndefined();
    h3.streamReset(0, H3ErrorCode.ID_ERROR);
    expect(h3.streamCount).toBe(before);
  });

  it('refuses a CONNECT to an unknown path with 404 and FIN, and drops what the peer still sends on it', () => {
    const { io, h3, sessions } = server();
    h3.streamData(0, connectRequest('/nowhere'), false);
    expect(sessions).toHaveLength(0);
    expect(io.frames(0)).toEqual([{ type: FrameType.HEADERS, fields: [[':status', '404']] }]);
    expect(io.written.get(0)!.fin).toBe(true);
    h3.streamData(0, Uint8Array.of(0x02, 0x00), false);
    expect(io.closedWith).toBeUndefined();
  });

  it('accepts a CONNECT with 200 and hands the session its bidirectional streams and datagrams', async () => {
    const { io, h3, session } = withSession();
    expect(io.frames(0)[0]!.fields).toContainEqual([':status', '200']);
    h3.streamData(4, Uint8Array.of(...bidiHeader(0), 7, 8, 9), false);
    const { value: stream } = await session.incomingBidirectionalStreams.getReader().read();
    const { value } = await stream!.readable.getReader().read();
    expect([...value!]).toEqual([7, 8, 9]);
    h3.datagram(Uint8Array.of(0, 42));
    const { value: datagram } = await session.datagrams.readable.getReader().read();
    expect([...datagram!]).toEqual([42]);
  });

  it('pauses a stream whose reader is behind, and resumes it once read', async () => {
    const { io, h3, session } = withSession();
    h3.streamData(4, bidiHeader(0), false);
    const { value: stream } = await session.incomingBidirectionalStreams.getReader().read();
    h3.streamData(4, new Uint8Array(300 * 1024), false); // over the reader's 256 KiB queue
    expect(io.paused.has(4)).toBe(true);
    await stream!.readable.getReader().read();
    expect(io.paused.has(4)).toBe(false);
  });

  it('the peer closing the session: close capsule read, FIN answered, streams reset with WT_SESSION_GONE', async () => {
    const { io, h3, session } = withSession();
    h3.streamData(4, bidiHeader(0), false);
    const { value: stream } = await session.incomingBidirectionalStreams.getReader().read();
    const reading = stream!.readable.getReader().read();
    h3.streamData(0, encodeFrame(FrameType.DATA, Uint8Array.of(...encodeVarint(CapsuleType.CLOSE_WEBTRANSPORT_SESSION), 7, 0, 0, 0, 7, 0x62, 0x79, 0x65)), false);
    expect(await session.closed).toEqual({ closeCode: 7, reason: 'bye' });
    await expect(reading).rejects.toThrow('session closed');
    expect(io.written.get(0)!.fin).toBe(true);
    io.flush();
    expect(io.shutdowns).toEqual(
      expect.arrayContaining([
        { streamId: 4, direction: 'read', code: H3ErrorCode.WT_SESSION_GONE },
        { streamId: 4, direction: 'write', code: H3ErrorCode.WT_SESSION_GONE },
      ]),
    );
  });

  it('closing a session while the peer still sends: its streams are reset, late bytes are dropped, the connection lives', async () => {
    const { io, h3, session } = withSession();
    const before = h3.streamCount - 1; // the peer's control stream (the CONNECT stream is the other)
    h3.streamData(4, Uint8Array.of(...bidiHeader(0), 1, 2, 3), false);
    h3.streamData(10, Uint8Array.of(...encodeVarint(StreamType.WEBTRANSPORT_UNI), ...encodeVarint(0), 4, 5, 6), false);
    const { value: bidi } = await session.incomingBidirectionalStreams.getReader().read();
    const writer = bidi!.writable.getWriter();
    await writer.write(Uint8Array.of(9));

    session.close({ closeCode: 1008, reason: 'policy' });

    // The close capsule, then FIN, on the CONNECT stream.
    const data = io.frames(0).filter((frame) => frame.type === FrameType.DATA);
    const capsules = new CapsuleReader();
    for (const frame of data) capsules.push(frame.data!);
    const capsule = capsules.next()!;
    expect(capsule.type).toBe(CapsuleType.CLOSE_WEBTRANSPORT_SESSION);
    expect(decodeCloseSession(capsule.payload)).toEqual({ code: 1008, reason: 'policy' });
    expect(io.written.get(0)!.fin).toBe(true);
    // Every stream of the session: STOP_SENDING for what we read, RESET_STREAM for what we write,
    // once the capsule has been flushed (in a packet of its own, Chromium reads it first).
    expect(io.shutdowns).toEqual([]);
    io.flush();
    expect(io.shutdowns).toEqual(
      expect.arrayContaining([
        { streamId: 4, direction: 'read', code: H3ErrorCode.WT_SESSION_GONE },
        { streamId: 4, direction: 'write', code: H3ErrorCode.WT_SESSION_GONE },
        { streamId: 10, direction: 'read', code: H3ErrorCode.WT_SESSION_GONE },
      ]),
    );
    await expect(writer.write(Uint8Array.of(1))).rejects.toThrow('session closed');

    // The peer had not seen the close yet: more bytes on every stream, and on the CONNECT stream.
    // Taken for new streams they would be malformed requests (0x02 is an HTTP/2 frame type).
    h3.streamData(4, Uint8Array.of(0x02, 0x00, 0x00), false);
    h3.streamData(10, Uint8Array.of(0x02, 0x00, 0x00), false);
    h3.streamData(0, encodeFrame(FrameType.DATA, Uint8Array.of(0x02, 0x00)), false);
    expect(io.closedWith).toBeUndefined();
    // The peer's resets and FIN end what is left.
    h3.streamReset(4, webTransportCodeToHttp3(0));
    h3.streamReset(10, H3ErrorCode.WT_SESSION_GONE);
    h3.streamData(0, new Uint8Array(0), true);
    expect(h3.streamCount).toBe(before);
    expect(h3.sessions.size).toBe(0);
  });
});
