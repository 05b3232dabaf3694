/**
 * The `webrtc` transport, server side: the server is a WebRTC peer (`@roamhq/wrtc`, loaded on the
 * first offer), signalled over the shared HTTP(S) port, WHIP-like (see client.ts):
 *
 *   POST /rtc          body: SDP offer with its candidates  → 201 SDP answer, Location: /rtc/<session>
 *   DELETE /rtc/<id>   the client gives up on (or ends) a session → 204
 *
 * Every step is bounded, because anyone may POST: the offer's size (413), the time to answer
 * (signallingTimeoutMs, 503), the sessions answered but not yet connected (maxPending, 503 with
 * Retry-After) and the time ICE and DTLS get to connect them (iceTimeoutMs, then the peer
 * connection is closed). A bad offer is a 400 with a typed error; an unknown session a 404.
 * Connections are handed over once the client's `reliable` data channel is open.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readBody } from '../http-body.ts';
import { randomId } from '../random-id.ts';
import type { HttpTransportServer } from '../http-transport-server.ts';
import type { Connection, ServerTransportOptions } from '../transport.ts';
import { CloseCode } from '../transport.ts';
import { GATHER_TIMEOUT_MS, HOST_CANDIDATES_QUIET_MS, SIGNALLING_PATH, type PeerConnectionClass } from './client.ts';
import { errorText, iceGathered, WebRtcConnection } from './connection.ts';
import { IsolatedRTCPeerConnection, type RemotePeerConnection } from './wrtc-remote.ts';

export interface WebRtcServerOptions extends ServerTransportOptions {
  /** Signalling path. Default `/rtc`. */
  path?: string;
  /** Largest SDP offer in bytes. Default 64 KiB (a data-channel offer with many candidates is ~2 KiB). */
  maxOfferBytes?: number;
  /** Longest time from an offer to its answer (ms). Default 5 000. */
  signallingTimeoutMs?: number;
  /** Longest time from the offer until the client's data channel is open (ms), answer included. Default 10 000. */
  iceTimeoutMs?: number;
  /**
   * Offers being answered plus sessions answered and not yet connected, at most. Default 32: wrtc
   * holds 100–150 sockets per peer connection while ICE checks run (UDP and TCP on every
   * interface; 64 pending sessions peaked at 9 766 descriptors here) and about 50 once connected,
   * so this bounds the descriptors strangers can pin.
   */
  maxPending?: number;
  /** STUN/TURN servers for the server's peer connections; default none (host candidates). */
  iceServers?: RTCIceServer[];
  /** `RTCPeerConnection` implementation; default `@roamhq/wrtc`'s in a child process (wrtc-remote.ts). */
  RTCPeerConnection?: PeerConnectionClass | Promise<PeerConnectionClass>;
}

/** What the signalling endpoint did, for tests and the lab. */
export interface WebRtcSignallingStats {
  answered: number;
  badOffers: number;
  busy: number;
  unknownSessions: number;
  /** Sessions the client ended with DELETE (e.g. given up before connecting). */
  deleted: number;
  /** Answered sessions that closed before connecting (ICE timeout, or ended by DELETE). */
  iceTimeouts: number;
}

class SignallingError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export class WebRtcTransportServer implements HttpTransportServer {
  readonly name = 'webrtc' as const;
  readonly path: string;
  readonly #options: WebRtcServerOptions;
  readonly #sessions = new Map<string, WebRtcConnection>();
  /** Sessions answered and not yet connected. */
  readonly #connecting = new Set<WebRtcConnection>();
  /** Offers read or being answered right now. */
  #signalling = 0;
  #handler: ((connection: Connection) => void) | undefined;
  #closed = false;
  readonly #stats: WebRtcSignallingStats = { answered: 0, badOffers: 0, busy: 0, unknownSessions: 0, deleted: 0, iceTimeouts: 0 };

  constructor(options: WebRtcServerOptions = {}) {
    this.#options = options;
    this.path = options.path ?? SIGNALLING_PATH;
  }

  /** Open connections. */
  get connectionCount(): number {
    return this.#sessions.size - this.#connecting.size;
  }

  /** Offers being answered plus answered sessions not yet connected. */
  get pendingCount(): number {
    return this.#signalling + this.#connecting.size;
  }

