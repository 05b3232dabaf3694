/**
 * HTTP/3 for WebTransport over one QUIC connection, either side: control and QPACK streams with
 * SETTINGS, the extended CONNECT that opens a session (a request hook accepts or rejects it on
 * the server), WebTransport stream headers (0x41 bidi / 0x54 uni + session id), quarter-stream-id
 * datagrams, capsules on the CONNECT stream (close, drain), GOAWAY. Protocol parsing is done by
 * the pure codecs in ../h3; this file keeps per-stream state and routes bytes. It is sans-IO: bytes
 * come in and go out through a `StreamIO` (a QUIC connection, or an in-memory one in tests).
 *
 * A peer stream keeps its state until its read side has ended (FIN or reset). A stream we stop
 * caring about before that (a refused request, a released WebTransport stream) becomes `discard`:
 * its late bytes are dropped, never taken for a new stream.
 */
import { readVarint, readVarintType } from '../../codec/varint.ts';
import { CapsuleReader, CapsuleType, decodeCloseSession, encodeCapsule } from '../h3/capsules.ts';
import { ProtocolError } from '../../errors.ts';
import { H3Error, H3ErrorCode, http3ToWebTransportCode } from '../h3/errors.ts';
import { decodeSettings, encodeFrame, encodeFrameHeader, encodeGoaway, encodeSettings, FrameReader, FrameType, Setting, StreamType, WEBTRANSPORT_BIDI_SIGNAL } from '../h3/frames.ts';
import { checkEncoderStream, decodeFieldSection, encodeFieldSection } from '../h3/qpack.ts';
import type { ConnectionCloseInfo, StreamIO, StreamIOHandler } from './stream-io.ts';
import { WebTransportError, WebTransportSession, type SessionHost, type StreamReceiver, type StreamWriterControl } from './session.ts';

/** What a server learns of a CONNECT before deciding. */
export interface ConnectRequest {
  path: string;
  authority: string;
  origin: string | undefined;
  headers: [string, string][];
}

export interface H3ConnectionHooks {
  /** Server: answer a WebTransport CONNECT (200 accepts). */
  request?(request: ConnectRequest): { status: number };
  /** Server: a session was accepted. */
  session?(session: WebTransportSession): void;
  /** The connection is gone; `info` says why when it was not a clean close. */
  closed?(info: ConnectionCloseInfo | null): void;
  /** Client: checks the server's certificate once the handshake is done; a string rejects it. */
  verifyPeer?(): string | null;
  /** The handshake completed (after verifyPeer accepted it). */
  established?(): void;
}

/** QUIC CRYPTO_ERROR for TLS alert bad_certificate (42): 0x100 + the alert (RFC 9001 §4.8). */
const QUIC_CRYPTO_BAD_CERTIFICATE = 0x100 + 42;

/** What we send in SETTINGS: no QPACK dynamic table, extended CONNECT, datagrams, WebTransport draft-02 and -07. */
const SETTINGS: [number, number][] = [
  [Setting.QPACK_MAX_TABLE_CAPACITY, 0],
  [Setting.QPACK_BLOCKED_STREAMS, 0],
  [Setting.ENABLE_CONNECT_PROTOCOL, 1],
  [Setting.H3_DATAGRAM, 1],
  [Setting.H3_DATAGRAM_DRAFT04, 1],
  [Setting.ENABLE_WEBTRANSPORT_DRAFT02, 1],
  [Setting.WEBTRANSPORT_MAX_SESSIONS_DRAFT07, 1],
];

type StreamState =
  | { kind: 'pending'; bytes: Uint8Array }
  | { kind: 'control'; frames: FrameReader; settingsSeen: boolean }
  | { kind: 'qpack-encoder'; bytes: Uint8Array }
  /** Bytes we no longer want (unknown uni types, refused or released streams): dropped until the stream ends. */
  | { kind: 'discard' }
  /** A request stream: the server reads the CONNECT; the client reads the response. */
  | { kind: 'request'; frames: FrameReader }
  /** The CONNECT stream of an established session: DATA frames carry capsules. */
  | { kind: 'session'; frames: FrameReader; capsules: CapsuleReader; session: WebTransportSession }
  | { kind: 'wt'; stream: StreamReceiver };

