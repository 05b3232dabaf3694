/**
 * A tiny typed event emitter that runs in Node and in the browser (no `node:events`).
 * Listeners run synchronously in registration order; a throwing listener does not stop the others.
 */
export class Emitter<Events extends { [E in keyof Events]: (...args: never[]) => void }> {
  #listeners = new Map<keyof Events, Set<(...args: never[]) => void>>();

  /** Adds a listener; returns the function that removes it. */
  on<E extends keyof Events>(event: E, listener: Events[E]): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  emit<E extends keyof Events>(event: E, ...args: Parameters<Events[E]>): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as (...a: Parameters<Events[E]>) => void)(...args);
      } catch (error) {
        // A listener's bug must not break delivery to the others, nor crash a server; show it.
        // eslint-disable-next-line no-console -- the application's own bug, swallowed here, must still be seen
        console.error(`switchyard: a '${String(event)}' listener threw`, error);
      }
    }
  }

  removeAll(): void {
    this.#listeners.clear();
  }
}
