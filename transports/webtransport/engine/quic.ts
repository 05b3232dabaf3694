/**
 * The QUIC layer under our HTTP/3: quiche connections (from @matrixai/quic's native binding,
 * sans-IO) driven from a `node:dgram` socket. `QuicEndpoint` owns the socket, routes datagrams
 * to connections by destination connection id, and accepts new ones (server) or opens one
 * (client); `QuicConnection` drives one quiche connection and implements `StreamIO` for HTTP/3.
 *
 * Work is batched per event-loop turn: every datagram of a turn goes straight into quiche; one
 * setImmediate then hands each touched connection's stream bytes and datagrams to the layer above;
 * one more setImmediate, queued behind it in the same check phase (so after the application's
 * microtasks have answered), drains each connection's packets once. ACKs then ride with the
 * answers, and an idle connection costs no native calls. A turn that brought one small packet and
 * no answer delays its ACK (ACK_DELAY_MS) for the next packet to carry, as TCP and Chromium do:
 * quiche 0.18 acknowledges every packet at once, which cost a packet each way per message. Stream writes that quiche does not accept
 * at once (flow control) wait in a per-stream queue until the stream is writable again; a stream
 * the layer above pauses stays unread, so QUIC flow control stops the peer.
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import { isIP } from 'node:net';
import { randomBytes } from 'node:crypto';
import { quiche, type Config, type Connection as QuicheConnection, type Header, type Host } from '@matrixai/quic/native/index.js';
import { PeerUnreachableError } from '../../errors.ts';
import { AmplificationBudget, initialClosePacket, INVALID_TOKEN, RetryTokens, resetTokenBigint, statelessResetPacket, statelessResetToken, type QuicServerKeys } from './address-validation.ts';
import type { StreamIO, StreamIOHandler, StreamIOStats } from './stream-io.ts';

export interface QuicOptions {
  certPem?: string;
  keyPem?: string;
  /**
   * Client only: verify the server's certificate chain in the TLS handshake against these CA
   * certificates (PEM), as TLS normally does. Without it the handshake accepts any certificate and
   * the caller checks it afterwards (serverCertificateHashes).
   */
  caPem?: string;
  /** Connection idle timeout (ms). Default 30 000. */
  idleTimeoutMs?: number;
  /** Per-stream receive window to start with (bytes). Default 1 MiB; quiche grows it up to 8 MiB for a reader that keeps up. */
  streamWindow?: number;
  /** Connection receive window (bytes). Default 16 MiB. */
  connectionWindow?: number;
  /** Datagram queue lengths. Default 1024. */
  datagramQueue?: number;
  /** Largest UDP payload sent and received. Default DEFAULT_UDP_PAYLOAD. */
  maxUdpPayload?: number;
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
  /** Initials with an invalid Retry token, each answered with a CONNECTION_CLOSE (INVALID_TOKEN). */
  invalidTokens: number;
  /** Initials dropped because maxHandshakes handshakes were in progress. */
  initialsDropped: number;
  handshakeTimeouts: number;
  statelessResetsSent: number;
  /** Times a connection held its packets back to stay within 3x of an unvalidated address. */
  amplificationLimited: number;
}

/**
 * UDP payload towards the network: fits a 1400-byte path with room for tunnels (the size Chromium
 * and quiche's examples use). quiche never sends more than the peer's max_udp_payload_size.
 */
export const DEFAULT_UDP_PAYLOAD = 1350;
/**
 * UDP payload on loopback, whose MTU is 64 KiB: one packet (one sendmsg, one AEAD seal) carries
 * what takes ~12 packets of 1350 B. Peers that read smaller datagrams advertise a smaller
 * max_udp_payload_size, and quiche keeps to it.
 */
