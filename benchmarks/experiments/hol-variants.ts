/**
 * The head-of-line experiment's variants (one transport and lane layout each) and the messages the
 * runner and its client worker exchange. Shared by both processes; no I/O here.
 */
import type { Lane, TransportName } from '../../transports/transport.ts';
import type { FlowSeries } from './analysis.ts';

export type HolVariant =
  | 'websocket'
  | 'long-polling'
  | 'webtransport-reliable'
  | 'webtransport-channels'
  | 'webtransport-unreliable'
  | 'webrtc-reliable'
  | 'webrtc-channels'
  | 'webrtc-unreliable';

export const HOL_VARIANTS: readonly HolVariant[] = ['websocket', 'long-polling', 'webtransport-reliable', 'webtransport-channels', 'webtransport-unreliable', 'webrtc-reliable', 'webrtc-channels', 'webrtc-unreliable'];

/**
 * Transport, and the lane flow `i` uses: every flow on one ordered lane, or one channel per flow
 * (a QUIC stream; on WebRTC an ordered, reliable data channel, an SCTP stream), or datagrams (on
 * WebRTC an unordered data channel with maxRetransmits 0).
 */
export const VARIANT_LAYOUT: Record<HolVariant, { transport: TransportName; lane: (flow: number) => Lane }> = {
  websocket: { transport: 'websocket', lane: () => 'reliable' },
  'long-polling': { transport: 'long-polling', lane: () => 'reliable' },
  'webtransport-reliable': { transport: 'webtransport', lane: () => 'reliable' },
  'webtransport-channels': { transport: 'webtransport', lane: (flow) => `channel:flow${flow}` },
  'webtransport-unreliable': { transport: 'webtransport', lane: () => 'unreliable' },
  'webrtc-reliable': { transport: 'webrtc', lane: () => 'reliable' },
  'webrtc-channels': { transport: 'webrtc', lane: (flow) => `channel:flow${flow}` },
  'webrtc-unreliable': { transport: 'webrtc', lane: () => 'unreliable' },
};

/** Whether the variant sends on a lane that may lose messages (its loss is the datagram loss). */
export const isUnreliable = (variant: HolVariant): boolean => VARIANT_LAYOUT[variant].lane(0) === 'unreliable';

/** One run the worker is asked to do (a JSON line on its stdin). */
export interface WorkerCommand {
  variant: HolVariant;
  /** Server's HTTP base URL. */
  url: string;
  /** WebTransport session URL and certificate hash, when not the server's own (the UDP relay). */
  webTransportUrl?: string;
  certificateSha256?: string;
  flows: number;
  ratePerFlow: number;
  messageSize: number;
  durationMs: number;
}

/** The worker's answer (a JSON line on its stdout). */
export interface WorkerReply {
  variant: HolVariant;
  error?: string;
  flows: FlowSeries[];
  /** process.hrtime (CLOCK_MONOTONIC) in ms at the series' time 0: places the path's drop times on the series' clock. */
  monotonicT0Ms?: number;
  /** The client connection's counters at the end (QUIC loss and retransmits, local datagram drops). */
  stats: { packetsLost: number | null; packetsRetransmitted: number | null; rttMs: number | null; dropped: number } | null;
}

/** Bytes of the message header: flow (u8), sequence (u32); the rest of the message is padding. */
export const HEADER_BYTES = 5;
