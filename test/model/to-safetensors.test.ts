import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { loadModel } from '../../src/model/load.js';
import type { Model } from '../../src/model/model.js';
import { openSafetensors } from '../../src/model/safetensors.js';
import { writeModelAsSafetensors } from '../../src/model/to-safetensors.js';
import { sha256File } from '../../src/util/hash.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { runCli } from '../cli/run-cli.js';
import { allClose, sharedPath, tempDir } from '../helpers.js';

const INPUT = sharedPath('models/stories260K/model.safetensors');
const TOKENIZER = sharedPath('models/stories260K/tok512.bin');
const TEXT = sharedPath('data/tinystories/valid-head.txt');
const tmp = tempDir('pare-to-st-');
afterAll(() => tmp.cleanup());

const IDS = [1, 400, 33, 7, 260, 91, 15, 300, 2, 45, 128, 64];

/** Logits of the model on a fixed batch; float32 arithmetic for fused int8 MatMulNBits (see README). */
async function logits(model: Model, accuracyLevel?: 0): Promise<Float32Array> {
  const s = await sessionFromModel(model, { threads: 1, ...(accuracyLevel === 0 ? { qdqMatMulNBitsAccuracyLevel: 0 } : {}) });
  try {
    const feeds = { input_ids: new ort.Tensor('int64', BigInt64Array.from(IDS.map(BigInt)), [2, IDS.length / 2]) };
    return (await s.run(feeds)).logits!.data as Float32Array;
  } finally {
    await s.release();
  }
}

function recipe(name: string, passes: string, calibration = false): string {
  const path = join(tmp.dir, `${name}.yaml`);
  const calib = calibration ? `calibration:\n  data: { kind: text, path: ${TEXT}, tokenizer: ${TOKENIZER}, select: "1-4", segment: 64 }\n  samples: 4\n` : '';
  writeFileSync(path, `version: 1\n${calib}passes:\n${passes}`);
  return path;
}

const CHANNELS = `  - pass: prune.channels\n    targets: ["layers.*.mlp.*"]\n    params: { sparsity: 0.3, multiple_of: 32 }\n`;
const LAYERS = `  - pass: prune.layers\n    targets: ["layers.*"]\n    params: { count: 1 }\n`;
const INT8 = `  - pass: quantize.rtn\n    targets: ["layers.*.self_attn.*"]\n    params: { bits: 8, granularity: channel }\n`;
const INT4 = `  - pass: quantize.rtn\n    targets: ["layers.*.mlp.*"]\n    params: { bits: 4, granularity: group, group_size: 32 }\n`;

/** compress INPUT with `recipePath` to .onnx, then write that result as safetensors beside a fresh config.json. */
async function compressBothWays(name: string, recipePath: string): Promise<{ onnx: Model; written: string[]; out: string }> {
  const onnxOut = join(tmp.dir, `${name}.onnx`);
  const r = await runCli(['compress', INPUT, '-r', recipePath, '-o', onnxOut]);
  expect(r.code, r.err).toBe(0);
  const onnx = loadModel(onnxOut);
  const out = join(tmp.dir, name, 'model.safetensors');
  const written = writeModelAsSafetensors(onnx, out, INPUT);
  return { onnx, written, out };
}

describe('compressed stories260K back to safetensors + config.json', () => {
  const inputHash = sha256File(INPUT);

  it('prune.channels 30 % + prune.layers 1 block + int8 per-channel attention + 4-bit group-32 MLP: reloaded logits equal the compressed ONNX', async () => {
    const { onnx, written, out } = await compressBothWays('all', recipe('all', CHANNELS + LAYERS + INT8 + INT4, true));
    expect(written).toEqual([out, join(tmp.dir, 'all/config.json')]);
    const config = JSON.parse(readFileSync(join(tmp.dir, 'all/config.json'), 'utf8'));
    expect(config).toMatchObject({ num_hidden_layers: 4, intermediate_size: 128, num_attention_heads: 8, num_key_value_heads: 4, hidden_size: 64 });
    expect(config.quantization_config).toMatchObject({ quant_method: 'pare', format: 'mixed-precision' });
    const groups = Object.values(config.quantization_config.config_groups) as { targets: string[]; format: string; weights: Record<string, unknown> }[];
    expect(groups.map((g) => [g.format, g.weights.num_bits, g.weights.strategy, g.weights.group_size, g.targets.length]).sort()).toEqual([
      ['int-quantized', 8, 'channel', null, 16],
      ['pack-quantized', 4, 'group', 32, 12],
    ]);
    const st = openSafetensors(out);
    const names = [...st.tensors.keys()];
    expect(names.filter((n) => n.startsWith('model.layers.')).map((n) => Number(n.split('.')[2])).every((i) => i < 4)).toBe(true);
    expect(st.tensors.get('model.layers.3.self_attn.q_proj.weight')).toMatchObject({ dtype: 'I8', shape: [64, 64] });
    expect(st.tensors.get('model.layers.3.self_attn.q_proj.weight_scale')).toMatchObject({ dtype: 'F32', shape: [64, 1] });
    expect(st.tensors.get('model.layers.0.mlp.down_proj.weight_packed')).toMatchObject({ dtype: 'I32', shape: [64, 16] });
    expect(st.tensors.get('model.layers.0.mlp.down_proj.weight_scale')).toMatchObject({ dtype: 'F32', shape: [64, 4] });
    expect(st.tensors.has('model.layers.0.mlp.gate_proj.weight')).toBe(false);
    st.close();

    const reloaded = loadModel(out);
    for (const level of [0, undefined] as const) {
      const c = allClose(await logits(reloaded, level), await logits(onnx, level), 1e-5, 1e-6);
      expect(c.ok, `${level === 0 ? 'float32' : 'default'} session: ${c.worst}`).toBe(true);
    }
    // and it writes back to itself unchanged
    const again = join(tmp.dir, 'again/model.safetensors');
    writeModelAsSafetensors(reloaded, again);
    const [a, b] = [openSafetensors(again), openSafetensors(out)];
    expect([...a.tensors.values()].map((e) => [e.name, e.dtype, e.shape])).toEqual([...b.tensors.values()].map((e) => [e.name, e.dtype, e.shape]));
    for (const n of a.tensors.keys()) expect(Buffer.from(a.read(n)).equals(Buffer.from(b.read(n))), n).toBe(true);
    a.close();
    b.close();
    expect(readFileSync(again).equals(readFileSync(out))).toBe(true);
    expect(sha256File(INPUT)).toBe(inputHash);
  }, 60_000);
});