export class H3Connection implements StreamIOHandler, SessionHost {
  readonly sessions = new Map<number, WebTransportSession>();
  readonly #streams = new Map<number, StreamState>();
  readonly #writeWaiters = new Map<number, () => void>();
  readonly #writers = new Map<number, StreamWriterControl>();
  /** Each session's WebTransport streams, so its end can reset them (draft-ietf-webtrans-http3 §4.6). */
  readonly #sessionStreams = new Map<number, Set<number>>();
  #nextBidi: number;
  #nextUni: number;
  #peerSettings: Map<number, number> | undefined;
  #settingsWaiters: (() => void)[] = [];
  #established = false;
  #controlStream = -1;
  #goaway = false;
  /** Client: the session waiting for the response on its CONNECT stream. */
  #pendingConnect = new Map<number, WebTransportSession>();

  constructor(
    readonly io: StreamIO,
    readonly role: 'client' | 'server',
    readonly hooks: H3ConnectionHooks = {},
  ) {
    this.#nextBidi = role === 'client' ? 0 : 1;
    this.#nextUni = role === 'client' ? 2 : 3;
  }

  /** Streams with state here (readers and writers), for leak checks. */
  get streamCount(): number {
    return this.#streams.size + this.#writers.size;
  }

  /** Resolves once the peer's SETTINGS arrived (Chromium waits for ours before it sends CONNECT). */
  peerSettings(): Promise<Map<number, number>> {
    if (this.#peerSettings) return Promise.resolve(this.#peerSettings);
    return new Promise((resolve) => this.#settingsWaiters.push(() => resolve(this.#peerSettings!)));
  }

  /** Client: sends the extended CONNECT and returns the session it opens. */
  connect(authority: string, path: string, origin: string | undefined): WebTransportSession {
    const id = this.openStream('bidi');
    const session = new WebTransportSession(this, id, this.#writeWaiters);
    this.sessions.set(id, session);
    this.#pendingConnect.set(id, session);
    this.#streams.set(id, { kind: 'request', frames: new FrameReader() });
    const fields = encodeFieldSection([
      [':method', 'CONNECT'],
      [':scheme', 'https'],
      [':authority', authority],
      [':path', path],
      [':protocol', 'webtransport'],
      ['sec-webtransport-http3-draft02', '1'],
      ...(origin === undefined ? [] : [['origin', origin] as const]),
    ]);
    this.io.write(id, encodeFrame(FrameType.HEADERS, fields));
    return session;
  }

  /** Graceful shutdown: GOAWAY and DRAIN to every session; new requests are refused. */
  goaway(): void {
    if (this.#goaway || !this.#established) return;
    this.#goaway = true;
    this.io.write(this.#controlStream, encodeFrame(FrameType.GOAWAY, encodeGoaway(this.#nextBidi)));
    const drain = encodeCapsule(CapsuleType.DRAIN_WEBTRANSPORT_SESSION, new Uint8Array(0));
    for (const id of this.sessions.keys()) this.#sendData(id, drain);
  }

  // ——— SessionHost ———

  openStream(kind: 'bidi' | 'uni'): number {
    const id = kind === 'bidi' ? this.#nextBidi : this.#nextUni;
    if (kind === 'bidi') this.#nextBidi += 4;
    else this.#nextUni += 4;
    return id;
  }

  registerStream(sessionId: number, streamId: number, stream: StreamReceiver): void {
    this.#streams.set(streamId, { kind: 'wt', stream });
    this.#track(sessionId, streamId);
  }

  /**
   * The session no longer reads this stream. Until the peer's FIN or reset arrives its bytes are
   * dropped: taken for a new stream they would be a malformed request and end the connection.
   */
  releaseStream(streamId: number): void {
    if (this.#streams.get(streamId)?.kind === 'wt') this.#streams.set(streamId, { kind: 'discard' });
  }

  registerWriter(sessionId: number, streamId: number, writer: StreamWriterControl): void {
    this.#writers.set(streamId, writer);
    this.#track(sessionId, streamId);
  }

  releaseWriter(streamId: number): void {
    this.#writers.delete(streamId);
  }

  /**
   * A session ended: every stream of it still open is reset (RESET_STREAM) and no longer read
   * (STOP_SENDING), with WT_SESSION_GONE, as draft-ietf-webtrans-http3 requires. The resets go out
   * after the close capsule already queued on the CONNECT stream: in one packet quiche puts them
   * ahead of stream data, and Chromium, handed the resets first, sometimes reported the session as
   * "Connection lost." rather than closed with the capsule's code (2 of 16 runs of the interop test).
   */
  abandonStreams(sessionId: number, error: Error): void {
    const streams = this.#sessionStreams.get(sessionId);
    this.#sessionStreams.delete(sessionId);
    const resets: [number, 'read' | 'write'][] = [];
    for (const streamId of streams ?? []) {
      const writer = this.#writers.get(streamId);
      if (writer) {
        this.#writers.delete(streamId);
        writer.error(error);
        resets.push([streamId, 'write']);
        this.writable(streamId); // release a write waiting for room that will never come
      }
      if (this.#streams.get(streamId)?.kind === 'discard' || this.#streams.get(streamId)?.kind === 'wt') {
        this.#streams.set(streamId, { kind: 'discard' });
        resets.push([streamId, 'read']);
      }
    }
    if (resets.length === 0) return;
    this.io.afterFlush(() => {
      for (const [streamId, direction] of resets) this.io.shutdown(streamId, direction, H3ErrorCode.WT_SESSION_GONE);
    });
  }

  stopSending(streamId: number, code: number): void {
    const writer = this.#writers.get(streamId);
    this.#writers.delete(streamId);
    writer?.error(new WebTransportError('stream', 'stream stopped by the peer', http3ToWebTransportCode(code)));
    this.writable(streamId); // release a write waiting for room that will never come
  }

  sendCapsuleAndFinish(sessionId: number, capsule: Uint8Array | null): void {
    if (capsule) this.#sendData(sessionId, capsule);
    this.io.write(sessionId, new Uint8Array(0), true);
  }

  forgetSession(sessionId: number): void {
    this.sessions.delete(sessionId);
    this.#pendingConnect.delete(sessionId);
    // The CONNECT stream is read until it ends; what still comes on it is dropped.
    const state = this.#streams.get(sessionId);
    if (state?.kind === 'session' || state?.kind === 'request') this.#streams.set(sessionId, { kind: 'discard' });
  }

  // ——— StreamIOHandler ———

  established(): void {
    const refusal = this.hooks.verifyPeer?.();
    if (refusal) {
      this.io.close(false, QUIC_CRYPTO_BAD_CERTIFICATE, refusal);
      return;
    }
    this.#established = true;
    this.#controlStream = this.openStream('uni');
    this.io.write(this.#controlStream, Uint8Array.of(StreamType.CONTROL, ...encodeFrame(FrameType.SETTINGS, encodeSettings(SETTINGS))));
    this.io.write(this.openStream('uni'), Uint8Array.of(StreamType.QPACK_ENCODER));
    this.io.write(this.openStream('uni'), Uint8Array.of(StreamType.QPACK_DECODER));
    this.hooks.established?.();
  }

  writable(streamId: number): void {
    const waiter = this.#writeWaiters.get(streamId);
    if (!waiter) return;
    this.#writeWaiters.delete(streamId);
    waiter();
  }

  datagram(payload: Uint8Array): void {
    const quarter = readVarintType(payload, 0);
    if (!quarter) return; // an unknown or absurd session id simply matches no session
    this.sessions.get(quarter.value * 4)?.receiveDatagram(payload.subarray(quarter.next));
  }

  closed(info: ConnectionCloseInfo | null): void {
    const error = new WebTransportError('session', info ? `connection closed (${info.local ? 'local' : 'peer'} error 0x${info.code.toString(16)}${info.reason ? `: ${info.reason}` : ''})` : 'connection closed', null);
    this.#streams.clear();
    this.#writers.clear();
    this.#sessionStreams.clear();
    for (const session of [...this.sessions.values()]) session.abort(error);
    for (const waiter of this.#writeWaiters.values()) waiter();
    this.#writeWaiters.clear();
    this.hooks.closed?.(info);
  }

  streamData(streamId: number, bytes: Uint8Array, fin: boolean): void {
    try {
      this.#streamData(streamId, bytes, fin);
    } catch (error) {
      this.#contain(error);
    }
  }

  streamReset(streamId: number, code: number): void {
    try {
      const state = this.#streams.get(streamId);
      if (state?.kind === 'wt') {
        this.#streams.delete(streamId);
        state.stream.fail(new WebTransportError('stream', 'stream reset by the peer', http3ToWebTransportCode(code)));
        return;
      }
      this.#streamEnded(streamId, true);
    } catch (error) {
      this.#contain(error);
    }
  }

  /** Whatever a peer sends ends at most its own connection, never the process. */
  #contain(error: unknown): void {
    if (error instanceof H3Error) this.#connectionError(error);
    else if (error instanceof ProtocolError) this.#connectionError(new H3Error(H3ErrorCode.GENERAL_PROTOCOL_ERROR, error.code, error.message, { cause: error }));
    else {
      // eslint-disable-next-line no-console -- our own bug, contained to this connection, must still be seen
      console.error('switchyard: internal error on an HTTP/3 connection', error);
      this.#connectionError(new H3Error(H3ErrorCode.INTERNAL_ERROR, 'ERR_H3_INTERNAL', 'internal error'));
    }
  }

  #streamData(streamId: number, bytes: Uint8Array, fin: boolean): void {
    let state = this.#streams.get(streamId);
    if (!state) {
      // Our own stream that we do not read (control, QPACK): nothing to do with its bytes.
      if (this.#isLocal(streamId)) return;
      state = { kind: 'pending', bytes: new Uint8Array(0) };
      this.#streams.set(streamId, state);
    }
    if (state.kind === 'wt') {
      if (fin) this.#streams.delete(streamId);
      state.stream.push(bytes, fin);
      return;
    }
    this.#consume(streamId, bytes, fin);
    // The read side ended: nothing more can come, whatever the stream's state became.
    if (fin) this.#streams.delete(streamId);
  }

  #consume(streamId: number, bytes: Uint8Array, fin: boolean): void {
    const state = this.#streams.get(streamId);
    if (!state) return;
    switch (state.kind) {
      case 'pending': {
        const joined = concat(state.bytes, bytes);
        if (!this.#classify(streamId, joined, fin)) {
          if (fin) this.#streams.delete(streamId);
          else state.bytes = joined;
        }
        return;
      }
      case 'control':
        state.frames.push(bytes);
        for (let event = state.frames.next(); event; event = state.frames.next()) {
          if (event.kind === 'data') throw new H3Error(H3ErrorCode.FRAME_UNEXPECTED, 'ERR_H3_CONTROL_DATA', 'DATA on the control stream');
          if (!state.settingsSeen && event.type !== FrameType.SETTINGS) throw new H3Error(H3ErrorCode.MISSING_SETTINGS, 'ERR_H3_MISSING_SETTINGS', 'control stream must start with SETTINGS');
          if (event.type === FrameType.SETTINGS) {
            if (state.settingsSeen) throw new H3Error(H3ErrorCode.FRAME_UNEXPECTED, 'ERR_H3_SETTINGS_TWICE', 'second SETTINGS frame');
            state.settingsSeen = true;
            this.#peerSettings = decodeSettings(event.payload);
            for (const waiter of this.#settingsWaiters.splice(0)) waiter();
          } else if (event.type === FrameType.HEADERS) {
            throw new H3Error(H3ErrorCode.FRAME_UNEXPECTED, 'ERR_H3_CONTROL_HEADERS', 'HEADERS on the control stream');
          } else if (event.type === FrameType.GOAWAY) {
            for (const session of this.sessions.values()) session.drain();
          }
        }
        if (fin) throw new H3Error(H3ErrorCode.CLOSED_CRITICAL_STREAM, 'ERR_H3_CONTROL_CLOSED', 'the control stream was closed');
        return;
      case 'qpack-encoder': {
        const joined = concat(state.bytes, bytes);
        state.bytes = joined.subarray(checkEncoderStream(joined));
        return;
      }
      case 'discard':
        return;
      case 'request':
        state.frames.push(bytes);
        for (let event = state.frames.next(); event; event = state.frames.next()) {
          if (event.kind === 'frame' && event.type === FrameType.HEADERS) {
            if (this.role === 'server') this.#onConnect(streamId, event.payload);
            else this.#onResponse(streamId, event.payload);
            const next = this.#streams.get(streamId);
            // Bytes after the HEADERS (capsules, often in the same packet) belong to the session stream now.
            if (next?.kind === 'session') this.#consume(streamId, state.frames.takeBuffered(), fin);
            if (next?.kind !== 'request') return;
          }
        }
        if (fin) this.#streamEnded(streamId, false);
        return;
      case 'session':
        state.frames.push(bytes);
        for (let event = state.frames.next(); event; event = state.frames.next()) {
          if (event.kind !== 'data') continue; // unknown frames on the CONNECT stream are skipped
          state.capsules.push(event.chunk);
          for (let capsule = state.capsules.next(); capsule; capsule = state.capsules.next()) {
            if (capsule.type === CapsuleType.CLOSE_WEBTRANSPORT_SESSION) {
              const { code, reason } = decodeCloseSession(capsule.payload);
              this.io.write(streamId, new Uint8Array(0), true);
              state.session.terminate({ closeCode: code, reason });
            } else if (capsule.type === CapsuleType.DRAIN_WEBTRANSPORT_SESSION) state.session.drain();
          }
        }
        if (fin) this.#streamEnded(streamId, false);
        return;
      case 'wt':
        return;
    }
  }

  /** Reads a peer stream's type (and session id); returns false while more bytes are needed. */
  #classify(streamId: number, bytes: Uint8Array, fin: boolean): boolean {
    const type = readVarintType(bytes, 0); // reserved stream types may exceed 2^53
    if (!type) return false;
    const bidi = (streamId & 2) === 0;
    if (bidi && type.value !== WEBTRANSPORT_BIDI_SIGNAL) {
      if (this.role === 'client') throw new H3Error(H3ErrorCode.STREAM_CREATION_ERROR, 'ERR_H3_SERVER_BIDI', 'server opened a non-WebTransport bidirectional stream');
      this.#streams.set(streamId, { kind: 'request', frames: new FrameReader() });
      this.#consume(streamId, bytes, fin);
      return true;
    }
    if (!bidi && type.value === StreamType.CONTROL) {
      this.#streams.set(streamId, { kind: 'control', frames: new FrameReader(), settingsSeen: false });
      this.#consume(streamId, bytes.subarray(type.next), fin);
      return true;
    }
    if (!bidi && type.value === StreamType.QPACK_ENCODER) {
      this.#streams.set(streamId, { kind: 'qpack-encoder', bytes: new Uint8Array(0) });
      this.#consume(streamId, bytes.subarray(type.next), false);
      return true;
    }
    if (bidi || type.value === StreamType.WEBTRANSPORT_UNI) {
      const sessionId = readVarint(bytes, type.next);
      if (!sessionId) return false;
      const session = this.sessions.get(sessionId.value);
      if (!session || session.state !== 'connected') {
        // A stream naming no live session: refuse it, keep the connection.
        this.#streams.set(streamId, { kind: 'discard' });
        this.io.shutdown(streamId, 'read', H3ErrorCode.ID_ERROR);
        if (bidi) this.io.shutdown(streamId, 'write', H3ErrorCode.ID_ERROR);
        return true;
      }
      const leftover = bytes.slice(sessionId.next);
      if (bidi) session.incomingBidi(streamId, leftover, fin);
      else session.incomingUni(streamId, leftover, fin);
      return true;
    }
    // QPACK decoder stream, push streams we never asked for, GREASE and unknown types: read and drop.
    this.#streams.set(streamId, { kind: 'discard' });
    return true;
  }

  #onConnect(streamId: number, fieldSection: Uint8Array): void {
    let fields: [string, string][];
    try {
      fields = decodeFieldSection(fieldSection);
    } catch (error) {
      if (error instanceof H3Error && error.h3Code !== H3ErrorCode.MESSAGE_ERROR) throw error;
      return this.#respond(streamId, 400);
    }
    const header = (name: string) => fields.find(([n]) => n === name)?.[1];
    if (header(':method') !== 'CONNECT' || header(':protocol') !== 'webtransport' || header(':scheme') !== 'https' || !header(':path') || !header(':authority')) {
      return this.#respond(streamId, header(':method') === 'CONNECT' ? 400 : 501);
    }
    if (this.#goaway) return this.#respond(streamId, 429);
    const decision = this.hooks.request?.({ path: header(':path')!, authority: header(':authority')!, origin: header('origin'), headers: fields }) ?? { status: 404 };
    if (decision.status < 200 || decision.status > 299) return this.#respond(streamId, decision.status);
    const session = new WebTransportSession(this, streamId, this.#writeWaiters);
    session.path = header(':path')!;
    this.sessions.set(streamId, session);
    this.#streams.set(streamId, { kind: 'session', frames: new FrameReader(), capsules: new CapsuleReader(), session });
    this.io.write(streamId, encodeFrame(FrameType.HEADERS, encodeFieldSection([[':status', String(decision.status)], ['sec-webtransport-http3-draft', 'draft02']])));
    session.accept();
    this.hooks.session?.(session);
  }

  #onResponse(streamId: number, fieldSection: Uint8Array): void {
    const session = this.#pendingConnect.get(streamId);
    if (!session) return;
    this.#pendingConnect.delete(streamId);
    const status = decodeFieldSection(fieldSection).find(([name]) => name === ':status')?.[1];
    if (status === undefined || !/^2\d\d$/.test(status)) {
      session.reject(new WebTransportError('session', `WebTransport CONNECT refused with status ${status ?? '(none)'}`, null));
      this.#streams.set(streamId, { kind: 'discard' });
      return;
    }
    this.#streams.set(streamId, { kind: 'session', frames: new FrameReader(), capsules: new CapsuleReader(), session });
    session.accept();
  }

  #respond(streamId: number, status: number): void {
    this.#streams.set(streamId, { kind: 'discard' });
    this.io.write(streamId, encodeFrame(FrameType.HEADERS, encodeFieldSection([[':status', String(status)]])), true);
  }

  #streamEnded(streamId: number, reset: boolean): void {
    const state = this.#streams.get(streamId);
    this.#streams.delete(streamId);
    if (state?.kind === 'session') {
      // The CONNECT stream ended without a close capsule: the session is over (code 0).
      this.io.write(streamId, new Uint8Array(0), true);
      state.session.terminate({ closeCode: 0, reason: reset ? 'CONNECT stream reset' : '' });
    } else if (state?.kind === 'request') {
      this.#pendingConnect.get(streamId)?.reject(new WebTransportError('session', 'CONNECT stream ended without a response', null));
    } else if (state?.kind === 'control') {
      this.#connectionError(new H3Error(H3ErrorCode.CLOSED_CRITICAL_STREAM, 'ERR_H3_CONTROL_CLOSED', 'the control stream was closed'));
    }
  }

  #sendData(streamId: number, payload: Uint8Array): void {
    this.io.write(streamId, concat(encodeFrameHeader(FrameType.DATA, payload.length), payload));
  }

  #track(sessionId: number, streamId: number): void {
    let streams = this.#sessionStreams.get(sessionId);
    if (!streams) this.#sessionStreams.set(sessionId, (streams = new Set()));
    streams.add(streamId);
  }

  #isLocal(streamId: number): boolean {
    return (streamId & 1) === (this.role === 'server' ? 1 : 0);
  }

  #connectionError(error: H3Error): void {
    this.io.close(true, error.h3Code, error.message);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
