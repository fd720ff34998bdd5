import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { loadModel } from '../../../src/model/load.js';
import type { Model } from '../../../src/model/model.js';
import { openSafetensors } from '../../../src/model/safetensors.js';
import { writeModelAsSafetensors } from '../../../src/model/to-safetensors.js';
import { runCli } from '../../cli/run-cli.js';
import { allClose, tempDir } from '../../helpers.js';
import { Decoder } from '../kv-decode.js';
import { randomTokens, writeTokenFile, type TinyCheckpoint, type TinyFamily } from './checkpoints.js';

/**
 * compress → safetensors + config.json → reload, for one family's tiny checkpoint: the reloaded
 * checkpoint computes what the compressed ONNX graph did (float32 arithmetic and ONNX Runtime's
 * default int8 path), its config.json has the sizes structured passes left, and its tensors keep
 * the family's names (with the layouts of docs/safetensors-layout.md for quantized layers).
 */

export interface WriteBackCase {
  name: string;
  passes: string;
  calibration?: boolean;
  /** keys config.json must have after the write */
  config: Record<string, unknown>;
  /** tensor name → [dtype, shape] the written file must hold */
  tensors?: Record<string, [string, number[]]>;
  /** tensor names it must not hold */
  absent?: string[];
}

const pass = (id: string, targets: string, params = '') => `  - pass: ${id}\n    targets: [${targets}]\n${params ? `    params: { ${params} }\n` : ''}`;

export const MAGNITUDE = pass('prune.magnitude', '"layers.*"', 'sparsity: 0.5');
export const QUANTIZED = pass('quantize.rtn', '"layers.*.self_attn.*"', 'bits: 8') + pass('quantize.rtn', '"layers.*.mlp.gate_proj", "layers.*.mlp.up_proj"', 'bits: 4, granularity: group, group_size: 16');
export const CAST = pass('quantize.cast', '"*"', 'dtype: float16');
/** a tied head stays tied when only the blocks are cast (casting lm_head gives it its own 16-bit copy) */
export const CAST_BLOCKS = pass('quantize.cast', '"layers.*"', 'dtype: float16');
export const STRUCTURED =
  pass('prune.channels', '"layers.*.mlp.*"', 'sparsity: 0.25, importance: weight') + pass('prune.heads', '"layers.*.self_attn.*"', 'sparsity: 0.5, importance: weight') + pass('prune.layers', '"layers.*"', 'count: 1');

export function writeBackTests(family: TinyFamily, checkpoint: () => TinyCheckpoint, cases: readonly WriteBackCase[]): void {
  const vocab = family.config.vocab_size as number;
  const tmp = tempDir(`pare-write-back-${family.modelType}-`);
  afterAll(() => tmp.cleanup());

  for (const c of cases) {
    it(`${family.modelType}: ${c.name} → safetensors + config.json reloads with the compressed graph's logits`, async () => {
      const ck = checkpoint();
      const dir = join(tmp.dir, c.name.replace(/\W+/g, '-'));
      const recipe = join(tmp.dir, `${c.name.replace(/\W+/g, '-')}.yaml`);
      const calibration = c.calibration ? `calibration:\n  data: { kind: tokens, path: ${writeTokenFile(join(tmp.dir, 'calibration.u16'), vocab, 128, 5)}, dtype: uint16, seq_len: 16, count: 8 }\n  samples: 8\n` : '';
      writeFileSync(recipe, `version: 1\n${calibration}passes:\n${c.passes}`);
      const onnxOut = join(tmp.dir, `${c.name.replace(/\W+/g, '-')}.onnx`);
      const r = await runCli(['compress', ck.path, '-r', recipe, '-o', onnxOut, '--threads', '1']);
      expect(r.code, r.err).toBe(0);
      const onnx = loadModel(onnxOut);
      const out = join(dir, 'model.safetensors');
      writeModelAsSafetensors(onnx, out, ck.path);

      const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
      expect(config).toMatchObject({ ...c.config, model_type: family.modelType });
      const st = openSafetensors(out);
      try {
        for (const [name, [dtype, shape]] of Object.entries(c.tensors ?? {})) expect(st.tensors.get(name), name).toMatchObject({ dtype, shape });
        for (const name of c.absent ?? []) expect(st.tensors.has(name), name).toBe(false);
      } finally {
        st.close();
      }
      const reloaded = loadModel(out);
      try {
        const ids = randomTokens(vocab, 2, 11, 9);
        for (const level of [0, undefined] as const) {
          const opts = level === 0 ? { qdqMatMulNBitsAccuracyLevel: 0 as const } : {};
          const c2 = allClose(await logitsOf(reloaded, ids, opts), await logitsOf(onnx, ids, opts), 1e-5, 1e-6);
          expect(c2.ok, `${level === 0 ? 'float32' : 'default'} session: ${c2.worst}`).toBe(true);
        }
      } finally {
        reloaded.close();
        onnx.close();
      }
    });
  }
}

async function logitsOf(model: Model, ids: number[][], opts: { qdqMatMulNBitsAccuracyLevel?: 0 }): Promise<Float32Array> {
  const d = await Decoder.open(model, undefined, opts);
  try {
    return await d.full(ids);
  } finally {
    await d.release();
  }
}
