import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';

const RECIPE_SHARD = /[\\/]test[\\/]pipeline[\\/]recipes-\d+\.test\.ts$/;

/**
 * The recipe files (test/pipeline/recipe-tests.ts: each compresses stories260K end to end, ~40–150 s a
 * file) start first. Without a results cache, as on CI's first run, vitest orders by file size, and
 * these tiny files would run last and leave one fork alone for minutes.
 */
class RecipesFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    return [...sorted.filter((f) => RECIPE_SHARD.test(f.moduleId)), ...sorted.filter((f) => !RECIPE_SHARD.test(f.moduleId))];
  }
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // vitest's default on a 2-core machine is one fork (cores − 1); two forks take the suite from 591 to 446 s there
    maxWorkers: 2,
    minWorkers: 1,
    // one fork runs many files: each file no longer re-imports tfjs and ONNX Runtime (collect 134 s → 24 s of the suite)
    isolate: false,
    sequence: { sequencer: RecipesFirst },
  },
});
