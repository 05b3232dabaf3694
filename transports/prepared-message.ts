/**
 * One outbound message, prepared once however many connections send it: its text or bytes, its
 * size in bytes, its UTF-8 encoding and each transport's framing of it, each made on first use and
 * then shared. The router builds one for a fan-out and hands that same object to every recipient,
 * so a 1 MiB message to 1000 subscribers is encoded and framed once, and its payload is never
 * copied per recipient. Immutable once built: recipients only read it. Runs in Node and in the browser.
 */
import { utf8Length } from './codec/utf8.ts';

const encoder = new TextEncoder();

/** Builds one transport's framing of a message; the function itself is the key it is kept under. */
export type Framing<T> = (message: PreparedMessage) => T;

export class PreparedMessage {
  /** Payload size in bytes (UTF-8 for text). */
  readonly size: number;
  #bytes: Uint8Array | undefined;
  /** The first framing made (most messages only ever go out on one transport), then any others. */
  #framing: Framing<unknown> | undefined;
  #framed: unknown;
  #more: Map<Framing<unknown>, unknown> | undefined;

  /** `message` is a transport Message (transport.ts, which imports this file: spelled out here). */
  constructor(readonly message: string | Uint8Array) {
    this.size = typeof message === 'string' ? utf8Length(message) : message.byteLength;
    if (typeof message !== 'string') this.#bytes = message;
  }

  /** True for text, false for binary: the bytes alone do not say. */
  get text(): boolean {
    return typeof this.message === 'string';
  }

  /** The payload bytes: the message itself, or its UTF-8 encoding (made once). */
  get bytes(): Uint8Array {
    return (this.#bytes ??= encoder.encode(this.message as string));
  }

  /** `framing`'s result for this message: built on first use, the same object for every later caller. */
  framed<T>(framing: Framing<T>): T {
    if (this.#framing === framing) return this.#framed as T;
    if (this.#framing === undefined) {
      this.#framing = framing;
      return (this.#framed = framing(this)) as T;
    }
    this.#more ??= new Map();
    let value = this.#more.get(framing) as T | undefined;
    if (value === undefined) this.#more.set(framing, (value = framing(this)));
    return value;
  }
}

/** `message` prepared, or itself when it already is. */
export function prepare(message: string | Uint8Array | PreparedMessage): PreparedMessage {
  return message instanceof PreparedMessage ? message : new PreparedMessage(message);
}
