import { defineConfig } from 'vitest/config';

/**
 * Tests whose outcome depends on timing: packets timed through an impaired path (stalls, added
 * delay), and the backpressure-fairness reader, which the server rightly cuts or starves (the
 * stalled-reader rule, 100 ms) when another test takes its CPU. They run after everything else,
 * one file at a time, with no other test taking the CPU.
 */
const TIMED_PATH_TESTS = ['benchmarks/experiments/hol.test.ts', 'benchmarks/impairment/tun-path.test.ts', 'server/backpressure-fairness.test.ts'];

export default defineConfig({
  test: {
    exclude: ['node_modules/**', 'dist/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    projects: [
      {
        extends: true,
        // Real sockets and a real browser share two cores: keep file-level parallelism modest.
        test: { name: 'suite', include: ['**/*.test.ts'], exclude: ['node_modules/**', 'dist/**', ...TIMED_PATH_TESTS], maxWorkers: 2, sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: { name: 'timed-path', include: TIMED_PATH_TESTS, maxWorkers: 1, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
