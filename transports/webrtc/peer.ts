/**
 * Peer-to-peer `webrtc` connections between two clients of one server: `client.peer(id)` offers,
 * the other client answers, and the offer and answer (candidates inside, not trickled: one message
 * each way) travel as ordinary unicast messages through the router, under its hooks. Once open, the
 * Connection (same contract and lanes as client–server) carries nothing through the server.
 *
 * A signal is the payload `{ "$webrtc": "offer" | "answer" | "reject", session, sdp?, reason? }`
 * of a `send`; the client core hands such payloads here instead of emitting them as messages.
 * Browser-safe; Node passes wrtc's RTCPeerConnection.
 */
import type { Payload } from '../codec/envelope.ts';
import { SwitchyardError } from '../errors.ts';
import { randomId } from '../random-id.ts';
import type { BackpressureOptions, Connection } from '../transport.ts';
import { createPeer, GATHER_TIMEOUT_MS, HOST_CANDIDATES_QUIET_MS, type PeerConnectionClass } from './client.ts';
import { errorText, iceGathered, WebRtcConnection } from './connection.ts';

export interface PeerSignal {
  $webrtc: 'offer' | 'answer' | 'reject';
  session: string;
  sdp?: string;
  reason?: string;
}

export function isPeerSignal(data: Payload): data is PeerSignal & Payload {
  if (typeof data !== 'object' || data === null || data instanceof Uint8Array || Array.isArray(data)) return false;
  const signal = data as Record<string, unknown>;
  return (signal.$webrtc === 'offer' || signal.$webrtc === 'answer' || signal.$webrtc === 'reject') && typeof signal.session === 'string';
}

/** A direct connection to another client could not be made; `code` says at which step. */
export class PeerConnectError extends SwitchyardError {
  constructor(
    code: 'ERR_PEER_ICE_FAILED' | 'ERR_PEER_REJECTED' | 'ERR_PEER_SIGNALLING',
    message: string,
    readonly iceState: string | undefined,
  ) {
    super(code, message);
  }
}

export interface PeerLinkOptions {
  /** Sends a signal to another client (acknowledged unicast through the router). */
  signal: (to: string, signal: PeerSignal) => Promise<void>;
  /** Gives the `RTCPeerConnection` class when the first peer connection is made; default the global one. */
  loadRTCPeerConnection?: (() => Promise<PeerConnectionClass>) | undefined;
  iceServers?: RTCIceServer[] | undefined;
  /** `relay` uses TURN only (hides this host's addresses from the other client). Default `all`. */
  iceTransportPolicy?: RTCIceTransportPolicy | undefined;
  /** From the offer until the data channel is open (ms). Default 10 000. */
  connectTimeoutMs?: number | undefined;
  backpressure?: BackpressureOptions | undefined;
  /** Whether to answer an offer from this client. Default: every client. */
  accept?: ((from: string) => boolean) | undefined;
  /** An answered peer connection opened. */
  onPeer: (connection: Connection, from: string) => void;
}

/** Offers being answered by this client at most (each one holds a peer connection until ICE ends). */
const MAX_INCOMING_PENDING = 16;

/** One client's peer-to-peer side: outgoing offers waiting for answers, incoming offers being answered. */
export class PeerLinks {
  readonly #options: PeerLinkOptions;
  readonly #awaitingAnswer = new Map<string, { to: string; resolve: (sdp: string) => void; reject: (error: Error) => void }>();
  #incomingPending = 0;

  constructor(options: PeerLinkOptions) {
    this.#options = options;
  }

  /** Opens a direct connection to client `to`; rejects with PeerConnectError. */
  async connect(to: string): Promise<Connection> {
    const session = randomId(16);
    const timeoutMs = this.#options.connectTimeoutMs ?? 10_000;
    const connection = new WebRtcConnection(createPeer(this.#options.loadRTCPeerConnection?.(), this.#options), {
      role: 'offerer',
      defaultPolicy: 'wait',
      backpressure: this.#options.backpressure,
      openTimeoutMs: timeoutMs,
      negotiate: async (peer) => {
        await peer.setLocalDescription(await peer.createOffer());
        await iceGathered(peer, GATHER_TIMEOUT_MS, this.#quietMs());
        const answer = new Promise<string>((resolve, reject) => this.#awaitingAnswer.set(session, { to, resolve, reject }));
        await this.#options.signal(to, { $webrtc: 'offer', session, sdp: peer.localDescription!.sdp });
        const sdp = await answer;
        if (peer.signalingState !== 'closed') await peer.setRemoteDescription({ type: 'answer', sdp });
      },
    });
    try {
      await connection.opened;
      return connection;
    } catch {
      const info = await connection.closed;
      const waiting = this.#awaitingAnswer.get(session);
      this.#awaitingAnswer.delete(session);
      waiting?.reject(new Error('gave up'));
      const ice = connection.iceState;
      const code = /rejected/.test(info.reason) ? 'ERR_PEER_REJECTED' : /negotiation failed/.test(info.reason) && ice === 'new' ? 'ERR_PEER_SIGNALLING' : 'ERR_PEER_ICE_FAILED';
      throw new PeerConnectError(code, `no direct connection to ${to}: ${info.reason}`, ice);
    }
  }

  /** A signal from client `from`. */
  handle(from: string, signal: PeerSignal): void {
    if (signal.$webrtc === 'offer') return this.#answer(from, signal);
    const waiting = this.#awaitingAnswer.get(signal.session);
    // Only the client the offer went to may answer it.
    if (!waiting || waiting.to !== from) return;
    this.#awaitingAnswer.delete(signal.session);
    if (signal.$webrtc === 'answer' && typeof signal.sdp === 'string') waiting.resolve(signal.sdp);
    else waiting.reject(new Error(`offer rejected by ${from}: ${signal.reason ?? 'no reason given'}`));
  }

  #answer(from: string, offer: PeerSignal): void {
    const reject = (reason: string) => void this.#options.signal(from, { $webrtc: 'reject', session: offer.session, reason }).catch(() => undefined);
    if (typeof offer.sdp !== 'string') return reject('offer without sdp');
    if (this.#options.accept && !this.#options.accept(from)) return reject('not accepted');
    if (this.#incomingPending >= MAX_INCOMING_PENDING) return reject('busy');
    this.#incomingPending++;
    const sdp = offer.sdp;
    const connection = new WebRtcConnection(createPeer(this.#options.loadRTCPeerConnection?.(), this.#options), {
      role: 'answerer',
      defaultPolicy: 'wait',
      backpressure: this.#options.backpressure,
      openTimeoutMs: this.#options.connectTimeoutMs ?? 10_000,
      negotiate: async (peer) => {
        try {
          await peer.setRemoteDescription({ type: 'offer', sdp });
          await peer.setLocalDescription(await peer.createAnswer());
          await iceGathered(peer, GATHER_TIMEOUT_MS, this.#quietMs());
        } catch (error) {
          reject(`bad offer: ${errorText(error)}`);
          throw error;
        }
        await this.#options.signal(from, { $webrtc: 'answer', session: offer.session, sdp: peer.localDescription!.sdp });
      },
    });
    void connection.opened.then(
      () => this.#options.onPeer(connection, from),
      () => undefined, // the offerer learns from its own ICE state or timeout
    );
    void connection.opened.finally(() => this.#incomingPending--).catch(() => undefined);
  }

  #quietMs(): number | undefined {
    return this.#options.iceServers?.length ? undefined : HOST_CANDIDATES_QUIET_MS;
  }
}
