import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Real sockets and a real browser share two cores: keep file-level parallelism modest.
    maxWorkers: 2,
  },
});
