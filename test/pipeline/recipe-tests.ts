import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PASSES } from '../../src/pipeline/registry.js';
import { loadRecipe } from '../../src/recipe/parse.js';
import { ort } from '../../src/runtime/ort.js';
import { tempDir } from '../helpers.js';
import { runCli } from '../cli/run-cli.js';
import { decoderFeeds } from '../decoder-feeds.js';

const ROOT = resolve(__dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');
const KV_MODEL = join(ROOT, 'fixtures/stories260K-kv/model.onnx');
/** How many test files the recipes are spread over: one file of them all was the suite's last ~290 s on one worker. */
export const RECIPE_SHARDS = 5;

/**
 * Every example recipe users copy runs end to end on the embedded model and meets its own budgets:
 * the recipes (sorted by name) whose index is `shard` modulo RECIPE_SHARDS.
 */
export function recipeTests(shard: number): void {
  const tmp = tempDir('pare-recipes-');
  afterAll(() => tmp.cleanup());
  const all = readdirSync(join(ROOT, 'recipes')).filter((f) => f.endsWith('.yaml')).sort();
  const recipes = all.filter((_, i) => i % RECIPE_SHARDS === shard);

  describe(`recipes/ (part ${shard + 1} of ${RECIPE_SHARDS})`, () => {
    if (shard === 0) {
      it('uses every registered pass in some recipe', () => {
        const used = new Set(all.flatMap((f) => loadRecipe(join(ROOT, 'recipes', f), PASSES).recipe.passes.map((p) => p.pass)));
        expect(PASSES.map((p) => p.id).filter((id) => !used.has(id))).toEqual([]);
      });
    }

    for (const file of recipes.filter((f) => !loadRecipe(join(ROOT, 'recipes', f), PASSES).recipe.output.dtypes)) {
      it(`${file} compresses stories260K into a model ONNX Runtime runs`, async () => {
        const out = join(tmp.dir, file.replace('.yaml', '.onnx'));
        const report = join(tmp.dir, file.replace('.yaml', '.json'));
        const r = await runCli(['compress', MODEL, '-r', join(ROOT, 'recipes', file), '-o', out, '--report', report]);
        expect(r.err).not.toContain('internal error');
        expect(r.code, r.err).toBe(0);
        const session = await ort.InferenceSession.create(out);
        const logits = (await session.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from([1n, 403n, 407n]), [1, 3]) })).logits!;
        expect(Array.from(logits.data as Float32Array).every(Number.isFinite)).toBe(true);
        const json = JSON.parse(readFileSync(report, 'utf8'));
        expect(json.measurements.model.quality.perplexity).toBeGreaterThan(1);
        expect((json.budgets ?? []).every((b: { ok: boolean }) => b.ok)).toBe(true);
        // the Kronecker recipes take ~10 s each on a loaded 2-core machine (before the token-row emission and the separable ALS: ~50 s of evaluation alone)
      }, 600_000);
    }

    // recipes that convert into a model folder: stories260K with its KV cache (what transformers.js decodes with)
    for (const file of recipes.filter((f) => loadRecipe(join(ROOT, 'recipes', f), PASSES).recipe.output.dtypes)) {
      it(`${file} writes a model folder of stories260K whose every file ONNX Runtime runs`, async () => {
        const out = join(tmp.dir, `${file.replace('.yaml', '')}/`);
        const r = await runCli(['compress', KV_MODEL, '-r', join(ROOT, 'recipes', file), '-o', out, '--tokenizer', join(ROOT, 'fixtures/stories260K/tok512.bin'), '--json']);
        expect(r.err).not.toContain('internal error');
        expect(r.code, r.err).toBe(0);
        const json = JSON.parse(r.out);
        expect(json.variants.length).toBe(loadRecipe(join(ROOT, 'recipes', file), PASSES).recipe.output.dtypes!.length);
        for (const v of json.variants as { path: string; measure: { quality: { perplexity: number } } }[]) {
          const session = await ort.InferenceSession.create(v.path);
          const logits = (await session.run(decoderFeeds(session, [1, 403, 407], 1, 3))).logits!;
          expect(Array.from(logits.data as Float32Array).every(Number.isFinite)).toBe(true);
          expect(v.measure.quality.perplexity).toBeGreaterThan(1);
        }
        expect((json.budgets ?? []).every((b: { ok: boolean }) => b.ok)).toBe(true);
      });
    }
  });
}
