/**
 * The `webrtc` transport's Connection, shared by every side: the browser's native
 * `RTCPeerConnection`, `@roamhq/wrtc` in Node, client–server and peer-to-peer alike. How the
 * offer and answer travel (an HTTP exchange with the server, or messages relayed by the router)
 * is the caller's `negotiate`; this class only needs the peer connection.
 *
 * Lanes are data channels, labelled with the lane's name:
 * - `reliable`: ordered, reliable; the offerer creates it (with `unreliable`) before its offer,
 *   and the connection is open once it is;
 * - `channel:<name>`: its own ordered, reliable channel, created by the first side that sends on
 *   it (the other side answers on the same channel), so a stall on one never holds another;
 * - `unreliable`: unordered, `maxRetransmits: 0`; one message per SCTP message, never split:
 *   over SCTP's negotiated `maxMessageSize` it is refused with MessageTooLargeError.
 * Reliable messages over that size travel as chunks (chunks.ts). A close is a close frame on the
 * `reliable` channel, answered by the peer, so both sides see the code and reason (SCTP has none).
 *
 * Backpressure is each channel's `bufferedAmount`: a channel holding WIRE_BUFFER_LIMIT bytes
 * takes no more (its lane waits in the outbound queue), and `bufferedamountlow` resumes it — or,
 * where the stack never fires that event (`@roamhq/wrtc`), a 5 ms check while a channel is full.
 */
import { BaseConnection, DEFAULT_MAX_MESSAGE_SIZE, WIRE_BUFFER_LIMIT, type QueuedMessage } from '../base-connection.ts';
import { ProtocolError } from '../errors.ts';
import type { BackpressureOptions, CloseInfo, Lane, SlowConsumerPolicy, TransportCapabilities, TransportStats } from '../transport.ts';
import { CloseCode } from '../transport.ts';
import { batchFrame, ChunkAssembler, chunkMessage, closeFrame } from './chunks.ts';

/** SCTP's message limit until the association says (RFC 8831's interoperable minimum is 16 KiB; every stack here does 64 KiB or more). */
const DEFAULT_SCTP_MAX_MESSAGE = 65_536;
/** Data channels a peer may open on one connection; more close it (each costs memory on both sides). */
const MAX_CHANNELS = 256;
/** How long a close waits for the peer's answering close frame (and an answering side for the peer's teardown). */
const CLOSE_TIMEOUT_MS = 2_000;
/*
 * WRTC_CLOSE_RACE. wrtc (node-webrtc) handles a channel's close on libwebrtc's signalling thread and
 * clears the channel's native pointer there, while send(), bufferedAmount and readyState read it
 * on the JS thread without a lock: a channel that the *peer* closes while this side uses it can
 * crash the process (SIGSEGV in RTCDataChannel::Send, reproduced with two wrtc peers, one closing
 * while the other sends). So an orderly close never lets the peer's teardown meet our use: the side
 * that answers a close frame goes quiet (touches no channel) and lets the side that asked tear down
 * first. A peer that vanishes or aborts without a close frame can still meet a send in flight.
 */
/** How long ICE may stay `disconnected` (no consent answers: the peer vanished) before the connection ends. */
const DISCONNECTED_TIMEOUT_MS = 5_000;
/** getStats() is asynchronous: stats() answers from a sample at most this old and refreshes it. */
const STATS_MAX_AGE_MS = 1_000;
const POLL_MS = 5;
/** How long a channel's bufferedAmount reading stands (see WebRtcConnection's #buffered): queued.bytes may overstate by what SCTP sent meanwhile. */
const BUFFERED_READING_MS = 5;
/** Small messages queued together on a reliable lane leave as one batch of at most this many bytes (chunks.ts). */
const BATCH_BYTES = 16 * 1024;

/** Peer connections and data channels this process holds open through this module (for leak checks). */
export const webrtcResources = { peerConnections: 0, dataChannels: 0 };