  signallingStats(): WebRtcSignallingStats {
    return { ...this.#stats };
  }

  onConnection(handler: (connection: Connection) => void): void {
    this.#handler = handler;
  }

  handleRequest(request: IncomingMessage, response: ServerResponse): boolean {
    const pathname = (request.url ?? '/').split('?')[0]!;
    if (pathname !== this.path && !pathname.startsWith(`${this.path}/`)) return false;
    const session = pathname.slice(this.path.length + 1);
    if (session !== '') {
      const connection = this.#sessions.get(session);
      if (!connection) {
        this.#stats.unknownSessions++;
        fail(request, response, new SignallingError(404, 'ERR_UNKNOWN_SESSION', `no webrtc session '${session.slice(0, 64)}'`));
      } else if (request.method !== 'DELETE') {
        fail(request, response, new SignallingError(405, 'ERR_METHOD', `${request.method} is not allowed on a session (DELETE ends it)`));
      } else {
        this.#stats.deleted++;
        connection.close(CloseCode.normal, 'client ended the session');
        request.resume();
        response.writeHead(204).end();
      }
      return true;
    }
    if (request.method !== 'POST') {
      fail(request, response, new SignallingError(405, 'ERR_METHOD', `use POST with an SDP offer`));
      return true;
    }
    if (this.#closed) {
      fail(request, response, new SignallingError(503, 'ERR_SHUTTING_DOWN', 'server is shutting down'));
      return true;
    }
    if (this.pendingCount >= (this.#options.maxPending ?? 32)) {
      this.#stats.busy++;
      fail(request, response, new SignallingError(503, 'ERR_BUSY', 'too many webrtc sessions are connecting; retry later'), { 'retry-after': '1' });
      return true;
    }
    this.#signalling++;
    // Counted as signalling until its session counts as connecting (never both).
    let signalling = true;
    const handOver = () => {
      if (signalling) this.#signalling--;
      signalling = false;
    };
    const limit = this.#options.maxOfferBytes ?? 64 * 1024;
    void readBody(request, limit)
      .then((body) => {
        if (body === undefined) throw new SignallingError(413, 'ERR_BODY_TOO_LARGE', `offer over ${limit} bytes`);
        return this.#answer(offerText(body), handOver);
      })
      .then(
        ({ id, sdp }) => {
          this.#stats.answered++;
          response.writeHead(201, { 'content-type': 'application/sdp', location: `${this.path}/${id}`, 'cache-control': 'no-store' }).end(sdp);
        },
        (error: unknown) => {
          if (error instanceof SignallingError && error.status === 400) this.#stats.badOffers++;
          fail(request, response, error instanceof SignallingError ? error : new SignallingError(500, 'ERR_SIGNALLING', errorText(error)));
        },
      )
      .finally(handOver);
    return true;
  }

  /** Makes the server's peer for one offer; resolves with its answer (candidates included). */
  async #answer(offer: string, handOver: () => void): Promise<{ id: string; sdp: string }> {
    const PeerConnection = await (this.#options.RTCPeerConnection ?? IsolatedRTCPeerConnection);
    if (this.#closed) throw new SignallingError(503, 'ERR_SHUTTING_DOWN', 'server is shutting down');
    const peer = new PeerConnection({ iceServers: this.#options.iceServers ?? [] });
    const iceTimeoutMs = this.#options.iceTimeoutMs ?? 10_000;
    const connection = new WebRtcConnection(peer, {
      role: 'answerer',
      defaultPolicy: 'disconnect',
      backpressure: this.#options.backpressure,
      laneFallback: this.#options.laneFallback,
      maxMessageSize: this.#options.maxMessageSize,
      openTimeoutMs: iceTimeoutMs,
    });
    const id = randomId(16);
    this.#sessions.set(id, connection);
    handOver();
    this.#connecting.add(connection);
    connection.on('open', () => {
      this.#connecting.delete(connection);
      this.#handler?.(connection);
    });
    void connection.closed.then(() => {
      if (this.#connecting.delete(connection)) this.#stats.iceTimeouts++;
      this.#sessions.delete(id);
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const timeoutMs = this.#options.signallingTimeoutMs ?? 5_000;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new SignallingError(503, 'ERR_SIGNALLING_TIMEOUT', `no answer within ${timeoutMs} ms`)), timeoutMs);
      });
      const negotiate = async (): Promise<string> => {
        try {
          await peer.setRemoteDescription({ type: 'offer', sdp: offer });
        } catch (error) {
          throw new SignallingError(400, 'ERR_BAD_OFFER', `the offer is not a usable SDP offer: ${errorText(error)}`);
        }
        await peer.setLocalDescription(await peer.createAnswer());
        await iceGathered(peer, GATHER_TIMEOUT_MS, this.#options.iceServers?.length ? undefined : HOST_CANDIDATES_QUIET_MS);
        // The isolated peer connection (wrtc-remote.ts) answers from its process; a given RTCPeerConnection at once.
        const isolated = peer as Partial<Pick<RemotePeerConnection, 'fetchLocalDescription'>>;
        return ((await isolated.fetchLocalDescription?.()) ?? peer.localDescription)!.sdp!;
      };
      return { id, sdp: await Promise.race([negotiate(), timeout]) };
    } catch (error) {
      // Not an iceTimeout: this session never got an answer.
      this.#connecting.delete(connection);
      connection.close(CloseCode.protocolError, 'signalling failed');
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    const connections = [...this.#sessions.values()];
    for (const connection of connections) connection.close(CloseCode.goingAway, 'server shutting down');
    await Promise.all(connections.map((connection) => connection.closed));
  }
}

/** The offer as text; anything but a data-channel SDP offer is refused before wrtc sees it. */
function offerText(body: Uint8Array): string {
  let sdp: string;
  try {
    sdp = utf8.decode(body);
  } catch {
    throw new SignallingError(400, 'ERR_BAD_OFFER', 'the offer is not UTF-8 text');
  }
  if (!sdp.startsWith('v=0')) throw new SignallingError(400, 'ERR_BAD_OFFER', 'the offer is not SDP (it must start with v=0)');
  if (!/^m=application \d+ [A-Z/]*SCTP/m.test(sdp)) throw new SignallingError(400, 'ERR_BAD_OFFER', 'the offer has no data-channel section (m=application … SCTP)');
  return sdp;
}

/**
 * Answers with a typed error once the request body is read and discarded: answering while the
 * client still sends makes Node close the socket under it (the client sees ECONNRESET, not the error).
 */
function fail(request: IncomingMessage, response: ServerResponse, error: SignallingError, headers: Record<string, string> = {}): void {
  if (response.headersSent) return;
  if (!request.complete) {
    request.once('end', () => fail(request, response, error, headers));
    request.resume();
    return;
  }
  response.writeHead(error.status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers }).end(JSON.stringify({ error: { code: error.code, message: error.message } }));
}
