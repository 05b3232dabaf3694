/**
 * Encode once per fan-out: the router hands the same string or bytes to many connections in one
 * tick, and their flushes run one after another in that tick's microtasks. Wrapping an encoder
 * with `lastValueThisTick` reuses its last result for the same input until the microtask queue of
 * that tick has drained, then forgets it (nothing is retained across ticks).
 */
export function lastValueThisTick<K, V>(compute: (key: K) => V): (key: K) => V {
  let lastKey: K | undefined;
  let lastValue: V | undefined;
  let armed = false;
  return (key) => {
    if (armed && key === lastKey) return lastValue as V;
    if (!armed) {
      armed = true;
      queueMicrotask(() => {
        armed = false;
        lastKey = undefined;
        lastValue = undefined;
      });
    }
    lastKey = key;
    lastValue = compute(key);
    return lastValue;
  };
}
