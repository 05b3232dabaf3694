/**
 * The `webrtc` transport, client side, against a Switchyard server: this side offers, the server
 * answers. Browser-safe (the browser's native `RTCPeerConnection`); Node passes wrtc's (node.ts).
 *
 * Signalling is one HTTP exchange on the server's port, WHIP-like: `POST {url}/rtc` with the SDP
 * offer (`application/sdp`), `201` with the SDP answer and `Location: /rtc/<session>`, which this
 * side DELETEs if it gives up before the data channel opens. Candidates
 * are not trickled: the offer goes once this side has gathered them, so one request does it all
 * and the server keeps no half-negotiated state between requests (host candidates take a few ms;
 * a STUN/TURN server, when configured, is waited for up to GATHER_TIMEOUT_MS). Trickle would save
 * those ms but need a second request per candidate and a session that lives between requests.
 */
import type { ClientTransportOptions, Connection } from '../transport.ts';
import { iceGathered, WebRtcConnection } from './connection.ts';

/** Longest wait for candidates before the offer goes with what it has. */
export const GATHER_TIMEOUT_MS = 2_000;
/** With host candidates only, the description goes this long after the last new candidate (see iceGathered). */
export const HOST_CANDIDATES_QUIET_MS = 20;
/** Path of the signalling endpoint on the server. */
export const SIGNALLING_PATH = '/rtc';

export type PeerConnectionClass = new (configuration?: RTCConfiguration) => RTCPeerConnection;

export interface WebRtcClientOptions extends ClientTransportOptions {
  /** `RTCPeerConnection` implementation; default `globalThis.RTCPeerConnection`. */
  RTCPeerConnection?: PeerConnectionClass | Promise<PeerConnectionClass> | undefined;
  /** STUN/TURN servers; default none (host candidates: same host or LAN). */
  iceServers?: RTCIceServer[] | undefined;
  /** `relay` uses TURN only (hides this host's addresses). Default `all`. */
  iceTransportPolicy?: RTCIceTransportPolicy | undefined;
  /** fetch for the signalling request (Node passes one that trusts the server's certificate). */
  fetch?: typeof fetch | undefined;
  /** Signalling path, appended to the URL's path. Default `/rtc`. */
  path?: string | undefined;
}

/** Makes a peer connection of the given (or the global) class. */
export async function createPeer(implementation: WebRtcClientOptions['RTCPeerConnection'], ice: Pick<RTCConfiguration, 'iceServers' | 'iceTransportPolicy'>): Promise<RTCPeerConnection> {
  const PeerConnection = (await implementation) ?? (globalThis as { RTCPeerConnection?: PeerConnectionClass }).RTCPeerConnection;
  if (!PeerConnection) throw new Error('this environment has no RTCPeerConnection');
  return new PeerConnection({ iceServers: ice.iceServers ?? [], ...(ice.iceTransportPolicy ? { iceTransportPolicy: ice.iceTransportPolicy } : {}) });
}

/** Opens a `webrtc` client connection to a Switchyard server. */
export function connectWebRtc(options: WebRtcClientOptions): Connection {
  const fetchFn = options.fetch ?? fetch;
  let session: URL | undefined;
  let gaveUp = false;
  // Given up before it opened (timeout, fallback): the server need not wait out its ICE timeout.
  const endSession = (): void => {
    if (session && gaveUp) void fetchFn(session, { method: 'DELETE' }).then((response) => response.body?.cancel(), () => undefined);
  };
  const connection = new WebRtcConnection(createPeer(options.RTCPeerConnection, options), {
    role: 'offerer',
    defaultPolicy: 'wait',
    backpressure: options.backpressure,
    laneFallback: options.laneFallback,
    openTimeoutMs: options.connectTimeoutMs ?? 10_000,
    negotiate: async (peer) => {
      await peer.setLocalDescription(await peer.createOffer());
      await iceGathered(peer, GATHER_TIMEOUT_MS, options.iceServers?.length ? undefined : HOST_CANDIDATES_QUIET_MS);
      const url = new URL(options.url);
      url.pathname = url.pathname.replace(/\/+$/, '') + (options.path ?? SIGNALLING_PATH);
      const offer = peer.localDescription!.sdp;
      let response = await fetchFn(url, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: offer });
      // 503 ERR_BUSY: too many sessions connecting at once; the server says when to ask again.
      while (response.status === 503 && response.headers.has('retry-after') && peer.signalingState !== 'closed') {
        await response.body?.cancel();
        const seconds = Number(response.headers.get('retry-after'));
        await new Promise((resolve) => setTimeout(resolve, (Number.isFinite(seconds) ? seconds : 1) * 1000 * (0.5 + Math.random() / 2)));
        response = await fetchFn(url, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: offer });
      }
      const body = await response.text();
      if (response.status !== 201) throw new Error(`POST ${url.pathname} answered ${response.status}: ${body.slice(0, 200)}`);
      const location = response.headers.get('location');
      if (location) session = new URL(location, url);
      if (peer.signalingState === 'closed') return endSession();
      await peer.setRemoteDescription({ type: 'answer', sdp: body });
    },
  });
  connection.opened.catch(() => {
    gaveUp = true;
    endSession();
  });
  return connection;
}
