import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../../src/data/load.js';
import type { TokenDataset } from '../../src/data/types.js';
import { DataType } from '../../src/model/dtype.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx, writeOnnx } from '../../src/model/onnx-io.js';
import { float16ToFloat32 } from '../../src/model/pack.js';
import { configurePass, type PassResult } from '../../src/pass/pass.js';
import { f16 } from '../../src/quantize/f16.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { runCli } from '../cli/run-cli.js';
import { allClose, tempDir } from '../helpers.js';
import { calibratedContext } from './models.js';

const ROOT = resolve(__dirname, '../..');
const KV = join(ROOT, 'fixtures/stories260K-kv/model.onnx');
const tmp = tempDir('pare-f16-');
afterAll(() => tmp.cleanup());

const text = (select: string) =>
  loadDataset({ kind: 'text', path: 'tinystories/valid-head.txt', tokenizer: 'stories260K/tok512.bin', separator: '<|endoftext|>', bos: true, max_length: 512, select, segment: 128 }, join(ROOT, 'fixtures')) as Promise<TokenDataset>;

let calibration: TokenDataset;
let unseen: TokenDataset;
beforeAll(async () => {
  calibration = await text('1-10');
  unseen = await text('11-14');
});

async function convert(model: Model, params: Record<string, unknown>): Promise<PassResult> {
  return configurePass(f16, params).apply(model, calibratedContext(model, calibration, 16, []));
}

/** Logits of every unseen sequence from scratch, as float32, with feeds typed as the model declares its inputs. */
async function logits(model: Model): Promise<Float32Array[]> {
  const s = await sessionFromModel(model, { threads: 1 });
  const out: Float32Array[] = [];
  try {
    for (const seq of unseen.sequences.slice(0, 6)) {
      const feeds: Record<string, ort.Tensor> = {};
      for (const meta of s.inputMetadata) {
        if (!meta.isTensor) continue;
        const L = seq.length;
        if (meta.name === 'input_ids') feeds[meta.name] = new ort.Tensor('int64', BigInt64Array.from(seq, BigInt), [1, L]);
        else if (meta.name === 'attention_mask') feeds[meta.name] = new ort.Tensor('int64', new BigInt64Array(L).fill(1n), [1, L]);
        else if (meta.name === 'position_ids') feeds[meta.name] = new ort.Tensor('int64', BigInt64Array.from({ length: L }, (_, i) => BigInt(i)), [1, L]);
        else feeds[meta.name] = new ort.Tensor(meta.type as 'float32' | 'float16', meta.type === 'float16' ? new Uint16Array(0) : new Float32Array(0), [1, 4, 0, 8]);
      }
      const t = (await s.run(feeds, ['logits'])).logits!;
      out.push(t.type === 'float16' ? float16ToFloat32(t.data as Uint16Array) : Float32Array.from(t.data as Float32Array));
    }
  } finally {
    await s.release();
  }
  return out;
}

const elemType = (model: Model, list: 'input' | 'output', name: string) => model.graph[list]!.find((v) => v.name === name)!.type!.tensor_type!.elem_type;
const kept = (r: PassResult, reason: string) => r.layers.filter((l) => l.extra?.reason === reason).map((l) => l.name);

