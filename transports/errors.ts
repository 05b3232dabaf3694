/**
 * One error class per failure kind, each with a stable `code` and, where one applies, the close
 * code to send. Misuse throws synchronously; I/O failures arrive asynchronously, once.
 */

export class SwitchyardError extends Error {
  /** Stable machine-readable code, e.g. `ERR_LANE_UNSUPPORTED`. */
  readonly code: string;
  /** Close code to send when this error ends a connection. */
  readonly closeCode: number | undefined;
  constructor(code: string, message: string, options: { cause?: unknown; closeCode?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.closeCode = options.closeCode;
  }
}

/** The lane is not offered by this transport and laneFallback is 'error'. */
export class LaneUnsupportedError extends SwitchyardError {
  constructor(transport: string, lane: string) {
    super('ERR_LANE_UNSUPPORTED', `${transport} cannot carry lane '${lane}' (see capabilities; set laneFallback: 'reliable' to downgrade)`);
  }
}

/** A message is larger than the connection or lane allows. */
export class MessageTooLargeError extends SwitchyardError {
  constructor(size: number, limit: number, what = 'message') {
    super('ERR_MESSAGE_TOO_LARGE', `${what} of ${size} bytes exceeds the limit of ${limit} bytes`, { closeCode: 1009 });
  }
}

/** send() on a connection that is closing or closed. */
export class ConnectionClosedError extends SwitchyardError {
  constructor(state: string) {
    super('ERR_CONNECTION_CLOSED', `connection is ${state}`);
  }
}

/** A peer sent bytes that do not follow the protocol (bad framing, bad envelope...). */
export class ProtocolError extends SwitchyardError {
  constructor(code: string, message: string, options: { cause?: unknown; closeCode?: number } = {}) {
    super(code, message, { closeCode: 1002, ...options });
  }
}

/** Opening a connection failed or timed out. */
export class ConnectError extends SwitchyardError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('ERR_CONNECT', message, options);
  }
}

/** The peer's address answered that nothing listens there (ICMP port unreachable). */
export class PeerUnreachableError extends SwitchyardError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('ERR_PEER_UNREACHABLE', message, options);
  }
}
