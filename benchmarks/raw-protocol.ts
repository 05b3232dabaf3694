/** What the benchmark's server processes are, and the one-byte protocol of the raw `ws` peers. */
/** `switchyard-cluster`: two Switchyard processes sharing one redis-server, all on this machine. */
export type ServerKind = 'switchyard' | 'switchyard-cluster' | 'ws' | 'ws-tuned' | 'socketio';

/**
 * Raw ws protocol, first byte: 1 = echo back; 2 = subscribe to the topic in the rest (UTF-8), which
 * the server confirms with the single byte 2; 3 = publish: one byte of topic length, the topic,
 * then the payload, sent as is to its subscribers.
 */
export const RawOp = { echo: 1, subscribe: 2, publish: 3 } as const;

/** The topic a raw publish frame names. */
export function rawTopic(frame: Uint8Array): string {
  return new TextDecoder().decode(frame.subarray(2, 2 + frame[1]!));
}

/** The payload of a raw publish frame. */
export function rawPayload(frame: Uint8Array): Uint8Array {
  return frame.subarray(2 + frame[1]!);
}

/** A raw publish frame: op, topic length, topic, payload. */
export function rawPublishFrame(topic: string, payload: Uint8Array): Uint8Array {
  const name = new TextEncoder().encode(topic);
  const frame = new Uint8Array(2 + name.byteLength + payload.byteLength);
  frame[0] = RawOp.publish;
  frame[1] = name.byteLength;
  frame.set(name, 2);
  frame.set(payload, 2 + name.byteLength);
  return frame;
}