export interface WebRtcConnectionOptions {
  /** The offerer creates the `reliable` and `unreliable` channels (before its offer); the answerer receives them. */
  role: 'offerer' | 'answerer';
  backpressure?: BackpressureOptions | undefined;
  laneFallback?: 'error' | 'reliable' | undefined;
  /** Largest message accepted on the reliable lanes (reassembled from chunks). Default 2 MiB. */
  maxMessageSize?: number | undefined;
  /** Slow-consumer policy when `backpressure.policy` is not given. */
  defaultPolicy: SlowConsumerPolicy;
  /** Milliseconds from construction until the `reliable` channel must be open, else the connection ends (1006). */
  openTimeoutMs: number;
  /** Exchanges the offer and answer (the offerer's channels exist by then). A rejection ends the connection. */
  negotiate?: ((peer: RTCPeerConnection) => Promise<void>) | undefined;
}

export class WebRtcConnection extends BaseConnection {
  readonly transport = 'webrtc' as const;
  capabilities: TransportCapabilities;
  #peer: RTCPeerConnection | undefined;
  readonly #role: 'offerer' | 'answerer';
  readonly #maxMessageSize: number;
  /** This side's sending channel per lane (its own, or the one the peer opened first). */
  readonly #senders = new Map<Lane, RTCDataChannel>();
  readonly #channels = new Set<RTCDataChannel>();
  #maxWireMessage = DEFAULT_SCTP_MAX_MESSAGE;
  #requestedClose: { code: number; reason: string } | undefined;
  #openTimer: ReturnType<typeof setTimeout> | undefined;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #disconnectedTimer: ReturnType<typeof setTimeout> | undefined;
  #pollTimer: ReturnType<typeof setTimeout> | undefined;
  #tornDown = false;
  #iceStateAtEnd: RTCIceConnectionState | undefined;
  #statsAt = 0;
  /**
   * Each channel's last `bufferedAmount` reading plus what we sent on it since: an upper bound,
   * because the amount falls only as SCTP sends and rises only by our own sends. wrtc answers the
   * getter with a blocking call into libwebrtc's network thread, which the bench server's profile
   * showed as its largest cost per message; so a reading stands for BUFFERED_READING_MS, is read
   * again whenever the bound alone would refuse a send, and is dropped on `bufferedamountlow`.
   */
  readonly #buffered = new Map<RTCDataChannel, { bytes: number; at: number }>();
  #sample: Pick<TransportStats, 'rttMs' | 'wireBytesIn' | 'wireBytesOut'> = { rttMs: null, wireBytesIn: null, wireBytesOut: null };

