/**
 * The QUIC layer under our HTTP/3: quiche connections (from @matrixai/quic's native binding,
 * sans-IO) driven from a `node:dgram` socket. `QuicEndpoint` owns the socket, routes datagrams
 * to connections by destination connection id, and accepts new ones (server) or opens one
 * (client); `QuicConnection` drives one quiche connection: recv → events → send drain → one
 * timer from `timeout()`. Stream writes that quiche does not accept at once (flow control) wait in
 * a per-stream queue until the stream is writable again. Reads are pulled by the layer above, so
 * a reader that stops reading stops the peer through QUIC flow control.
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { quiche, type Config, type Connection as QuicheConnection, type Header, type Host } from '@matrixai/quic/native/index.js';
import { PeerUnreachableError } from '../../errors.ts';
import { AmplificationBudget, RetryTokens, resetTokenBigint, statelessResetPacket, statelessResetToken, type QuicServerKeys } from './address-validation.ts';

/** What the layer above hears from a connection. */
export interface QuicConnectionHandler {
  /** The handshake completed. */
  established(): void;
  /** A stream has bytes (or its end, or a reset) to read: call `read(id)` when ready for them. */
  readable(streamId: number): void;
  /** A stream's write queue emptied (quiche took everything). */
  writable(streamId: number): void;
  /** The peer sent STOP_SENDING for a stream we write: `code` is its HTTP/3 error code. */
  stopSending(streamId: number, code: number): void;
  datagram(payload: Uint8Array): void;
  /** The connection is gone; `error` says why when it was not a clean close. */
  closed(info: { local: boolean; code: number; reason: string; isApp: boolean } | null): void;
}

export interface QuicOptions {
  certPem?: string;
  keyPem?: string;
  /** Connection idle timeout (ms). Default 30 000. */
  idleTimeoutMs?: number;
  /** Per-stream receive window (bytes). Default 1 MiB. */
  streamWindow?: number;
  /** Connection receive window (bytes). Default 16 MiB. */
  connectionWindow?: number;
  /** Datagram queue lengths. Default 1024. */
  datagramQueue?: number;
}

/**
 * How a server admits new connections (RFC 9000 §8): the keys for Retry tokens and stateless
 * resets, and the bounds on handshakes in progress.
 */
export interface AdmissionOptions {
  keys: QuicServerKeys;
  /**
   * Handshakes in progress at which a new client must first prove its address with a Retry round
   * trip (0: always). Below it a client connects in one round trip less, within the 3x budget.
   */
  retryAfterHandshakes: number;
  /** Handshakes in progress beyond which new Initials are dropped (counted), not allocated. */
  maxHandshakes: number;
  /** A handshake not complete after this long is closed (ms). */
  handshakeTimeoutMs: number;
}

/** What the endpoint refused or answered statelessly, for tests and the lab. */
export interface AdmissionCounters {
  retriesSent: number;
  invalidTokens: number;
  /** Initials dropped because maxHandshakes handshakes were in progress. */
  initialsDropped: number;
  handshakeTimeouts: number;
  statelessResetsSent: number;
  /** Times a connection held its packets back to stay within 3x of an unvalidated address. */
  amplificationLimited: number;
}

const MAX_UDP_PAYLOAD = 1350;
/**
 * Our connection ids: 128 random bits. Not 20 bytes: quiche 0.18 encodes its transport parameters
 * into 128 bytes, and after a Retry three connection ids plus the stateless reset token must fit
 * (with 20-byte ids accept() fails with BufferTooShort).
 */
const CID_LENGTH = 16;
const READ_CHUNK = 64 * 1024;

