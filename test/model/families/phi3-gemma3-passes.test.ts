import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateCheckpoint } from '../../../fixtures/generate-models.js';
import { modelIo } from '../../../src/model/io.js';
import { loadModel } from '../../../src/model/load.js';
import { PASSES } from '../../../src/pipeline/registry.js';
import { runCli } from '../../cli/run-cli.js';
import { allClose, tempDir } from '../../helpers.js';
import { gemma3Spec } from './gemma3-checkpoint.js';
import { SEED } from './phi3-gemma3-harness.js';
import { cachedAgainstFull, tokens, withDecoders } from '../kv-decode.js';
import { passCases } from './phi3-gemma3-pass-recipes.js';
import { phi3Spec } from './phi3-checkpoint.js';

/**
 * Every registered pass on each family's tiny checkpoint through `pare compress`: the result keeps
 * the KV-cache I/O and decodes with the cache exactly as by re-running, or the pass refuses in one
 * line that says why.
 */
const tmp = tempDir('pare-family-passes-');
afterAll(() => tmp.cleanup());

for (const [family, spec] of [['phi3', phi3Spec()], ['gemma3_text', gemma3Spec()]] as const) {
  describe(`every pass on the tiny ${family} checkpoint`, () => {
    const dir = join(tmp.dir, family);
    const vocab = spec.config.vocab_size as number;
    const input = join(dir, 'in', 'model.safetensors');
    const calib = join(dir, 'calib.u16');
    beforeAll(() => {
      generateCheckpoint(spec, join(dir, 'in'), { seed: SEED, onnx: false });
      writeFileSync(calib, new Uint8Array(Uint16Array.from(tokens(vocab, 1, 512, 4)[0]!).buffer));
    });
    const cases = passCases(family);

    it('has a case for every registered pass', () => {
      expect(Object.keys(cases).sort()).toEqual(PASSES.map((p) => p.id).sort());
    });

    for (const [id, c] of Object.entries(cases)) {
      it(`${id}: ${'refuses' in c ? 'refuses in one line, naming why' : 'runs; the result keeps the KV-cache I/O and decodes with the cache as by re-running'}`, async () => {
        const calibration = 'calibration' in c && c.calibration ? `calibration:\n  data: { kind: tokens, path: ${calib}, seq_len: 32 }\n  samples: 8\n` : '';
        const recipe = join(dir, `${id}.yaml`);
        writeFileSync(recipe, `version: 1\n${calibration}passes:\n${c.passes}`);
        const out = join(dir, `${id}.onnx`);
        const report = join(dir, `${id}.json`);
        const run = await runCli(['compress', input, '-r', recipe, '-o', out, '--report', report, '--threads', '1']);
        if ('refuses' in c) {
          expect(run.code, run.err).toBe(2);
          const lines = run.err.trim().split('\n').filter((l) => l.startsWith('pare:'));
          expect(lines).toHaveLength(1);
          expect(lines[0]).toMatch(c.refuses);
          return;
        }
        expect(run.code, run.err).toBe(0);
        const model = loadModel(out);
        const io = modelIo(model);
        expect(io.kv?.layers.length).toBe((spec.config.num_hidden_layers as number) - (id === 'prune.layers' ? 1 : 0));
        // float32 arithmetic for int8 weights ONNX Runtime would fuse into int8-activation MatMulNBits (see README)
        await withDecoders([model], async (d) => {
          const r = await cachedAgainstFull(d, d, tokens(vocab, 2, 5, 3), 8, vocab);
          // float16 arithmetic rounds the cached and the full attention differently (measured ≤ 2.2e-4)
          expect(r.worst, r.worstAt).toBeLessThanOrEqual(id === 'quantize.f16' ? 1e-3 : 1e-5);
          expect(r.cachedTokens).toEqual(r.fullTokens);
        }, { qdqMatMulNBitsAccuracyLevel: 0 });
        const passes = JSON.parse(readFileSync(report, 'utf8')).passes as { id: string; layers: unknown[]; warnings?: string[] }[];
        expect(passes.at(-1)!.layers.length, `${id} changed no layer`).toBeGreaterThan(0);
        if (id === 'quantize.rotate') {
          // exact in float: Phi-3's fused qkv_proj and gate_up_proj read the rotated norms
          const ids = tokens(vocab, 2, 19, 1);
          await withDecoders([model, loadModel(input)], async (a, b) => {
            const cmp = allClose(await a.full(ids), await b.full(ids), 1e-4, 1e-5);
            expect(cmp.relFro, cmp.worst).toBeLessThanOrEqual(1e-5);
          });
        }
        if (id === 'quantize.smoothquant') {
          // exact in float: folds into every norm (Gemma's (1 + w) ones too) and the up rows of Phi-3's fused gate_up_proj
          expect(passes[0]!.warnings!.every((w) => /before 'layers\.\d\.self_attn\.o_proj'; left unsmoothed/.test(w)), passes[0]!.warnings!.join('\n')).toBe(true);
          const ids = tokens(vocab, 2, 19, 1);
          await withDecoders([model, loadModel(input)], async (a, b) => {
            const cmp = allClose(await a.full(ids), await b.full(ids), 1e-4, 1e-5);
            expect(cmp.relFro, cmp.worst).toBeLessThanOrEqual(1e-5);
          });
        }
      }, 120_000);
    }
  });
}