export const LOOPBACK_UDP_PAYLOAD = 16 * 1024;
const DEFAULT_STREAM_WINDOW = 1024 * 1024;
const MAX_STREAM_WINDOW = 8 * 1024 * 1024;
const DEFAULT_CONNECTION_WINDOW = 16 * 1024 * 1024;
/** Concurrent streams a peer may open, each way (an HTTP/3 peer needs at least 3 unidirectional). */
const MAX_PEER_STREAMS = 256;
const DEFAULT_DATAGRAM_QUEUE = 1024;
/** Kernel socket buffers: room for bursts of a whole turn's packets. */
const SOCKET_BUFFER = 4 * 1024 * 1024;
/**
 * Our connection ids: 128 random bits. Not 20 bytes: quiche 0.18 encodes its transport parameters
 * into 128 bytes, and after a Retry three connection ids plus the stateless reset token must fit
 * (with 20-byte ids accept() fails with BufferTooShort).
 */
const CID_LENGTH = 16;
const READ_CHUNK = 64 * 1024;
/**
 * How long an ACK for one small packet may wait for something to ride with (RFC 9000 §13.2.1:
 * within the max_ack_delay we advertise, quiche's default 25 ms). A second packet, a bigger one, or
 * anything else to send flushes at once.
 */
export const ACK_DELAY_MS = 5;
/** A packet up to this size may have its ACK delayed; bulk data is acknowledged at once. */
const DELAYED_ACK_MAX_BYTES = 1500;
/** Outgoing packets are carved from slabs: one allocation per many packets instead of one each. */
const SLAB_SIZE = 1024 * 1024;

/** The UDP payload size a path to `host` allows. */
export function udpPayloadFor(host: string): number {
  return host.startsWith('127.') || host === '::1' || host.startsWith('::ffff:127.') ? LOOPBACK_UDP_PAYLOAD : DEFAULT_UDP_PAYLOAD;
}

export function quicConfig(role: 'client' | 'server', options: QuicOptions): Config {
  const encoder = new TextEncoder();
  const config =
    role === 'server'
      ? quiche.Config.withBoringSslCtx(false, false, null, [encoder.encode(options.keyPem ?? '')], [encoder.encode(options.certPem ?? '')], null)
      : options.caPem !== undefined
        ? // BoringSSL verifies the chain (and quiche the host name it connects to): a failure ends the handshake.
          quiche.Config.withBoringSslCtx(true, false, encoder.encode(options.caPem), null, null, null)
        : // The client checks the certificate hash itself after the handshake (serverCertificateHashes).
          quiche.Config.withBoringSslCtx(false, true, null, null, null, null);
  config.setApplicationProtos(['h3']);
  config.setMaxIdleTimeout(options.idleTimeoutMs ?? 30_000);
  config.setMaxRecvUdpPayloadSize(options.maxUdpPayload ?? DEFAULT_UDP_PAYLOAD);
  config.setMaxSendUdpPayloadSize(options.maxUdpPayload ?? DEFAULT_UDP_PAYLOAD);
  // quiche defaults every flow-control limit to 0: set them all.
  const streamWindow = options.streamWindow ?? DEFAULT_STREAM_WINDOW;
  const connectionWindow = options.connectionWindow ?? DEFAULT_CONNECTION_WINDOW;
  config.setInitialMaxData(connectionWindow);
  config.setInitialMaxStreamDataBidiLocal(streamWindow);
  config.setInitialMaxStreamDataBidiRemote(streamWindow);
  config.setInitialMaxStreamDataUni(streamWindow);
  config.setInitialMaxStreamsBidi(MAX_PEER_STREAMS);
  config.setInitialMaxStreamsUni(MAX_PEER_STREAMS);
  // Auto-tuning lets a fast reader's window grow, so a 1 MiB message need not wait for credit each
  // round trip; the connection window still bounds what one connection can make us hold.
  config.setMaxStreamWindow(Math.max(streamWindow, MAX_STREAM_WINDOW));
  config.setMaxConnectionWindow(connectionWindow);
  config.enableDgram(true, options.datagramQueue ?? DEFAULT_DATAGRAM_QUEUE, options.datagramQueue ?? DEFAULT_DATAGRAM_QUEUE);
  return config;
}

