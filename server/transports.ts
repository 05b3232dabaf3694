/**
 * The server's transport registry: one entry per transport. `http` transports share the TCP port
 * (requests and upgrades are offered to each in turn); `quic` ones bind the UDP port of the same
 * number and need the certificate. WebTransport's module (and the native QUIC binding under it) is
 * loaded only when a server serves it; webrtc's native binding only on its first offer.
 */
import type { CertificateBundle } from '../certs/index.ts';
import { LongPollingTransportServer } from '../transports/long-polling/server.ts';
import { PollingTransportServer } from '../transports/polling/server.ts';
import type { HttpTransportServer } from '../transports/http-transport-server.ts';
import type { ServerTransportOptions, TransportName } from '../transports/transport.ts';
import { WebRtcTransportServer, type WebRtcServerOptions } from '../transports/webrtc/server.ts';
import { WebSocketTransportServer } from '../transports/websocket/server.ts';
import type { WebTransportQuicOptions, WebTransportTransportServer } from '../transports/webtransport/server.ts';

export interface TransportSetup {
  common: ServerTransportOptions;
  longPolling: { holdMs?: number; pollTimeoutMs?: number } | undefined;
  webrtc?: Omit<WebRtcServerOptions, keyof ServerTransportOptions> | undefined;
}

export interface QuicSetup extends TransportSetup {
  host: string;
  port: number;
  certificate: CertificateBundle;
  quic?: WebTransportQuicOptions | undefined;
}

export type TransportEntry =
  | { kind: 'http'; create(setup: TransportSetup): HttpTransportServer }
  | { kind: 'quic'; create(setup: QuicSetup): Promise<WebTransportTransportServer> };

export const SERVER_TRANSPORTS: Record<TransportName, TransportEntry> = {
  websocket: { kind: 'http', create: ({ common }) => new WebSocketTransportServer(common) },
  'long-polling': { kind: 'http', create: ({ common, longPolling }) => new LongPollingTransportServer({ ...common, ...longPolling }) },
  polling: { kind: 'http', create: ({ common, longPolling }) => new PollingTransportServer({ ...common, pollTimeoutMs: longPolling?.pollTimeoutMs }) },
  // Its signalling is an HTTP route; wrtc (native) is loaded on the first offer.
  webrtc: { kind: 'http', create: ({ common, webrtc }) => new WebRtcTransportServer({ ...common, ...webrtc }) },
  webtransport: {
    kind: 'quic',
    create: async ({ common, host, port, certificate, quic }) => {
      const { WebTransportTransportServer } = await import('../transports/webtransport/server.ts');
      return new WebTransportTransportServer({ ...common, host, port, certPem: certificate.certPem, keyPem: certificate.keyPem, quic });
    },
  },
};
