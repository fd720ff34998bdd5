import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import * as blocksModule from '../../src/model/blocks.js';
import { loadModel } from '../../src/model/load.js';
import type { Model } from '../../src/model/model.js';
import { openSafetensors } from '../../src/model/safetensors.js';
import { writeModelAsSafetensors } from '../../src/model/to-safetensors.js';
import { sha256File } from '../../src/util/hash.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { runCli } from '../cli/run-cli.js';
import { allClose, FIXTURES, fixturePath, tempDir } from '../helpers.js';
import { decoderFeeds } from '../decoder-feeds.js';

const INPUT = FIXTURES.storiesSafetensors;
const TOKENIZER = FIXTURES.tok512;
const TEXT = FIXTURES.validHead;
const tmp = tempDir('pare-to-st-');
afterAll(() => tmp.cleanup());

const IDS = [1, 400, 33, 7, 260, 91, 15, 300, 2, 45, 128, 64];

/** Logits of the model on a fixed batch; float32 arithmetic for fused int8 MatMulNBits (see README). */
async function logits(model: Model, accuracyLevel?: 0): Promise<Float32Array> {
  const s = await sessionFromModel(model, { threads: 1, ...(accuracyLevel === 0 ? { qdqMatMulNBitsAccuracyLevel: 0 } : {}) });
  try {
    const feeds = decoderFeeds(s, IDS, 2, IDS.length / 2);
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

  it('asymmetric int8 (uint8 DequantizeLinear), per-tensor, 8-bit and 4-bit asymmetric MatMulNBits and an fp16 untied lm_head reload with the same logits', async () => {
    const passes = [
      ['layers.*.self_attn.q_proj', 'layers.*.self_attn.k_proj'].map((t) => `"${t}"`).join(', '),
    ];
    const r = recipe(
      'mixed',
      `  - pass: quantize.rtn\n    targets: [${passes[0]}]\n    params: { bits: 8, symmetric: false }\n` +
        `  - pass: quantize.rtn\n    targets: ["layers.*.self_attn.v_proj"]\n    params: { bits: 8, granularity: tensor }\n` +
        `  - pass: quantize.rtn\n    targets: ["layers.*.self_attn.o_proj"]\n    params: { bits: 8, granularity: group, group_size: 32, format: matmulnbits, symmetric: false }\n` +
        `  - pass: quantize.rtn\n    targets: ["layers.*.mlp.gate_proj", "layers.*.mlp.up_proj"]\n    params: { bits: 4, granularity: group, group_size: 16, symmetric: false }\n` +
        `  - pass: quantize.cast\n    targets: ["lm_head"]\n`,
    );
    const { onnx, out } = await compressBothWays('mixed', r);
    const config = JSON.parse(readFileSync(join(tmp.dir, 'mixed/config.json'), 'utf8'));
    expect(config).toMatchObject({ num_hidden_layers: 5, intermediate_size: 172, tie_word_embeddings: false });
    expect(config).not.toHaveProperty('head_dim');
    const st = openSafetensors(out);
    expect(st.tensors.get('lm_head.weight')).toMatchObject({ dtype: 'F16', shape: [512, 64] });
    expect(st.tensors.get('model.embed_tokens.weight')).toMatchObject({ dtype: 'F32' });
    expect(st.tensors.get('model.layers.0.self_attn.q_proj.weight_zero_point')).toMatchObject({ dtype: 'I8', shape: [64, 1] });
    expect(st.tensors.get('model.layers.0.self_attn.v_proj.weight_scale')).toMatchObject({ shape: [1] });
    expect(st.tensors.get('model.layers.0.self_attn.o_proj.weight_zero_point')).toMatchObject({ shape: [64, 2] });
    expect(st.tensors.get('model.layers.0.mlp.gate_proj.weight_zero_point')).toMatchObject({ dtype: 'I8', shape: [172, 4] });
    expect(st.tensors.get('model.layers.0.mlp.gate_proj.weight_packed')).toMatchObject({ dtype: 'I32', shape: [172, 8] });
    st.close();
    const reloaded = loadModel(out);
    for (const level of [0, undefined] as const) {
      const c = allClose(await logits(reloaded, level), await logits(onnx, level), 1e-5, 1e-6);
      expect(c.ok, `${level === 0 ? 'float32' : 'default'} session: ${c.worst}`).toBe(true);
    }
  }, 60_000);

  it('pare compress -o model.safetensors writes the checkpoint and config.json, and pare eval runs on it; the input is untouched', async () => {
    const out = join(tmp.dir, 'cli/model.safetensors');
    const r = await runCli(['compress', INPUT, '-r', recipe('cli', CHANNELS + INT4, true), '-o', out, '--mkdir']);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(readFileSync(join(tmp.dir, 'cli/config.json'), 'utf8'))).toMatchObject({ intermediate_size: 128 });
    expect(statSync(out).size).toBeLessThan(statSync(INPUT).size);
    const e = await runCli(['eval', out, '--data', TEXT, '--tokenizer', TOKENIZER, '--json']);
    expect(e.code, e.err).toBe(0);
    const ppl = JSON.parse(e.out).quality?.perplexity ?? JSON.stringify(JSON.parse(e.out)).match(/"perplexity":([0-9.]+)/)?.[1];
    expect(Number(ppl)).toBeGreaterThan(3.397); // pruned + 4-bit: worse than the 3.397 baseline, still a language model
    expect(Number(ppl)).toBeLessThan(50);
    expect(sha256File(INPUT)).toBe(inputHash);
  }, 60_000);
});

