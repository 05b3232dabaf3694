/**
 * `@roamhq/wrtc` (libwebrtc for Node, a native binding), loaded on first use only: a process that
 * never asks for `webrtc` never loads it.
 */
let loading: Promise<typeof RTCPeerConnection> | undefined;

/** The Node `RTCPeerConnection` class. */
export function loadWrtc(): Promise<typeof RTCPeerConnection> {
  loading ??= import('@roamhq/wrtc').then((module) => (module.default ?? module).RTCPeerConnection as unknown as typeof RTCPeerConnection);
  return loading;
}