export function quicConfig(role: 'client' | 'server', options: QuicOptions): Config {
  const encoder = new TextEncoder();
  const config =
    role === 'server'
      ? quiche.Config.withBoringSslCtx(false, false, null, [encoder.encode(options.keyPem ?? '')], [encoder.encode(options.certPem ?? '')], null)
      : // The client checks the certificate hash itself after the handshake (serverCertificateHashes).
        quiche.Config.withBoringSslCtx(false, true, null, null, null, null);
  config.setApplicationProtos(['h3']);
  config.setMaxIdleTimeout(options.idleTimeoutMs ?? 30_000);
  config.setMaxRecvUdpPayloadSize(MAX_UDP_PAYLOAD);
  config.setMaxSendUdpPayloadSize(MAX_UDP_PAYLOAD);
  // quiche defaults every flow-control limit to 0: set them all.
  const streamWindow = options.streamWindow ?? 1024 * 1024;
  config.setInitialMaxData(options.connectionWindow ?? 16 * 1024 * 1024);
  config.setInitialMaxStreamDataBidiLocal(streamWindow);
  config.setInitialMaxStreamDataBidiRemote(streamWindow);
  config.setInitialMaxStreamDataUni(streamWindow);
  config.setInitialMaxStreamsBidi(256);
  config.setInitialMaxStreamsUni(256);
  config.setMaxStreamWindow(streamWindow);
  config.setMaxConnectionWindow(options.connectionWindow ?? 16 * 1024 * 1024);
  config.enableDgram(true, options.datagramQueue ?? 1024, options.datagramQueue ?? 1024);
  return config;
}

/**
 * Parses the code out of quiche's errors: `StreamReset(n)` from a read, `StreamStopped(n)` from a
 * write after the peer's STOP_SENDING (seen with this binding; some builds say `StopSending(n)`).
 */
export function quicheErrorCode(error: unknown, kind: 'StreamReset' | 'StopSending'): number | null {
  const names = kind === 'StopSending' ? 'StreamStopped|StopSending' : kind;
  const match = new RegExp(`(?:${names})\\((\\d+)\\)`).exec(String((error as Error)?.message ?? error));
  return match ? Number(match[1]) : null;
}

export class QuicConnection {
  handler: QuicConnectionHandler | undefined;
  readonly #conn: QuicheConnection;
  readonly #endpoint: QuicEndpoint;
  readonly #peer: Host;
  readonly #queues = new Map<number, { chunks: Uint8Array[]; fin: boolean }>();
  readonly #readBuffer = new Uint8Array(READ_CHUNK);
  #timer: ReturnType<typeof setTimeout> | undefined;
  #flushScheduled = false;
  #ioScheduled = false;
  #established = false;
  #closed = false;
  /** Server only, until the handshake completes: the 3x budget of an unvalidated address. */
  #budget: AmplificationBudget | null;
  datagramsDropped = 0;
  /** Why the connection ended without a QUIC close (e.g. the peer's port became unreachable). */
  failure: Error | undefined;
  #sentAtLastKeepAlive = -1;

  constructor(conn: QuicheConnection, endpoint: QuicEndpoint, peer: Host, budget: AmplificationBudget | null = null) {
    this.#conn = conn;
    this.#endpoint = endpoint;
    this.#peer = peer;
    this.#budget = budget;
  }

  get quiche(): QuicheConnection {
    return this.#conn;
  }
  get isClosed(): boolean {
    return this.#closed;
  }
  get peer(): Host {
    return this.#peer;
  }

