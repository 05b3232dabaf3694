/**
 * Encode once per fan-out: the router hands the same string or bytes to many connections in one
 * tick, and their flushes run one after another in that tick's microtasks. Wrapping an encoder
 * with `onceThisTick` reuses its result for an input already seen in this tick (several messages
 * may fan out in one tick, each flushed to every recipient in turn), then forgets everything once
 * the tick's microtask queue has drained: nothing is retained across ticks.
 */
export function onceThisTick<K, V>(compute: (key: K) => V): (key: K) => V {
  const values = new Map<K, V>();
  return (key) => {
    let value = values.get(key);
    if (value !== undefined) return value;
    if (values.size === 0) queueMicrotask(() => values.clear());
    value = compute(key);
    values.set(key, value);
    return value;
  };
}
