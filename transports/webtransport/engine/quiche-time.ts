/**
 * Calls into the quiche binding (`@matrixai/quic`'s native `Connection` methods) and the time spent
 * in them, counted by wrapping the methods while `start()`..`stop()` runs. `bench:engine` uses it to
 * separate what quiche costs per round trip from what our code costs, and tests to check which
 * native calls a packet costs. The engine itself never calls it; `stop()` removes the wrappers.
 */
import { quiche } from '@matrixai/quic/native/index.js';

/** Microseconds and calls per native method, over one start()..stop() window. */
export type QuicheCalls = Record<string, { micros: number; calls: number }>;

type Method = (...args: unknown[]) => unknown;

const prototype = (quiche.Connection as unknown as { prototype: Record<string, Method> }).prototype;
const originals = new Map<string, Method>();
let counted: QuicheCalls = {};

export function start(): void {
  if (originals.size > 0) return;
  counted = {};
  for (const name of Object.getOwnPropertyNames(prototype)) {
    const original = prototype[name];
    if (name === 'constructor' || typeof original !== 'function') continue;
    originals.set(name, original);
    const entry = { micros: 0, calls: 0 };
    counted[name] = entry;
    prototype[name] = function (this: unknown, ...args: unknown[]): unknown {
      const started = performance.now();
      try {
        return original.apply(this, args);
      } finally {
        entry.micros += (performance.now() - started) * 1000;
        entry.calls++;
      }
    };
  }
}

export function stop(): QuicheCalls {
  for (const [name, original] of originals) prototype[name] = original;
  originals.clear();
  return Object.fromEntries(Object.entries(counted).filter(([, entry]) => entry.calls > 0));
}

export function totalMicros(calls: QuicheCalls): number {
  return Object.values(calls).reduce((sum, entry) => sum + entry.micros, 0);
}
