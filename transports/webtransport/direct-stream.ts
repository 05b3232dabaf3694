/**
 * The streams the webtransport Connection works with: a W3C bidirectional stream as WebTransport
 * hands it out, and the `DirectStream` the Connection reads and writes. Our engine's sessions give
 * direct streams themselves (engine/session.ts); a browser's are wrapped (w3c-stream.ts).
 */

/** A bidirectional stream as WebTransport hands it out. */
export interface BidirectionalStream {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
}

/**
 * One bidirectional stream as the connection uses it: bytes in by callback (`DirectStreamSink`),
 * out by call. Our engine's sessions give these directly (no Web-streams queue and promise per
 * chunk); a browser's W3C stream is wrapped (w3c-stream.ts).
 */
export interface DirectStream {
  /** Bytes written and not yet taken by the transport. */
  readonly queued: number;
  write(bytes: Uint8Array): void;
  /** Ends this side of the stream (FIN) after what was written. */
  end(): void;
  /** Pauses (false) or resumes (true) reading: paused, flow control holds the peer back. */
  setReading(reading: boolean): void;
}

/** Where a DirectStream's events go. Called synchronously; none may throw. */
export interface DirectStreamSink {
  data(bytes: Uint8Array): void;
  /** Once: the peer ended its side (null), or the stream failed (reset, session gone). */
  end(error: Error | null): void;
  /** `queued` fell: the transport took bytes. */
  writable(): void;
}