const STREAM_RESET = /StreamReset\((\d{1,16})\)/;
const STREAM_STOPPED = /(?:StreamStopped|StopSending)\((\d{1,16})\)/;

/**
 * The peer's error code in quiche's errors: `StreamReset(n)` from a read, `StreamStopped(n)` from
 * a write after the peer's STOP_SENDING. The binding gives these codes only inside the message
 * (no code property; @matrixai/quic's own streams parse it the same way).
 */
export function quicheErrorCode(error: unknown, kind: 'StreamReset' | 'StopSending'): number | null {
  const match = (kind === 'StreamReset' ? STREAM_RESET : STREAM_STOPPED).exec(String((error as Error)?.message ?? error));
  return match ? Number(match[1]) : null;
}

interface WriteQueue {
  chunks: Uint8Array[];
  bytes: number;
  fin: boolean;
}

export class QuicConnection implements StreamIO {
  handler: StreamIOHandler | undefined;
  readonly #conn: QuicheConnection;
  readonly #endpoint: QuicEndpoint;
  readonly #peer: Host;
  readonly #queues = new Map<number, WriteQueue>();
  readonly #paused = new Set<number>();
  /** Streams that delivered bytes and have not ended: polled with the cheap streamReadable(). */
  readonly #reading = new Set<number>();
  /** What process() handed up last, polled first next time: a stream's id, or datagrams. */
  #lastRead: number | 'datagrams' | undefined;
  readonly #readBuffer = new Uint8Array(READ_CHUNK);
  #recvInfo: { from: Host; to: Host } | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerDeadline = 0;
  /** Touched this turn (packets arrived or a paused stream resumed): the endpoint will process it. */
  active = false;
  /** In the endpoint's flush set for this turn. */
  flushPending = false;
  #established = false;
  #closing = false;
  #closed = false;
  /** Server only, until the handshake completes: the 3x budget of an unvalidated address. */
  #budget: AmplificationBudget | null;
  datagramsDropped = 0;
  /** Why the connection ended without a QUIC close (e.g. the peer's port became unreachable). */
  failure: Error | undefined;
  #sentAtLastKeepAlive = -1;
  /** Something other than an ACK may be waiting in quiche: this turn's flush must not be delayed. */
  #mustSend = true;
  /** Packets and bytes received since the last flush, and what that flush sent: whether an ACK may wait. */
  #receivedPackets = 0;
  #receivedBytes = 0;
  #lastFlushPackets = 0;
  #ackTimer: ReturnType<typeof setTimeout> | undefined;
  #afterFlush: (() => void)[] = [];

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

