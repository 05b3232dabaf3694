/**
 * Holds a connection's reader while reading is paused (the slow-consumer tests' "stops reading").
 * `closed` releases it, so a reader never waits past its connection's end.
 */
export class ReadingGate {
  #held: { promise: Promise<void>; resolve: () => void } | undefined;
  readonly #closed: Promise<unknown>;

  constructor(closed: Promise<unknown>) {
    this.#closed = closed;
  }

  /** Resolves when reading may go on; undefined while it is not paused. */
  get paused(): Promise<void> | undefined {
    return this.#held?.promise;
  }

  /** Pauses (once; `onClose` runs when the connection ends while paused). */
  pause(onClose: () => void): void {
    if (this.#held) return;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.#held = { promise, resolve };
    void this.#closed.then(onClose);
  }

  /** Resumes; false if it was not paused. */
  resume(): boolean {
    if (!this.#held) return false;
    this.#held.resolve();
    this.#held = undefined;
    return true;
  }
}
