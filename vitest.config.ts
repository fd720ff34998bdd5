import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // vitest's default on a 2-core machine is one fork (cores − 1); two forks take the suite from 591 to 446 s there
    maxWorkers: 2,
    minWorkers: 1,
    // one fork runs many files: each file no longer re-imports tfjs and ONNX Runtime (collect 134 s → 31 s of the suite)
    isolate: false,
  },
});