  /** One UDP datagram from the peer: into quiche now; events and sends later in this turn. */
  receive(packet: Uint8Array, host: string, port: number): void {
    if (this.#budget) this.#budget.received += packet.length;
    this.#receivedPackets++;
    this.#receivedBytes += packet.length;
    // The usual sender is the known peer: its recv info is built once, not per packet.
    const info = host === this.#peer.host && port === this.#peer.port ? (this.#recvInfo ??= { from: this.#peer, to: this.#endpoint.local }) : { from: { host, port }, to: this.#endpoint.local };
    try {
      this.#conn.recv(packet, info);
    } catch {
      // A packet quiche rejects (garbage, wrong keys) is dropped; the connection lives on.
    }
    this.#endpoint.activate(this);
  }

  /** Queues bytes on a stream; what quiche does not accept now waits for credit. */
  write(streamId: number, bytes: Uint8Array, fin = false): void {
    if (this.#closed) return;
    const queue = this.#queues.get(streamId);
    if (queue) {
      queue.chunks.push(bytes);
      queue.bytes += bytes.length;
      queue.fin ||= fin;
    } else {
      this.#queues.set(streamId, { chunks: [bytes], bytes: bytes.length, fin });
      this.#drainQueue(streamId);
    }
    this.#mustSend = true;
    this.#endpoint.requestFlush(this);
  }

  queued(streamId: number): number {
    return this.#queues.get(streamId)?.bytes ?? 0;
  }

  setReading(streamId: number, reading: boolean): void {
    if (!reading) {
      this.#paused.add(streamId);
      return;
    }
    // What arrived while paused is read in this turn's pass over readable streams, and the credit
    // it frees goes out at once.
    if (this.#paused.delete(streamId) && !this.#closed) {
      this.#mustSend = true;
      this.#endpoint.activate(this);
    }
  }

  /** RESET_STREAM (write side) and/or STOP_SENDING (read side) with an HTTP/3 error code. */
  shutdown(streamId: number, direction: 'read' | 'write', code: number): void {
    if (direction === 'write') this.#queues.delete(streamId);
    else {
      this.#paused.delete(streamId);
      this.#reading.delete(streamId);
    }
    try {
      this.#conn.streamShutdown(streamId, direction === 'read' ? quiche.Shutdown.Read : quiche.Shutdown.Write, code);
    } catch {
      // Already finished or unknown: nothing to shut.
    }
    this.#mustSend = true;
    this.#endpoint.requestFlush(this);
  }

  afterFlush(task: () => void): void {
    if (this.#closed) return;
    this.#afterFlush.push(task);
    this.#mustSend = true;
    this.#endpoint.requestFlush(this);
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
    this.#mustSend = true;
    this.#endpoint.requestFlush(this);
    return true;
  }

  maxDatagramPayload(): number | null {
    try {
      return this.#conn.dgramMaxWritableLen();
    } catch {
      return null;
    }
  }

  /**
   * quiche's counters. The binding gives the smoothed RTT in whole milliseconds (0 on loopback).
   */
  stats(): StreamIOStats {
    const stats = this.#conn.stats();
    const path = this.#conn.pathStats()[0];
    return {
      smoothedRttMs: path ? path.rtt : null,
      cwnd: path ? path.cwnd : null,
      packetsSent: stats.sent,
      packetsLost: stats.lost,
      packetsRetransmitted: stats.retrans,
      bytesSent: stats.sentBytes,
      bytesReceived: stats.recvBytes,
      datagramsDropped: this.datagramsDropped,
    };
  }

  close(isApp: boolean, code: number, reason: string): void {
    if (this.#closed) return;
    this.#closing = true;
    try {
      this.#conn.close(isApp, code, new TextEncoder().encode(reason));
    } catch {
      // Already closing.
    }
    this.flush();
  }

  /** Starts the client handshake or answers the first packet. */
  start(): void {
    this.flush();
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
      this.flush();
    }
    this.#sentAtLastKeepAlive = this.#conn.stats().sent;
  }

  /** Ends the connection at once, without a QUIC close (the peer can no longer be reached). */
  abort(error: Error): void {
    if (this.#closed) return;
    this.failure = error;
    this.#finish();
  }

  /** The endpoint's per-turn pass: handshake, stream bytes, datagrams, writable streams. */
  process(): void {
    this.active = false;
    if (this.#closed) return;
    const conn = this.#conn;
    if (!this.#established) {
      if (!conn.isEstablished()) return this.#checkClosed();
      this.#established = true;
      this.#mustSend = true; // HANDSHAKE_DONE and the first HTTP/3 streams
      // A completed handshake proves the peer receives at its address (RFC 9000 §8.1).
      this.#budget = null;
      this.#endpoint.handshakeDone(this);
      this.handler?.established();
    }
    this.#readAll();
    // Credit arrives with packets: retry what waits (a stream without credit just takes nothing).
    for (const id of this.#queues.keys()) this.#drainQueue(id);
  }

  /**
   * The endpoint's end-of-turn flush. When all this turn brought is one small packet and nothing
   * else is to be sent, its ACK waits up to ACK_DELAY_MS for a packet to ride with; otherwise, and
   * right after a flush of several packets (an ACK may be what frees the congestion window), it
   * flushes now.
   */
  flushTurn(): void {
    if (!this.#mustSend && this.#established && !this.#closed && this.#receivedPackets === 1 && this.#receivedBytes <= DELAYED_ACK_MAX_BYTES && this.#lastFlushPackets <= 1) {
      this.flushPending = false;
      this.#ackTimer ??= setTimeout(this.#onAckTimer, ACK_DELAY_MS);
      // What the packet changed in quiche's deadlines (a peer's close starts the draining period) is armed now.
      this.#armTimer();
      return;
    }
    this.flush();
  }

  /** Drains quiche's packets to the socket and re-arms the timer. */
  flush(): void {
    this.flushPending = false;
    if (this.#closed) return;
    this.#mustSend = false;
    this.#receivedPackets = 0;
    this.#receivedBytes = 0;
    if (this.#ackTimer !== undefined) {
      clearTimeout(this.#ackTimer);
      this.#ackTimer = undefined;
    }
    const conn = this.#conn;
    const endpoint = this.#endpoint;
    const budget = this.#budget;
    let packets = 0;
    for (;;) {
      if (budget && !this.#withinBudget()) break;
      let sent: ReturnType<QuicheConnection['send']>;
      try {
        sent = conn.send(endpoint.packetBuffer());
      } catch {
        break;
      }
      if (sent === null) break;
      if (budget) budget.sent += sent[0];
      endpoint.transmit(endpoint.claim(sent[0]), sent[1].to);
      packets++;
    }
    this.#lastFlushPackets = packets;
    if (this.#afterFlush.length > 0) {
      // What they queue goes out in the next turn's flush, after the packets just sent.
      const tasks = this.#afterFlush;
      this.#afterFlush = [];
      for (const task of tasks) task();
    }
    this.#armTimer();
    if (this.#closing) this.#checkClosed();
  }

  /**
   * Hands up the datagrams and stream bytes quiche holds. Every native call costs about half a
   * microsecond, and the binding's readable() iterator ~100x that (napi generator objects). So:
   * nothing when quiche says nothing is readable (isReadable() covers datagrams too); else first
   * what the last pass handed up (usually all a packet brings: the one stream of an echo, or
   * datagrams), then the rest only while quiche still says something is readable: datagrams, the
   * streams we know, and the iterator last (a new stream, a reset, a paused stream's bytes).
   */
  #readAll(): void {
    const conn = this.#conn;
    if (!conn.isReadable()) return;
    const hot = this.#lastRead;
    if (hot !== 'datagrams' && hot !== undefined && this.#reading.has(hot) && !this.#paused.has(hot)) {
      this.#read(hot);
      if (!conn.isReadable()) return;
    }
    this.#readDatagrams();
    if (!conn.isReadable()) return;
    for (const id of this.#reading) if (id !== hot && !this.#paused.has(id) && conn.streamReadable(id)) this.#read(id);
    if (!conn.isReadable()) return;
    for (const id of conn.readable()) this.#read(id);
  }

  #readDatagrams(): void {
    const conn = this.#conn;
    let datagram = conn.dgramRecvVec();
    if (!datagram) return;
    this.#lastRead = 'datagrams';
    for (; datagram; datagram = conn.dgramRecvVec()) this.handler?.datagram(datagram);
  }

  /** Hands a readable stream's bytes up, chunk by chunk, until it is drained, ended or paused. */
  #read(streamId: number): void {
    const buffer = this.#readBuffer;
    while (!this.#paused.has(streamId) && !this.#closed) {
      let result: [number, boolean] | null;
      try {
        result = this.#conn.streamRecv(streamId, buffer);
      } catch (error) {
        this.#reading.delete(streamId);
        const reset = quicheErrorCode(error, 'StreamReset');
        if (reset !== null) this.handler?.streamReset(streamId, reset);
        // Otherwise InvalidStreamState: its end was read already, nothing more comes.
        return;
      }
      if (result === null) return;
      const [length, fin] = result;
      this.#lastRead = streamId;
      if (fin) this.#reading.delete(streamId);
      else this.#reading.add(streamId);
      // Reading opens flow-control credit: this turn's flush tells the peer.
      this.#endpoint.requestFlush(this);
      this.handler?.streamData(streamId, buffer.slice(0, length), fin);
      // A short read took all there was: skip the call that would say so.
      if (fin || length < buffer.length) return;
    }
  }

  #drainQueue(streamId: number): void {
    const queue = this.#queues.get(streamId);
    if (!queue) return;
    const chunks = queue.chunks;
    let taken = 0;
    let sent = false;
    while (taken < chunks.length) {
      const chunk = chunks[taken]!;
      const last = taken === chunks.length - 1;
      let written: number | null;
      try {
        written = this.#conn.streamSend(streamId, chunk, last && queue.fin);
      } catch (error) {
        // STOP_SENDING from the peer (or a reset stream): drop what waits.
        this.#queues.delete(streamId);
        const stopped = quicheErrorCode(error, 'StopSending');
        if (stopped !== null) this.handler?.stopSending(streamId, stopped);
        return;
      }
      if (written === null) break; // no credit now
      queue.bytes -= written;
      sent = true;
      if (written < chunk.length) {
        chunks[taken] = chunk.subarray(written);
        break;
      }
      taken++;
    }
    if (sent) {
      // What quiche took must go out, also when this runs after the turn's flush.
      this.#mustSend = true;
      this.#endpoint.requestFlush(this);
    }
    if (taken < chunks.length) {
      if (taken > 0) chunks.splice(0, taken);
      return;
    }
    this.#queues.delete(streamId);
    this.handler?.writable(streamId);
  }

  /**
   * One timer per connection, moved only when quiche's next deadline comes earlier than the armed
   * one: a timer that fires early finds the deadline later and re-arms once.
   */
  #armTimer(): void {
    const ms = this.#conn.timeout();
    if (ms === null) {
      // A live connection always has its idle timer: no deadline means quiche closed it (a
      // stateless reset, an error in a packet just processed).
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#checkClosed();
      return;
    }
    const deadline = performance.now() + ms;
    if (this.#timer !== undefined && this.#timerDeadline <= deadline) return;
    clearTimeout(this.#timer);
    this.#timerDeadline = deadline;
    this.#timer = setTimeout(this.#onTimer, ms);
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

  readonly #onAckTimer = (): void => {
    this.#ackTimer = undefined;
    this.flush();
  };

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    if (this.#closed) return;
    const ms = this.#conn.timeout();
    if (ms !== null && ms > 0) {
      this.#timerDeadline = performance.now() + ms;
      this.#timer = setTimeout(this.#onTimer, ms);
      return;
    }
    this.#conn.onTimeout();
    this.process();
    this.flush();
    this.#checkClosed();
  };

  #checkClosed(): void {
    if (!this.#closed && this.#conn.isClosed()) this.#finish();
  }

  #finish(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#ackTimer);
    this.#afterFlush = [];
    this.#queues.clear();
    this.#paused.clear();
    this.#reading.clear();
    const peerError = this.#conn.peerError();
    const localError = this.#conn.localError();
    const error = peerError ?? localError;
    this.#endpoint.forget(this);
    this.handler?.closed(
      error ? { local: !peerError, code: error.errorCode, reason: new TextDecoder().decode(error.reason), isApp: error.isApp } : null,
    );
  }
}

interface Route {
  id: Uint8Array;
  connection: QuicConnection;
}

/** A UDP socket with its QUIC connections. */
export class QuicEndpoint {
  readonly #socket: dgram.Socket;
  /** Connection-id routes, bucketed by a hash of the id's bytes (no string key per packet). */
  readonly #routes = new Map<number, Route[]>();
  readonly #ids = new Map<QuicConnection, Uint8Array[]>();
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
  #slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
  #slabOffset = 0;
  #active: QuicConnection[] = [];
  #flushes: QuicConnection[] = [];
  /** Packets and bytes through the socket (one sendmsg / recvmsg each). */
  readonly counters = { packetsSent: 0, packetsReceived: 0, bytesSent: 0, bytesReceived: 0 };

  constructor(
    readonly role: 'client' | 'server',
    readonly config: Config,
    type: 'udp4' | 'udp6' = 'udp4',
    /** Server: the configuration for peers on loopback (larger UDP payload); `config` otherwise. */
    readonly loopbackConfig: Config = config,
    admission?: AdmissionOptions,
  ) {
    if (role === 'server' && !admission) throw new TypeError('a server endpoint needs its admission options (keys and handshake bounds)');
    this.#admission = admission;
    this.#retryTokens = admission && new RetryTokens(admission.keys.retry);
    this.#socket = dgram.createSocket({ type, recvBufferSize: SOCKET_BUFFER, sendBufferSize: SOCKET_BUFFER, lookup: literalLookup });
    this.#socket.on('message', (packet, remote) => this.#receive(packet, remote.address, remote.port));
    this.#socket.on('error', (error) => this.#socketError(error));
  }

  /** Server: handshakes in progress. */
  get handshakeCount(): number {
    return this.#handshakes.size;
  }

  get local(): Host {
    return this.#local;
  }

  /** Live connections. */
  get connectionCount(): number {
    return this.#ids.size;
  }

  /** Entries in the connection-id routing map (two per connection on the server). */
  get routeCount(): number {
    let routes = 0;
    for (const bucket of this.#routes.values()) routes += bucket.length;
    return routes;
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
    this.#route(connection, [scid]);
    return connection;
  }

  /** Room for the next packet (quiche writes into it). */
  packetBuffer(): Uint8Array {
    if (this.#slabOffset + LOOPBACK_UDP_PAYLOAD > this.#slab.length) {
      this.#slab = Buffer.allocUnsafeSlow(SLAB_SIZE); // the old slab stays alive until its packets are sent
      this.#slabOffset = 0;
    }
    return this.#slab.subarray(this.#slabOffset, this.#slabOffset + LOOPBACK_UDP_PAYLOAD);
  }

  /** Keeps the first `length` bytes of the last packetBuffer() as a packet to send. */
  claim(length: number): Uint8Array {
    const packet = this.#slab.subarray(this.#slabOffset, this.#slabOffset + length);
    this.#slabOffset += length;
    return packet;
  }

  transmit(packet: Uint8Array, to: Host): void {
    this.counters.packetsSent++;
    this.counters.bytesSent += packet.length;
    if (this.#connected) this.#socket.send(packet);
    else this.#socket.send(packet, to.port, to.host);
  }

  /** A connection has input to hand up this turn (and, after that, packets to send). */
  activate(connection: QuicConnection): void {
    if (connection.active) return;
    connection.active = true;
    if (this.#active.length === 0) setImmediate(this.#processActive);
    this.#active.push(connection);
    this.requestFlush(connection);
  }

  /** A connection has packets to send: drained once, at the end of this turn. */
  requestFlush(connection: QuicConnection): void {
    if (connection.flushPending) return;
    connection.flushPending = true;
    if (this.#flushes.length === 0) setImmediate(this.#flushAll);
    this.#flushes.push(connection);
  }

  forget(connection: QuicConnection): void {
    for (const id of this.#ids.get(connection) ?? []) {
      const key = routeKey(id, 0, id.length);
      const bucket = this.#routes.get(key)?.filter((route) => route.connection !== connection);
      if (bucket && bucket.length > 0) this.#routes.set(key, bucket);
      else this.#routes.delete(key);
    }
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

  readonly #processActive = (): void => {
    const active = this.#active;
    this.#active = [];
    for (const connection of active) connection.process();
  };

  readonly #flushAll = (): void => {
    const flushes = this.#flushes;
    this.#flushes = [];
    for (const connection of flushes) connection.flushTurn();
  };

  #route(connection: QuicConnection, ids: Uint8Array[]): void {
    for (const id of ids) {
      const key = routeKey(id, 0, id.length);
      const bucket = this.#routes.get(key);
      const route = { id: Uint8Array.from(id), connection };
      if (bucket) bucket.push(route);
      else this.#routes.set(key, [route]);
    }
    this.#ids.set(connection, ids);
  }

  /** The connection a packet's destination connection id names, read without parsing the header. */
  #lookup(packet: Uint8Array): QuicConnection | undefined {
    let offset = 1;
    let length = CID_LENGTH;
    if (packet.length > 0 && packet[0]! & 0x80) {
      // Long header: version (4 bytes), then the DCID's length and bytes.
      if (packet.length < 6) return undefined;
      length = packet[5]!;
      offset = 6;
    }
    if (offset + length > packet.length) return undefined;
    const bucket = this.#routes.get(routeKey(packet, offset, length));
    if (!bucket) return undefined;
    for (const route of bucket) if (sameBytes(route.id, packet, offset, length)) return route.connection;
    return undefined;
  }

  #receive(packet: Buffer, host: string, port: number): void {
    this.counters.packetsReceived++;
    this.counters.bytesReceived += packet.length;
    const existing = this.#lookup(packet);
    if (existing) {
      existing.receive(packet, host, port);
      return;
    }
    const from: Host = { host, port };
    let header;
    try {
      header = quiche.Header.fromSlice(packet, CID_LENGTH);
    } catch {
      return; // not QUIC: ignore
    }
    if (this.role === 'client') {
      // Before the server's first packet our only route is the scid we chose; packets carry it as dcid.
      const only = this.#ids.keys().next().value;
      only?.receive(packet, host, port);
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
      // (forged, expired, another address) cannot be fixed by a second Retry. RFC 9000 §8.1.3: the
      // client is told with INVALID_TOKEN, statelessly, in a packet much smaller than its Initial.
      originalDcid = this.#retryTokens!.validate(header.token, from, header.dcid);
      if (!originalDcid) {
        this.admissionCounters.invalidTokens++;
        this.transmit(initialClosePacket(header.dcid, header.scid, INVALID_TOKEN, 'invalid Retry token'), from);
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
      const config = udpPayloadFor(from.host) === LOOPBACK_UDP_PAYLOAD ? this.loopbackConfig : this.config;
      config.setStatelessResetToken(resetTokenBigint(statelessResetToken(admission.keys.reset, scid)));
      conn = quiche.Connection.accept(scid, originalDcid, this.#local, from, config);
    } catch {
      return;
    }
    const connection = new QuicConnection(conn, this, from, originalDcid ? null : new AmplificationBudget());
    this.#route(connection, originalDcid ? [scid] : [scid, header.dcid]);
    const deadline = setTimeout(() => {
      this.admissionCounters.handshakeTimeouts++;
      connection.close(false, 0x0, 'handshake timeout');
      connection.abort(new Error('handshake timeout'));
    }, admission.handshakeTimeoutMs);
    deadline.unref();
    this.#handshakes.set(connection, deadline);
    this.onAccept?.(connection);
    connection.receive(packet, from.host, from.port);
  }

  #sendRetry(header: Header, from: Host): void {
    const retryScid = randomBytes(CID_LENGTH);
    const token = this.#retryTokens!.mint(from, header.dcid, retryScid);
    const out = new Uint8Array(DEFAULT_UDP_PAYLOAD);
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

/**
 * A server sends to the addresses its packets came from, IP literals: dgram resolved each one
 * through dns.lookup, a regex and a nextTick per packet. Names still go to dns.lookup.
 */
function literalLookup(address: string, options: dns.LookupOneOptions | number, callback: (error: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  const family = isIP(address);
  if (family !== 0) callback(null, address, family);
  else dns.lookup(address, typeof options === 'number' ? { family: options } : options, callback);
}

/** A hash of up to the first 8 bytes of a connection id (ids are random: this spreads them). */
function routeKey(bytes: Uint8Array, offset: number, length: number): number {
  let key = length;
  const end = offset + Math.min(length, 8);
  for (let i = offset; i < end; i++) key = (Math.imul(key, 31) + bytes[i]!) | 0;
  return key;
}

function sameBytes(id: Uint8Array, packet: Uint8Array, offset: number, length: number): boolean {
  if (id.length !== length) return false;
  for (let i = 0; i < length; i++) if (id[i] !== packet[offset + i]) return false;
  return true;
}
