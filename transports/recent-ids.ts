/**
 * The de-duplication window: the last `capacity` ids seen, oldest forgotten first. The router keeps
 * one per client for retried commands and one for the receipts it owes; the client core keeps one
 * for redelivered messages. Runs in Node and in the browser.
 */
/** How many ids both ends remember unless told otherwise. */
export const DEFAULT_DEDUP_WINDOW = 4096;

export class RecentIds {
  /** A Set iterates in insertion order: its first element is the oldest. */
  readonly #ids = new Set<string>();

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.#ids.size;
  }

  has(id: string): boolean {
    return this.#ids.has(id);
  }

  /** Forgets `id`; true if it was held. */
  delete(id: string): boolean {
    return this.#ids.delete(id);
  }

  /** Remembers `id`, forgetting the oldest id once more than `capacity` are held. */
  add(id: string): void {
    this.#ids.add(id);
    if (this.#ids.size > this.capacity) this.#ids.delete(this.#ids.values().next().value!);
  }
}