describe('quantize.f16', () => {
  it('stories260K-kv in float16: logits within 2e-3 of float32 on unseen text; softmax, norm statistics, RoPE and the mask stay float32', async () => {
    const model = readOnnx(KV);
    const want = await logits(readOnnx(KV));
    const r = await convert(model, {});

    // float16 KV cache and logits, as transformers.js's q4f16 exports
    expect(elemType(model, 'input', 'past_key_values.0.key')).toBe(DataType.FLOAT16);
    expect(elemType(model, 'output', 'present.4.value')).toBe(DataType.FLOAT16);
    expect(elemType(model, 'output', 'logits')).toBe(DataType.FLOAT16);
    expect(elemType(model, 'input', 'input_ids')).toBe(DataType.INT64);
    // every weight is stored float16; only a few float32 scalars remain
    const floats = (model.graph.initializer ?? []).filter((t) => t.data_type === DataType.FLOAT);
    expect(floats.every((t) => (t.dims ?? []).reduce((a: number, b) => a * Number(b), 1) <= 4)).toBe(true);

    // the kept-in-float32 list: 5 softmaxes, 11 norms' Pow/ReduceMean/Sqrt, RoPE's Cos and Sin
    const byOp = kept(r, 'op');
    expect(byOp).toHaveLength(5 + 33 + 2);
    expect(byOp.filter((n) => n.endsWith('/Softmax'))).toHaveLength(5);
    expect(byOp.filter((n) => n.endsWith('/ReduceMean'))).toHaveLength(11);
    // the causal mask holds float32's lowest value: it and the score additions it feeds stay float32
    expect(kept(r, 'range')).toEqual(['/mask/Where', ...[0, 1, 2, 3, 4].map((i) => `/layers.${i}/self_attn/Add`)]);
    expect(r.layers.find((l) => l.name === '/mask/Where')!.extra!.max_abs).toBeCloseTo(3.4028e38, -34);
    expect(kept(r, 'float32 inputs')).toContain('/rotary/Mul');
    expect(r.summary!.logits_rel_error as number).toBeLessThan(2e-3);

    const got = await logits(model);
    for (const [i, g] of got.entries()) {
      const c = allClose(g, want[i]!, 2e-2, 2e-2);
      expect(c.relFro, c.worst).toBeLessThan(2e-3); // measured 5.4–6.3e-4
    }
    const bytes = (m: Model) => (m.graph.initializer ?? []).reduce((s, t) => s + (t.raw_data?.byteLength ?? 0), 0);
    expect(bytes(model) / bytes(readOnnx(KV))).toBeLessThan(0.51);
  });

  it('io: float32 keeps the float32 interface, with Casts at the boundary', async () => {
    const model = readOnnx(KV);
    const want = await logits(readOnnx(KV));
    await convert(model, { io: 'float32' });
    for (const name of ['past_key_values.0.key', 'past_key_values.4.value']) expect(elemType(model, 'input', name)).toBe(DataType.FLOAT);
    for (const name of ['logits', 'present.0.key']) expect(elemType(model, 'output', name)).toBe(DataType.FLOAT);
    const castToOutput = (model.graph.node ?? []).find((n) => n.output?.[0] === 'logits')!;
    expect(castToOutput.op_type).toBe('Cast');
    const got = await logits(model);
    for (const [i, g] of got.entries()) expect(allClose(g, want[i]!, 2e-2, 2e-2).relFro).toBeLessThan(2e-3); // measured 4.9–5.9e-4
  });

  describe('a model with a huge activation (the final norm weight × 10⁵: logits near 10⁶)', () => {
    const huge = join(tmp.dir, 'huge.onnx');
    beforeAll(() => {
      const model = readOnnx(KV);
      const w = model.tensor('model.norm.weight');
      const scaled = new Float32Array(w.data.buffer.slice(w.data.byteOffset, w.data.byteOffset + w.data.byteLength)).map((x) => x * 1e5);
      model.setInitializer({ name: 'model.norm.weight', dataType: DataType.FLOAT, dims: w.dims, data: new Uint8Array(scaled.buffer) });
      writeOnnx(model, huge);
    });
    const recipe = (io: string) => {
      const path = join(tmp.dir, `huge-${io}.yaml`);
      writeFileSync(
        path,
        `version: 1\ncalibration:\n  data: { kind: text, path: ${join(ROOT, 'fixtures/tinystories/valid-head.txt')}, tokenizer: ${join(ROOT, 'fixtures/stories260K/tok512.bin')}, select: "1-4", segment: 128 }\n  samples: 8\npasses:\n  - pass: quantize.f16\n    params: { io: ${io} }\n`,
      );
      return path;
    };

    it('with float16 outputs the run is refused, naming the output and its value, and nothing is written', async () => {
      const out = join(tmp.dir, 'refused', 'model.onnx');
      const r = await runCli(['compress', huge, '-r', recipe('float16'), '-o', out, '--threads', '1', '--mkdir']);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toMatch(/quantize\.f16: 'logits' reaches inf or NaN in float16 on calibration sample 1 \(float32 max \|x\| [\d.]+e\+\d+\), beyond float16's 65504; nothing was written: keep the outputs float32 \(passes\[0\]\.params\.io: float32\)/);
      expect(existsSync(out)).toBe(false);
      expect(existsSync(join(tmp.dir, 'refused'))).toBe(false); // --mkdir's folder goes too
    });

    it('with float32 outputs the large values stay float32 (range) and the logits match float32', async () => {
      const model = readOnnx(huge);
      const want = await logits(readOnnx(huge));
      const r = await convert(model, { io: 'float32' });
      const range = kept(r, 'range');
      expect(range).toContain('/norm/Mul_1');
      expect(range).toContain('/lm_head/MatMul');
      const got = await logits(model);
      for (const [i, g] of got.entries()) expect(allClose(g, want[i]!, 2e-2, 1).relFro).toBeLessThan(2e-3); // measured 4.8–5.7e-4
    });
  });

  it('keep_fp32 names nodes that stay float32; a bad pattern is a recipe error', async () => {
    const model = readOnnx(KV);
    const r = await convert(model, { keep_fp32: ['/layers.0/mlp/*'] });
    expect(kept(r, 'keep_fp32')).toContain('/layers.0/mlp/down_proj/MatMul');
    expect(f16.parse({ keep_fp32: ['re:('] }).success).toBe(false);
  });
});

describe('quantize.f16 in a recipe', () => {
  it('must be the last pass: a pass after it is a recipe error at its line', async () => {
    const path = join(tmp.dir, 'not-last.yaml');
    writeFileSync(path, 'version: 1\npasses:\n  - pass: quantize.f16\n  - pass: prune.magnitude\n    params: { sparsity: 0.5 }\n');
    const r = await runCli(['recipe', 'validate', path]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${path}:3:11 passes[0].pass: quantize.f16 must be the last pass: the passes after it would meet a float16 graph; move it to the end`);
  });
});