/** A float32 [rows, cols] tensor's rows (or columns) without [from, to). */
function dropRange(data: Uint8Array, rows: number, cols: number, from: number, to: number, axis: 0 | 1): Float32Array {
  const W = new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  const out: number[] = [];
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) if (!((axis === 0 ? r : c) >= from && (axis === 0 ? r : c) < to)) out.push(W[r * cols + c]!);
  return Float32Array.from(out);
}

const setF32 = (m: Model, name: string, dims: number[], W: Float32Array) => m.setInitializer({ name, dataType: 1, dims, data: new Uint8Array(W.buffer) });

describe('structure written to config.json', () => {
  it('removing KV group 0 with its query heads writes 6/3 heads and head_dim 8; the rebuilt model equals the original with those heads silenced', async () => {
    const model = loadModel(INPUT);
    const silenced = loadModel(INPUT);
    for (let i = 0; i < 5; i++) {
      const a = `model.layers.${i}.self_attn`;
      // KV head 0 serves query heads 0 and 1 (8 query heads over 4 KV heads, head_dim 8)
      setF32(model, `${a}.q_proj.weight`, [48, 64], dropRange(model.tensor(`${a}.q_proj.weight`).data, 64, 64, 0, 16, 0));
      setF32(model, `${a}.k_proj.weight`, [24, 64], dropRange(model.tensor(`${a}.k_proj.weight`).data, 32, 64, 0, 8, 0));
      setF32(model, `${a}.v_proj.weight`, [24, 64], dropRange(model.tensor(`${a}.v_proj.weight`).data, 32, 64, 0, 8, 0));
      setF32(model, `${a}.o_proj.weight`, [64, 48], dropRange(model.tensor(`${a}.o_proj.weight`).data, 64, 64, 0, 16, 1));
      const o = new Float32Array(silenced.tensor(`${a}.o_proj.weight`).data.slice().buffer);
      for (let r = 0; r < 64; r++) o.fill(0, r * 64, r * 64 + 16);
      setF32(silenced, `${a}.o_proj.weight`, [64, 64], o);
    }
    const out = join(tmp.dir, 'heads/model.safetensors');
    writeModelAsSafetensors(model, out);
    const config = JSON.parse(readFileSync(join(tmp.dir, 'heads/config.json'), 'utf8'));
    expect(config).toMatchObject({ num_attention_heads: 6, num_key_value_heads: 3, head_dim: 8, hidden_size: 64 });
    const c = allClose(await logits(loadModel(out)), await logits(silenced), 1e-5, 1e-6);
    expect(c.ok, c.worst).toBe(true); // measured: equal to float rounding
  });

  it('what Hugging Face Llama cannot express is a one-line user error that says to write .onnx', () => {
    const write = (m: Model, dir: string) => () => writeModelAsSafetensors(m, join(tmp.dir, dir, 'model.safetensors'));
    const shared = loadModel(INPUT);
    const t = shared.graph.node!.find((n) => n.name === '/layers.1/self_attn/q_proj/Transpose')!;
    t.input![0] = 'model.layers.0.self_attn.q_proj.weight';
    expect(write(shared, 'e1')).toThrow(/read the same tensor .*share\.layers.*write the output as \.onnx/);

    const uneven = loadModel(INPUT);
    const m = 'model.layers.0.mlp';
    setF32(uneven, `${m}.gate_proj.weight`, [100, 64], dropRange(uneven.tensor(`${m}.gate_proj.weight`).data, 172, 64, 100, 172, 0));
    setF32(uneven, `${m}.up_proj.weight`, [100, 64], dropRange(uneven.tensor(`${m}.up_proj.weight`).data, 172, 64, 100, 172, 0));
    setF32(uneven, `${m}.down_proj.weight`, [64, 100], dropRange(uneven.tensor(`${m}.down_proj.weight`).data, 64, 172, 100, 172, 1));
    expect(write(uneven, 'e2')).toThrow(UserError);
    expect(write(uneven, 'e2')).toThrow(/MLP widths differ between blocks \(layers\.0: 100, layers\.1: 172\); Hugging Face Llama has one intermediate_size.*write the output as \.onnx/);
    expect(existsSync(join(tmp.dir, 'e2'))).toBe(false);
  });

  it('a changed config.json is never written over the input\'s: the output must go to another folder', () => {
    const dir = join(tmp.dir, 'same');
    const input = join(dir, 'model.safetensors');
    writeModelAsSafetensors(loadModel(INPUT), input); // a copy to work on
    copyFileSync(fixturePath('stories260K/config.json'), join(dir, 'config.json'));
    const before = readFileSync(join(dir, 'config.json'), 'utf8');
    const model = loadModel(input);
    const { removeBlock, decoderBlocks } = blocksModule;
    removeBlock(model, decoderBlocks(model)[4]!);
    expect(() => writeModelAsSafetensors(model, join(dir, 'pruned.safetensors'))).toThrow(/would overwrite the input's .*config\.json; write the output to another folder/);
    expect(readFileSync(join(dir, 'config.json'), 'utf8')).toBe(before);
    expect(existsSync(join(dir, 'pruned.safetensors'))).toBe(false);
  });
});