  constructor(peer: RTCPeerConnection | Promise<RTCPeerConnection>, options: WebRtcConnectionOptions) {
    super({ backpressure: options.backpressure, laneFallback: options.laneFallback, defaultPolicy: options.defaultPolicy });
    this.#role = options.role;
    this.#maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.capabilities = {
      unreliable: true,
      independentChannels: true,
      serverPush: true,
      binary: true,
      maxMessageSize: this.#maxMessageSize,
      maxUnreliableSize: DEFAULT_SCTP_MAX_MESSAGE,
    };
    this.#openTimer = setTimeout(() => {
      const ice = this.#peer ? `ICE ${this.#peer.iceConnectionState}, connection ${this.#peer.connectionState}` : 'no peer connection yet';
      this.#end({ code: CloseCode.abnormal, reason: `webrtc did not connect within ${options.openTimeoutMs} ms (${ice})`, wasClean: false });
    }, options.openTimeoutMs);
    void this.#start(peer, options.negotiate);
  }

  /** ICE connection state, as it was when the connection ended (the peer connection then reads 'closed'). */
  get iceState(): RTCIceConnectionState | undefined {
    return this.#iceStateAtEnd ?? this.#peer?.iceConnectionState;
  }

  /** The peer connection, once it exists (for signalling details and tests). */
  get peerConnection(): RTCPeerConnection | undefined {
    return this.#peer;
  }

  override stats(): TransportStats {
    if (this.state === 'open' && Date.now() - this.#statsAt > STATS_MAX_AGE_MS) void this.#refreshStats();
    return { ...super.stats(), ...this.#sample };
  }

  /** stats() from a getStats() sample taken now (wire bytes and RTT current to the call, e.g. before and after a measurement). */
  async currentStats(): Promise<TransportStats> {
    if (this.state === 'open') await this.#refreshStats();
    return { ...super.stats(), ...this.#sample };
  }

  async #start(pending: RTCPeerConnection | Promise<RTCPeerConnection>, negotiate: WebRtcConnectionOptions['negotiate']): Promise<void> {
    try {
      const peer = await pending;
      if (this.#tornDown) {
        // Closed while the peer connection was being made.
        peer.close();
        return;
      }
      this.#peer = peer;
      webrtcResources.peerConnections++;
      peer.addEventListener('connectionstatechange', this.#onStateChange);
      peer.addEventListener('iceconnectionstatechange', this.#onStateChange);
      peer.addEventListener('datachannel', (event) => this.#adoptRemote(event.channel));
      if (this.#role === 'offerer') {
        this.#senders.set('reliable', this.#track(peer.createDataChannel('reliable', { ordered: true })));
        this.#senders.set('unreliable', this.#track(peer.createDataChannel('unreliable', { ordered: false, maxRetransmits: 0 })));
      }
      await negotiate?.(peer);
    } catch (error) {
      this.#end({ code: CloseCode.abnormal, reason: `webrtc negotiation failed: ${errorText(error)}`, wasClean: false });
    }
  }

  readonly #onStateChange = (): void => {
    const peer = this.#peer;
    if (!peer || this.#tornDown) return;
    const state = peer.connectionState;
    const ice = peer.iceConnectionState;
    if (state === 'failed' || state === 'closed' || ice === 'failed' || ice === 'closed') {
      const clean = this.state === 'closing' && this.#requestedClose;
      this.#end(clean ? { ...this.#requestedClose!, wasClean: true } : { code: CloseCode.abnormal, reason: `webrtc ${state === 'failed' || ice === 'failed' ? 'ICE failed' : 'peer connection closed'} (ICE ${ice}, connection ${state})`, wasClean: false });
      return;
    }
    // `disconnected` may heal (a lost consent check or two); a peer that vanished never answers again.
    if (state === 'disconnected' || ice === 'disconnected') {
      this.#disconnectedTimer ??= setTimeout(
        () => this.#end({ code: CloseCode.abnormal, reason: `webrtc peer unreachable for ${DISCONNECTED_TIMEOUT_MS} ms (ICE disconnected)`, wasClean: false }),
        DISCONNECTED_TIMEOUT_MS,
      );
    } else {
      clearTimeout(this.#disconnectedTimer);
      this.#disconnectedTimer = undefined;
    }
  };

  /** A channel the peer opened: its label names the lane. */
  #adoptRemote(channel: RTCDataChannel): void {
    const lane = channel.label;
    const known = lane === 'reliable' || lane === 'unreliable' || (lane.startsWith('channel:') && lane.length > 8 && lane.length <= 264);
    if (!known || this.#channels.size >= MAX_CHANNELS || (this.#role === 'offerer' && (lane === 'reliable' || lane === 'unreliable'))) {
      channel.close();
      if (this.#channels.size >= MAX_CHANNELS) this.close(CloseCode.policyViolation, `more than ${MAX_CHANNELS} data channels`);
      return;
    }
    this.#track(channel);
    if (!this.#senders.has(lane as Lane)) this.#senders.set(lane as Lane, channel);
    if (channel.readyState === 'open') this.#channelOpen(channel);
  }

  #track(channel: RTCDataChannel): RTCDataChannel {
    this.#channels.add(channel);
    webrtcResources.dataChannels++;
    channel.binaryType = 'arraybuffer';
    const lane = channel.label as Lane;
    const assembler = lane === 'unreliable' ? undefined : new ChunkAssembler(this.#maxMessageSize);
    const lowThresholdSupported = typeof channel.bufferedAmountLowThreshold === 'number';
    if (lowThresholdSupported) {
      channel.bufferedAmountLowThreshold = WIRE_BUFFER_LIMIT / 4;
      channel.onbufferedamountlow = () => this.#resume();
    }
    channel.onopen = () => this.#channelOpen(channel);
    channel.onclose = () => this.#channelClosed(channel);
    channel.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
      const data = typeof event.data === 'string' ? event.data : new Uint8Array(event.data);
      if (!assembler) {
        this.deliver(data, 'unreliable');
        return;
      }
      try {
        const result = assembler.push(data);
        if (result?.kind === 'messages') for (const message of result.messages) this.deliver(message, lane);
        else if (result?.kind === 'close') this.#peerClosed(result.code, result.reason);
      } catch (error) {
        const protocolError = error as ProtocolError;
        this.close(protocolError.closeCode ?? CloseCode.protocolError, protocolError.message);
      }
    };
    return channel;
  }

  #channelOpen(channel: RTCDataChannel): void {
    if (channel.label === 'reliable' && this.state === 'connecting') {
      clearTimeout(this.#openTimer);
      const sctpMax = this.#peer?.sctp?.maxMessageSize;
      if (sctpMax && Number.isFinite(sctpMax)) {
        this.#maxWireMessage = sctpMax;
        this.capabilities = { ...this.capabilities, maxUnreliableSize: sctpMax };
      }
      this.markOpen();
      void this.#refreshStats();
    }
    if (this.outbound.length > 0) this.requestFlush();
  }

  #channelClosed(channel: RTCDataChannel): void {
    if (!this.#channels.delete(channel)) return;
    webrtcResources.dataChannels--;
    const lane = channel.label as Lane;
    if (this.#senders.get(lane) === channel) this.#senders.delete(lane);
    // Without its reliable channel the connection is over: cleanly if a close was under way.
    if (lane === 'reliable') {
      this.#end(this.#requestedClose ? { ...this.#requestedClose, wasClean: true } : { code: CloseCode.abnormal, reason: 'webrtc reliable data channel closed without a close frame', wasClean: false });
    }
  }

  protected flush(): void {
    let waiting = false;
    for (const lane of this.outbound.lanes()) {
      const channel = this.#senders.get(lane) ?? this.#openChannel(lane);
      if (!channel || channel.readyState !== 'open') continue;
      if (lane === 'unreliable') {
        for (let item; (item = this.outbound.shiftLane(lane)); ) this.#sendUnreliable(channel, item);
        continue;
      }
      if (!this.#drainLane(lane, channel)) return;
      if (this.#bufferedAmount(channel, WIRE_BUFFER_LIMIT) >= WIRE_BUFFER_LIMIT) waiting = true;
    }
    this.onFlushed();
    if (waiting || !this.writable) this.#pollWhileFull();
  }

  protected override sinkBufferedBytes(): number {
    if (this.state === 'closed') return 0; // see WRTC_CLOSE_RACE
    let bytes = 0;
    for (const channel of this.#channels) bytes += this.#bufferedAmount(channel);
    return bytes;
  }

  protected closeTransport(code: number, reason: string): void {
    this.#requestedClose = { code, reason };
    const reliable = this.#senders.get('reliable');
    if (!reliable || reliable.readyState !== 'open') {
      // Nothing to say goodbye on: not connected yet (or the channel is gone).
      this.#end({ code, reason, wasClean: false });
      return;
    }
    // What was sent before close() goes out first, whatever the buffers hold.
    for (const lane of this.outbound.lanes()) {
      const channel = this.#senders.get(lane);
      if (!channel || channel.readyState !== 'open') continue;
      if (lane === 'unreliable') for (let item; (item = this.outbound.shiftLane(lane)); ) this.#sendUnreliable(channel, item);
      else if (!this.#drainLane(lane, channel, Infinity)) return;
    }
    try {
      sendOn(reliable, closeFrame(code, reason));
    } catch (error) {
      this.#end({ code, reason: `${reason} (close frame not sent: ${errorText(error)})`, wasClean: false });
      return;
    }
    this.#closeTimer = setTimeout(() => this.#end({ code, reason, wasClean: false }), CLOSE_TIMEOUT_MS);
  }

  /** The peer's close frame: the answer to ours, or its own close, which we answer. */
  #peerClosed(code: number, reason: string): void {
    if (this.#requestedClose) {
      this.#end({ ...this.#requestedClose, wasClean: true });
      return;
    }
    try {
      const reliable = this.#senders.get('reliable');
      if (reliable) sendOn(reliable, closeFrame(code, reason));
    } catch {
      // The peer is closing anyway.
    }
    // The peer tears down once our answer arrives. Until then this side touches no channel (see
    // WRTC_CLOSE_RACE) and waits for that, or tears down alone after CLOSE_TIMEOUT_MS.
    this.finishClose({ code, reason, wasClean: true });
    this.#clearTimers();
    this.#closeTimer = setTimeout(() => this.#teardown(), CLOSE_TIMEOUT_MS);
  }

  /** Sends a reliable lane's queue while its channel has room, small messages batched; false if the connection ended. */
  #drainLane(lane: Lane, channel: RTCDataChannel, bufferLimit = WIRE_BUFFER_LIMIT): boolean {
    let batch: QueuedMessage[] = [];
    let batchBytes = 0;
    while (this.#bufferedAmount(channel, bufferLimit - batchBytes) + batchBytes < bufferLimit) {
      const item = this.outbound.shiftLane(lane);
      if (!item) break;
      // A frame's header is at most 8 bytes; BATCH_BYTES stays far under any SCTP limit.
      if (batchBytes + item.prepared.size + 8 > BATCH_BYTES) {
        if (!this.#sendBatch(channel, batch)) return false;
        batch = [];
        batchBytes = 0;
      }
      if (item.prepared.size + 8 > BATCH_BYTES) {
        if (!this.#sendReliable(channel, item)) return false;
        continue;
      }
      batch.push(item);
      batchBytes += item.prepared.size + 8;
    }
    return this.#sendBatch(channel, batch);
  }

  #sendBatch(channel: RTCDataChannel, batch: readonly QueuedMessage[]): boolean {
    if (batch.length <= 1) return batch.length === 0 || this.#sendReliable(channel, batch[0]!);
    try {
      this.#send(channel, batchFrame(batch.map((item) => item.prepared.message)));
    } catch (error) {
      this.#end({ code: CloseCode.abnormal, reason: `webrtc send failed: ${errorText(error)}`, wasClean: false });
      return false;
    }
    for (const item of batch) this.countSent(item.prepared);
    return true;
  }

  #sendReliable(channel: RTCDataChannel, item: QueuedMessage): boolean {
    try {
      for (const wire of chunkMessage(item.prepared.message, item.prepared.size, this.#maxWireMessage)) this.#send(channel, wire);
    } catch (error) {
      this.#end({ code: CloseCode.abnormal, reason: `webrtc send failed: ${errorText(error)}`, wasClean: false });
      return false;
    }
    this.countSent(item.prepared);
    return true;
  }

  #sendUnreliable(channel: RTCDataChannel, item: QueuedMessage): void {
    // Unreliable messages never wait: a full channel drops them (counted), like a full datagram queue.
    if (this.#bufferedAmount(channel, WIRE_BUFFER_LIMIT) >= WIRE_BUFFER_LIMIT) {
      this.counters.dropped++;
      return;
    }
    const message = item.prepared.message;
    // A view into a larger buffer is copied: not every stack honours a view's offset.
    const wire = typeof message === 'string' || (message.byteOffset === 0 && message.byteLength === message.buffer.byteLength) ? message : message.slice();
    try {
      this.#send(channel, wire);
    } catch {
      this.counters.dropped++;
      return;
    }
    this.countSent(item.prepared);
  }

  /** Opens this side's channel for a `channel:<name>` lane on first use. */
  #openChannel(lane: Lane): RTCDataChannel | undefined {
    if (!this.#peer || lane === 'reliable' || lane === 'unreliable' || this.#peer.connectionState === 'closed') return undefined;
    const channel = this.#track(this.#peer.createDataChannel(lane, { ordered: true }));
    this.#senders.set(lane, channel);
    return channel;
  }

  /**
   * A channel's bufferedAmount, at most BUFFERED_READING_MS old plus our sends since (see
   * #buffered); read afresh when that bound reaches `limit`, so no send is refused on a stale bound.
   */
  #bufferedAmount(channel: RTCDataChannel, limit = Infinity): number {
    const now = performance.now();
    const reading = this.#buffered.get(channel);
    if (reading && now - reading.at < BUFFERED_READING_MS && reading.bytes < limit) return reading.bytes;
    const bytes = channel.bufferedAmount;
    this.#buffered.set(channel, { bytes, at: now });
    return bytes;
  }

  /** Sends on a channel; its bufferedAmount bound grows by what was sent (a string's byte size is not known here: the reading is dropped). */
  #send(channel: RTCDataChannel, wire: string | Uint8Array): void {
    sendOn(channel, wire);
    const reading = this.#buffered.get(channel);
    if (!reading) return;
    if (typeof wire === 'string') this.#buffered.delete(channel);
    else reading.bytes += wire.byteLength;
  }

  readonly #resume = (): void => {
    this.#buffered.clear();
    this.onFlushed();
    if (this.outbound.length > 0) this.requestFlush();
  };

  /** Where `bufferedamountlow` never fires, checks the buffers until they have room again. */
  #pollWhileFull(): void {
    if (this.#pollTimer !== undefined) return;
    this.#pollTimer = setTimeout(() => {
      this.#pollTimer = undefined;
      if (this.state !== 'open' && this.state !== 'closing') return;
      this.#resume();
      if (!this.writable || (this.outbound.length > 0 && this.#anyChannelFull())) this.#pollWhileFull();
    }, POLL_MS);
  }

  #anyChannelFull(): boolean {
    for (const channel of this.#senders.values()) if (this.#bufferedAmount(channel, WIRE_BUFFER_LIMIT) >= WIRE_BUFFER_LIMIT) return true;
    return false;
  }

  #refreshStats(): Promise<void> {
    const peer = this.#peer;
    if (!peer) return Promise.resolve();
    this.#statsAt = Date.now();
    return peer.getStats().then(
      (report) => {
        let pairId: string | undefined;
        report.forEach((entry: { type: string; selectedCandidatePairId?: string; bytesSent?: number; bytesReceived?: number }) => {
          if (entry.type !== 'transport') return;
          pairId = entry.selectedCandidatePairId;
          this.#sample.wireBytesOut = entry.bytesSent ?? null;
          this.#sample.wireBytesIn = entry.bytesReceived ?? null;
        });
        const pair = pairId ? (report.get(pairId) as { currentRoundTripTime?: number } | undefined) : undefined;
        if (pair?.currentRoundTripTime !== undefined) this.#sample.rttMs = pair.currentRoundTripTime * 1000;
      },
      () => undefined, // a closed peer connection has no stats: keep the last sample
    );
  }

  /** Ends the connection (if it has not ended yet) and tears the peer connection down now. */
  #end(info: CloseInfo): void {
    if (this.state !== 'closed') this.finishClose(info);
    this.#teardown();
  }

  #clearTimers(): void {
    this.#iceStateAtEnd ??= this.#peer?.iceConnectionState;
    clearTimeout(this.#openTimer);
    clearTimeout(this.#closeTimer);
    clearTimeout(this.#disconnectedTimer);
    clearTimeout(this.#pollTimer);
  }

  /** Closes the peer connection and forgets its channels; once. */
  #teardown(): void {
    if (this.#tornDown) return;
    this.#clearTimers();
    this.#tornDown = true;
    webrtcResources.dataChannels -= this.#channels.size;
    for (const channel of this.#channels) {
      channel.onmessage = channel.onclose = channel.onopen = channel.onbufferedamountlow = null;
    }
    this.#channels.clear();
    this.#senders.clear();
    if (this.#peer) {
      this.#peer.removeEventListener('connectionstatechange', this.#onStateChange);
      this.#peer.removeEventListener('iceconnectionstatechange', this.#onStateChange);
      this.#peer.close();
      webrtcResources.peerConnections--;
    }
  }
}

/**
 * Resolves once the peer connection has gathered its candidates, or after `timeoutMs` with what it
 * has. With `quietMs`, also once that long has passed without a new candidate after the first one:
 * for host-only ICE (no STUN/TURN servers), where every UDP host candidate comes within a few ms and
 * libwebrtc adds TCP ones only after a 100 ms phase delay — worth waiting for only where UDP is
 * blocked, and a data channel over ICE-TCP would lose the point of `unreliable` anyway.
 */
export function iceGathered(peer: RTCPeerConnection, timeoutMs: number, quietMs?: number): Promise<void> {
  if (peer.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    let quiet: ReturnType<typeof setTimeout> | undefined;
    const done = (): void => {
      clearTimeout(timer);
      clearTimeout(quiet);
      peer.removeEventListener('icegatheringstatechange', check);
      peer.removeEventListener('icecandidate', candidate);
      resolve();
    };
    const check = (): void => {
      if (peer.iceGatheringState === 'complete') done();
    };
    const candidate = (): void => {
      if (quietMs === undefined) return;
      clearTimeout(quiet);
      quiet = setTimeout(done, quietMs);
    };
    const timer = setTimeout(done, timeoutMs);
    peer.addEventListener('icegatheringstatechange', check);
    peer.addEventListener('icecandidate', candidate);
  });
}

/** One wire message on a channel (our buffers are never shared, whatever their static type says). */
function sendOn(channel: RTCDataChannel, wire: string | Uint8Array): void {
  if (typeof wire === 'string') channel.send(wire);
  else channel.send(wire as Uint8Array<ArrayBuffer>);
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
