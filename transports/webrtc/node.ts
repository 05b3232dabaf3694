/** `webrtc` client for Node: the shared client over `@roamhq/wrtc`, loaded only when used. */
import type { Connection } from '../transport.ts';
import { connectWebRtc, type WebRtcClientOptions } from './client.ts';
import { loadWrtc } from './wrtc.ts';

export function connectWebRtcNode(options: WebRtcClientOptions): Connection {
  return connectWebRtc({ ...options, RTCPeerConnection: options.RTCPeerConnection ?? loadWrtc() });
}