  /**
   * One UDP datagram from the peer. Events and the send drain run once per event-loop turn
   * (setImmediate), not once per packet: a burst of packets costs one pass over the streams.
   */
  receive(packet: Uint8Array, from: Host): void {
    if (this.#budget) this.#budget.received += packet.length;
    try {
      this.#conn.recv(packet, { from, to: this.#endpoint.local });
    } catch {
      // A packet quiche rejects (garbage, wrong keys) is dropped; the connection lives on.
    }
    if (this.#ioScheduled) return;
    this.#ioScheduled = true;
    setImmediate(() => {
      this.#ioScheduled = false;
      if (!this.#closed) this.#afterIo();
    });
  }

  /**
   * Reads what a stream has, up to `max` bytes. Returns null when nothing is there, `fin` at its
   * end; a reset arrives as `{ reset: code }`.
   */
  read(streamId: number, max = READ_CHUNK): { bytes: Uint8Array; fin: boolean } | { reset: number } | null {
    const buffer = max >= READ_CHUNK ? this.#readBuffer : this.#readBuffer.subarray(0, max);
    let result: [number, boolean] | null;
    try {
      result = this.#conn.streamRecv(streamId, buffer);
    } catch (error) {
      const reset = quicheErrorCode(error, 'StreamReset');
      if (reset !== null) return { reset };
      // InvalidStreamState after the end was read, or an unknown stream: nothing more to read.
      return { bytes: new Uint8Array(0), fin: true };
    } finally {
      this.scheduleFlush(); // reading may open flow-control credit: tell the peer
    }
    if (!result) return null;
    return { bytes: buffer.slice(0, result[0]), fin: result[1] };
  }

  /** Queues bytes on a stream; what quiche does not accept now waits for credit. */
  write(streamId: number, bytes: Uint8Array, fin = false): void {
    if (this.#closed) return;
    let queue = this.#queues.get(streamId);
    if (queue) {
      queue.chunks.push(bytes);
      queue.fin ||= fin;
    } else {
      queue = { chunks: [bytes], fin };
      this.#queues.set(streamId, queue);
      this.#drainQueue(streamId);
    }
    this.scheduleFlush();
  }

  /** Bytes queued on a stream and not yet taken by quiche. */
  queued(streamId: number): number {
    let bytes = 0;
    for (const chunk of this.#queues.get(streamId)?.chunks ?? []) bytes += chunk.length;
    return bytes;
  }

  /** Bytes quiche would take on this stream right now. */
  capacity(streamId: number): number {
    try {
      return this.#conn.streamCapacity(streamId);
    } catch {
      return 0;
    }
  }

  /** RESET_STREAM (write side) and/or STOP_SENDING (read side) with an HTTP/3 error code. */
  shutdown(streamId: number, direction: 'read' | 'write', code: number): void {
    if (direction === 'write') this.#queues.delete(streamId);
    try {
      this.#conn.streamShutdown(streamId, direction === 'read' ? quiche.Shutdown.Read : quiche.Shutdown.Write, code);
    } catch {
      // Already finished or unknown: nothing to shut.
    }
    this.scheduleFlush();
  }

  /** Sends a datagram; a full send queue drops it (counted): datagrams never wait. */
  sendDatagram(payload: Uint8Array): boolean {
    if (this.#closed || this.#conn.isDgramSendQueueFull()) {
      this.datagramsDropped++;
      return false;
    }
    try {
      this.#conn.dgramSend(payload);
    } catch {
      this.datagramsDropped++;
      return false;
    }
    this.scheduleFlush();
    return true;
  }

  maxDatagramPayload(): number | null {
    try {
      return this.#conn.dgramMaxWritableLen();
    } catch {
      return null;
    }
  }

  close(isApp: boolean, code: number, reason: string): void {
    if (this.#closed) return;
    try {
      this.#conn.close(isApp, code, new TextEncoder().encode(reason));
    } catch {
      // Already closing.
    }
    this.#flush();
  }

  /** Coalesces sends of one tick into one drain of quiche's packets. */
  scheduleFlush(): void {
    if (this.#flushScheduled || this.#closed) return;
    this.#flushScheduled = true;
    queueMicrotask(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  /** Starts the client handshake or answers the first packet. */
  start(): void {
    this.#flush();
  }

  /**
   * Sends a PING unless a packet went out since the last call: a keep-alive that makes a dead
   * peer answer (ICMP unreachable, stateless reset) even when this side only receives.
   */
  keepAlive(): void {
    if (this.#closed) return;
    const sent = this.#conn.stats().sent;
    if (sent === this.#sentAtLastKeepAlive) {
      this.#conn.sendAckEliciting();
      this.#flush();
    }
    this.#sentAtLastKeepAlive = this.#conn.stats().sent;
  }

  /** Ends the connection at once, without a QUIC close (the peer can no longer be reached). */
  abort(error: Error): void {
    if (this.#closed) return;
    this.failure = error;
    this.#finish();
  }

  #afterIo(): void {
    if (!this.#established && this.#conn.isEstablished()) {
      this.#established = true;
      // A completed handshake proves the peer receives at its address (RFC 9000 §8.1).
      this.#budget = null;
      this.#endpoint.handshakeDone(this);
      this.handler?.established();
    }
    if (this.#established) {
      for (const id of this.#conn.readable()) this.handler?.readable(id);
      for (let datagram = this.#conn.dgramRecvVec(); datagram; datagram = this.#conn.dgramRecvVec()) this.handler?.datagram(datagram);
      for (const id of this.#conn.writable()) this.#drainQueue(id);
    }
    this.#flush();
  }

  #drainQueue(streamId: number): void {
    const queue = this.#queues.get(streamId);
    if (!queue) return;
    while (queue.chunks.length > 0) {
      const chunk = queue.chunks[0]!;
      const last = queue.chunks.length === 1;
      let written: number | null;
      try {
        written = this.#conn.streamSend(streamId, chunk, last && queue.fin);
      } catch (error) {
        // STOP_SENDING from the peer (or a reset stream): drop what waits; the layer above hears it on read.
        this.#queues.delete(streamId);
        const stopped = quicheErrorCode(error, 'StopSending');
        if (stopped !== null) this.handler?.stopSending(streamId, stopped);
        return;
      }
      if (written === null) return; // no credit now
      if (written < chunk.length) {
        queue.chunks[0] = chunk.subarray(written);
        return;
      }
      queue.chunks.shift();
    }
    if (queue.fin && queue.chunks.length === 0) {
      // An empty FIN (no data left to carry it).
      if (queue.chunks.length === 0 && queue.fin) {
        try {
          this.#conn.streamSend(streamId, new Uint8Array(0), true);
        } catch {
          // Finished already.
        }
      }
    }
    this.#queues.delete(streamId);
    this.handler?.writable(streamId);
  }

  #flush(): void {
    for (;;) {
      if (!this.#withinBudget()) break;
      const packet = this.#endpoint.packetBuffer();
      let sent: ReturnType<QuicheConnection['send']>;
      try {
        sent = this.#conn.send(packet);
      } catch {
        break;
      }
      if (!sent) break;
      if (this.#budget) this.#budget.sent += sent[0];
      this.#endpoint.transmit(this.#endpoint.claim(sent[0]), sent[1].to);
    }
    this.#armTimer();
    if (this.#conn.isClosed() && !this.#closed) this.#finish();
  }

  /**
   * Whether quiche's next packet (at most its current max UDP payload: 1200 bytes until the
   * handshake completes) may go out now. Held-back packets are not lost: quiche sends them once
   * the peer's next bytes raise the budget or the handshake completes.
   */
  #withinBudget(): boolean {
    if (!this.#budget || this.#budget.allows(this.#conn.maxSendUdpPayloadSize())) return true;
    this.#endpoint.admissionCounters.amplificationLimited++;
    return false;
  }

  #armTimer(): void {
    clearTimeout(this.#timer);
    const ms = this.#conn.timeout();
    if (ms === null || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#conn.onTimeout();
      this.#afterIo();
    }, ms);
  }

  #finish(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#queues.clear();
    const peerError = this.#conn.peerError();
    const localError = this.#conn.localError();
    const error = peerError ?? localError;
    this.#endpoint.forget(this);
    this.handler?.closed(
      error ? { local: !peerError, code: error.errorCode, reason: new TextDecoder().decode(error.reason), isApp: error.isApp } : null,
    );
  }
}

/** A UDP socket with its QUIC connections. */
export class QuicEndpoint {
  readonly #socket: dgram.Socket;
  readonly #connections = new Map<string, QuicConnection>();
  readonly #ids = new Map<QuicConnection, string[]>();
  /** Server: connections whose handshake is in progress, with their handshake deadline. */
  readonly #handshakes = new Map<QuicConnection, ReturnType<typeof setTimeout>>();
  readonly #admission: AdmissionOptions | undefined;
  readonly #retryTokens: RetryTokens | undefined;
  readonly admissionCounters: AdmissionCounters = { retriesSent: 0, invalidTokens: 0, initialsDropped: 0, handshakeTimeouts: 0, statelessResetsSent: 0, amplificationLimited: 0 };
  /** Client: the socket is connect()ed to the server, so ICMP errors reach us. */
  #connected = false;
  #local: Host = { host: '127.0.0.1', port: 0 };
  /** Server only: called for each new connection. */
  onAccept: ((connection: QuicConnection) => void) | undefined;
  /** Outgoing packets are carved from slabs: one allocation per ~48 packets instead of one each. */
  #slab = new Uint8Array(64 * 1024);
  #slabOffset = 0;

  constructor(
    readonly role: 'client' | 'server',
    readonly config: Config,
    type: 'udp4' | 'udp6' = 'udp4',
    admission?: AdmissionOptions,
  ) {
    if (role === 'server' && !admission) throw new TypeError('a server endpoint needs its admission options (keys and handshake bounds)');
    this.#admission = admission;
    this.#retryTokens = admission && new RetryTokens(admission.keys.retry);
    this.#socket = dgram.createSocket({ type, recvBufferSize: 4 * 1024 * 1024, sendBufferSize: 4 * 1024 * 1024 });
    this.#socket.on('message', (packet, remote) => this.#receive(packet, { host: remote.address, port: remote.port }));
    this.#socket.on('error', (error) => this.#socketError(error));
  }

  /** Server: handshakes in progress. */
  get handshakeCount(): number {
    return this.#handshakes.size;
  }

  get local(): Host {
    return this.#local;
  }

  /** Live connections (server: the routing map's distinct connections). */
  get connectionCount(): number {
    return this.#ids.size;
  }

  /** Entries in the connection-id routing map (two per connection on the server). */
  get routeCount(): number {
    return this.#connections.size;
  }

  bind(port: number, host: string): Promise<Host> {
    return new Promise((resolve, reject) => {
      this.#socket.once('error', reject);
      this.#socket.bind(port, host, () => {
        this.#socket.off('error', reject);
        const address = this.#socket.address();
        this.#local = { host: address.address, port: address.port };
        resolve(this.#local);
      });
    });
  }

  /**
   * Client: connect()s the socket to the server, so that an ICMP port unreachable comes back as
   * ECONNREFUSED and the handshake fails in milliseconds instead of timing out (as in Chromium).
   */
  connectSocket(remote: Host): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#socket.once('error', reject);
      this.#socket.connect(remote.port, remote.host, () => {
        this.#socket.off('error', reject);
        this.#connected = true;
        resolve();
      });
    });
  }

  /** Client: opens a connection to `remote`. */
  connect(remote: Host, serverName: string): QuicConnection {
    const scid = randomBytes(CID_LENGTH);
    const conn = quiche.Connection.connect(serverName, scid, this.#local, remote, this.config);
    const connection = new QuicConnection(conn, this, remote);
    this.#route(connection, [hex(scid)]);
    return connection;
  }

  /** Room for the next packet (quiche writes into it). */
  packetBuffer(): Uint8Array {
    if (this.#slabOffset + MAX_UDP_PAYLOAD > this.#slab.length) {
      this.#slab = new Uint8Array(64 * 1024); // the old slab stays alive until its packets are sent
      this.#slabOffset = 0;
    }
    return this.#slab.subarray(this.#slabOffset, this.#slabOffset + MAX_UDP_PAYLOAD);
  }

  /** Keeps the first `length` bytes of the last packetBuffer() as a packet to send. */
  claim(length: number): Uint8Array {
    const packet = this.#slab.subarray(this.#slabOffset, this.#slabOffset + length);
    this.#slabOffset += length;
    return packet;
  }

  transmit(packet: Uint8Array, to: Host): void {
    if (this.#connected) this.#socket.send(packet);
    else this.#socket.send(packet, to.port, to.host);
  }

  forget(connection: QuicConnection): void {
    for (const id of this.#ids.get(connection) ?? []) this.#connections.delete(id);
    this.#ids.delete(connection);
    this.handshakeDone(connection);
  }

  /** A connection left the handshake phase (established or gone): its slot is free. */
  handshakeDone(connection: QuicConnection): void {
    clearTimeout(this.#handshakes.get(connection));
    this.#handshakes.delete(connection);
  }

  close(): Promise<void> {
    for (const timer of this.#handshakes.values()) clearTimeout(timer);
    this.#handshakes.clear();
    return new Promise((resolve) => this.#socket.close(() => resolve()));
  }

  #route(connection: QuicConnection, ids: string[]): void {
    for (const id of ids) this.#connections.set(id, connection);
    this.#ids.set(connection, ids);
  }

  #receive(packet: Buffer, from: Host): void {
    let header;
    try {
      header = quiche.Header.fromSlice(packet, CID_LENGTH);
    } catch {
      return; // not QUIC: ignore
    }
    const existing = this.#connections.get(hex(header.dcid));
    if (existing) {
      existing.receive(packet, from);
      return;
    }
    if (this.role === 'client') {
      // Before the server's first packet our only route is the scid we chose; packets carry it as dcid.
      const only = this.#connections.values().next().value;
      only?.receive(packet, from);
      return;
    }
    if (header.ty === quiche.Type.Short) {
      this.#sendStatelessReset(packet, header.dcid, from);
      return;
    }
    // A new connection only for a full-size Initial (anti-amplification) of a version we speak.
    if (header.ty !== quiche.Type.Initial || packet.length < 1200 || !quiche.versionIsSupported(header.version)) return;
    this.#admit(packet, header, from);
  }

  /**
   * A new client's Initial: with a valid Retry token its address is proven; without one it gets a
   * stateless Retry once `retryAfterHandshakes` handshakes are in progress. Past `maxHandshakes`
   * the Initial is dropped: nothing is allocated for it.
   */
  #admit(packet: Buffer, header: Header, from: Host): void {
    const admission = this.#admission!;
    let originalDcid: Uint8Array | null = null;
    if (header.token && header.token.length > 0) {
      // Our only tokens come from Retry, and a client takes one Retry per connection: a bad token
      // (forged, expired, another address) cannot be fixed by a second Retry, so it is dropped.
      originalDcid = this.#retryTokens!.validate(header.token, from, header.dcid);
      if (!originalDcid) {
        this.admissionCounters.invalidTokens++;
        return;
      }
    } else if (this.#handshakes.size >= admission.retryAfterHandshakes) {
      this.#sendRetry(header, from);
      return;
    }
    if (this.#handshakes.size >= admission.maxHandshakes) {
      this.admissionCounters.initialsDropped++;
      return;
    }
    // After a Retry the client already uses the id we chose in it (bound into the token).
    const scid = originalDcid ? header.dcid : randomBytes(CID_LENGTH);
    let conn: QuicheConnection;
    try {
      // quiche copies the token into this connection's transport parameters at accept.
      this.config.setStatelessResetToken(resetTokenBigint(statelessResetToken(admission.keys.reset, scid)));
      conn = quiche.Connection.accept(scid, originalDcid, this.#local, from, this.config);
    } catch {
      return;
    }
    const connection = new QuicConnection(conn, this, from, originalDcid ? null : new AmplificationBudget());
    this.#route(connection, originalDcid ? [hex(scid)] : [hex(scid), hex(header.dcid)]);
    const deadline = setTimeout(() => {
      this.admissionCounters.handshakeTimeouts++;
      connection.close(false, 0x0, 'handshake timeout');
      connection.abort(new Error('handshake timeout'));
    }, admission.handshakeTimeoutMs);
    deadline.unref();
    this.#handshakes.set(connection, deadline);
    this.onAccept?.(connection);
    connection.receive(packet, from);
  }

  #sendRetry(header: Header, from: Host): void {
    const retryScid = randomBytes(CID_LENGTH);
    const token = this.#retryTokens!.mint(from, header.dcid, retryScid);
    const out = new Uint8Array(MAX_UDP_PAYLOAD);
    let length: number;
    try {
      length = quiche.retry(header.scid, header.dcid, retryScid, token, header.version, out);
    } catch {
      return;
    }
    this.admissionCounters.retriesSent++;
    this.transmit(out.subarray(0, length), from);
  }

  /**
   * A short-header packet for a connection we do not know (say, from before a restart): answer
   * with a stateless reset so its sender learns at once that the connection is gone.
   */
  #sendStatelessReset(packet: Buffer, dcid: Uint8Array, from: Host): void {
    if (!this.#admission) return;
    const reset = statelessResetPacket(this.#admission.keys.reset, dcid, packet.length);
    if (!reset) return;
    this.admissionCounters.statelessResetsSent++;
    this.transmit(reset, from);
  }

  #socketError(error: Error): void {
    // ICMP port unreachable on the client's connect()ed socket: nobody listens there (any more).
    if ((error as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || this.role !== 'client') return;
    const remote = this.#socket.remoteAddress();
    const failure = new PeerUnreachableError(`nothing listens on UDP ${remote.address}:${remote.port} (ICMP port unreachable)`, { cause: error });
    for (const connection of [...this.#ids.keys()]) connection.abort(failure);
  }
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}
