import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateCheckpoint } from '../../../fixtures/generate-models.js';
import { loadModel } from '../../../src/model/load.js';
import type { Model } from '../../../src/model/model.js';
import { openSafetensors } from '../../../src/model/safetensors.js';
import { writeModelAsSafetensors } from '../../../src/model/to-safetensors.js';
import { sessionFromModel } from '../../../src/runtime/ort.js';
import { runCli } from '../../cli/run-cli.js';
import { decoderFeeds } from '../../decoder-feeds.js';
import { allClose, tempDir } from '../../helpers.js';
import { SEED } from './phi3-gemma3-harness.js';
import { tokens } from '../kv-decode.js';
import { WRITE_BACK_CASES } from './phi3-gemma3-write-back-cases.js';

const tmp = tempDir('pare-family-wb-');
afterAll(() => tmp.cleanup());

/** Logits on a fixed batch (float32 arithmetic for int8 weights fused into MatMulNBits, see README). */
async function logits(model: Model, vocab: number, accuracyLevel?: 0): Promise<Float32Array> {
  const s = await sessionFromModel(model, { threads: 1, ...(accuracyLevel === 0 ? { qdqMatMulNBitsAccuracyLevel: 0 } : {}) });
  try {
    return (await s.run(decoderFeeds(s, tokens(vocab, 2, 13, 9).flat(), 2, 13))).logits!.data as Float32Array;
  } finally {
    await s.release();
  }
}

/** A uint16 token file of random ids below `vocab`, for calibration. */
function tokenFile(path: string, vocab: number): string {
  writeFileSync(path, new Uint8Array(Uint16Array.from(tokens(vocab, 1, 512, 4)[0]!).buffer));
  return path;
}

describe('compress → safetensors + config.json → reload', () => {
  for (const family of WRITE_BACK_CASES) {
    const vocab = family.spec.config.vocab_size as number;
    for (const r of family.recipes) {
      it(`${family.family} ${r.name}: the written checkpoint states the new sizes, keeps the fused and per-norm tensor names, and reloads to the compressed model's logits`, async () => {
        const dir = join(tmp.dir, `${family.family}-${r.name}`);
        const input = join(generateCheckpoint(family.spec, join(dir, 'in'), { seed: SEED, onnx: false }).dir, 'model.safetensors');
        const calibration = r.calibration ? `calibration:\n  data: { kind: tokens, path: ${tokenFile(join(dir, 'calib.u16'), vocab)}, seq_len: 32 }\n  samples: 8\n` : '';
        writeFileSync(join(dir, 'recipe.yaml'), `version: 1\n${calibration}passes:\n${r.passes}`);
        const onnxOut = join(dir, 'out.onnx');
        const run = await runCli(['compress', input, '-r', join(dir, 'recipe.yaml'), '-o', onnxOut, '--threads', '1']);
        expect(run.code, run.err).toBe(0);
        const compressed = loadModel(onnxOut);
        const out = join(dir, 'written', 'model.safetensors');
        writeModelAsSafetensors(compressed, out, input);

        const config = JSON.parse(readFileSync(join(dir, 'written', 'config.json'), 'utf8'));
        expect(config).toMatchObject(r.config);
        for (const k of r.dropped ?? []) expect(config, k).not.toHaveProperty(k);
        const st = openSafetensors(out);
        for (const [name, [dtype, shape]] of Object.entries(r.tensors)) expect(st.tensors.get(name), name).toMatchObject({ dtype, shape });
        // no tensor of a removed block, no split or renamed projection
        expect([...st.tensors.keys()].filter((n) => /\.(q|k|v|gate|up)_proj\./.test(n) && family.family === 'phi3')).toEqual([]);
        st.close();

        const reloaded = loadModel(out);
        for (const level of [0, undefined] as const) {
          const c = allClose(await logits(reloaded, vocab, level), await logits(compressed, vocab, level), 1e-5, 1e-6);
          expect(c.ok, `${level === 0 ? 'float32' : 'default'} session: ${c.worst}`).toBe(true);
        }
      }, 120_000);
    }
  }
});
