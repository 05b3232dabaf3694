/** What the benchmark's server processes are, and the one-byte protocol of the raw `ws` peer. */
export type ServerKind = 'switchyard' | 'ws' | 'socketio';

/** Raw ws protocol: first byte 1 = echo back, 2 = subscribe, 3 = publish to subscribers. */
export const RawOp = { echo: 1, subscribe: 2, publish: 3 } as const;
