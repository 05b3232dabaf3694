/**
 * The seam between HTTP/3 and the transport under it. `H3Connection` and the WebTransport session
 * layer see only this: streams of bytes and datagrams of one connection. The QUIC connection
 * (`quic.ts`) implements `StreamIO` and calls a `StreamIOHandler`; tests drive the HTTP/3 layer with
 * byte fixtures through an in-memory `StreamIO` instead, without sockets or quiche.
 */

/** Why a connection ended, when it was not a clean close by nobody in particular. */
export interface ConnectionCloseInfo {
  /** This side closed it. */
  local: boolean;
  code: number;
  reason: string;
  /** An application (HTTP/3) error code rather than a QUIC transport one. */
  isApp: boolean;
}

/** Counters a transport may report (QUIC's, from quiche). */
export interface StreamIOStats {
  smoothedRttMs: number | null;
  cwnd: number | null;
  packetsSent: number;
  packetsLost: number;
  packetsRetransmitted: number;
  bytesSent: number;
  bytesReceived: number;
  datagramsDropped: number;
}

/** Output of the HTTP/3 layer: what it asks of the connection. */
export interface StreamIO {
  readonly isClosed: boolean;
  /** Queues bytes on a stream (`fin` ends it); what the transport cannot take now waits for credit. */
  write(streamId: number, bytes: Uint8Array, fin?: boolean): void;
  /** Bytes queued on a stream and not yet taken by the transport. */
  queued(streamId: number): number;
  /**
   * Pauses (false) or resumes (true) delivery of a stream's bytes. A paused stream's bytes stay in
   * the transport, so flow control holds the peer back.
   */
  setReading(streamId: number, reading: boolean): void;
  /** RESET_STREAM (`write`) or STOP_SENDING (`read`) with an HTTP/3 error code. */
  shutdown(streamId: number, direction: 'read' | 'write', code: number): void;
  /**
   * Runs `task` once what is queued now has been sent (after the next flush; never, if the
   * connection closes first): what `task` sends then goes out in later packets.
   */
  afterFlush(task: () => void): void;
  /** Sends a datagram; false when it was dropped (queue full, too large, closed). */
  sendDatagram(payload: Uint8Array): boolean;
  /** Largest datagram payload the peer takes now; null when unknown or unsupported. */
  maxDatagramPayload(): number | null;
  /** Closes the whole connection with an error code (`isApp`: an HTTP/3 code). */
  close(isApp: boolean, code: number, reason: string): void;
  stats(): StreamIOStats | null;
}

/** Input of the HTTP/3 layer: what the connection tells it. */
export interface StreamIOHandler {
  /** The handshake completed. */
  established(): void;
  /** Bytes arrived on a stream (the receiver may keep them); `fin` when they end it. */
  streamData(streamId: number, bytes: Uint8Array, fin: boolean): void;
  /** The peer reset a stream it sends on (RESET_STREAM), with its HTTP/3 error code. */
  streamReset(streamId: number, code: number): void;
  /** A stream's write queue emptied (the transport took everything). */
  writable(streamId: number): void;
  /** The peer sent STOP_SENDING for a stream we write, with its HTTP/3 error code. */
  stopSending(streamId: number, code: number): void;
  datagram(payload: Uint8Array): void;
  /** The connection is gone; `info` says why when it was not a clean close. */
  closed(info: ConnectionCloseInfo | null): void;
}
