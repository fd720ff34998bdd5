import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateCheckpoint, gpt2Spec, llamaSpec, tensorValues } from '../../fixtures/generate-models.js';
import { loadDataset } from '../../src/data/load.js';
import { evalReport } from '../../src/report/eval-report.js';
import type { LMQuality } from '../../src/eval/lm.js';
import { UserError } from '../../src/errors.js';
import { decoderBlocks } from '../../src/model/blocks.js';
import { buildFromSafetensors } from '../../src/model/builders/index.js';
import { DataType } from '../../src/model/dtype.js';
import { linears } from '../../src/model/linears.js';
import { loadModel } from '../../src/model/load.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx, writeOnnx } from '../../src/model/onnx-io.js';
import { openSafetensors, writeSafetensors, type SafetensorsTensor } from '../../src/model/safetensors.js';
import { writeModelAsSafetensors } from '../../src/model/to-safetensors.js';
import { seededRandom } from '../../src/util/random.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { allClose, fixturePath, FIXTURES, itWithShared, sharedPath, tempDir } from '../helpers.js';
import { gpt2Forward } from '../reference/gpt2-forward.js';
import { decoderFeeds } from '../decoder-feeds.js';

function tokens(vocab: number, batch: number, seq: number, seed: number): number[][] {
  const r = seededRandom(seed);
  return Array.from({ length: batch }, () => Array.from({ length: seq }, () => Math.floor(r() * vocab)));
}

async function logits(model: Model, ids: number[][]): Promise<Float32Array> {
  const s = await sessionFromModel(model, { threads: 1 });
  try {
    const flat = BigInt64Array.from(ids.flat().map(BigInt));
    return (await s.run(decoderFeeds(s, flat, ids.length, ids[0]!.length))).logits!.data as Float32Array;
  } finally {
    await s.release();
  }
}

/** Rewrites a safetensors file with one more tensor. */
function appendTensor(path: string, t: SafetensorsTensor): void {
  const st = openSafetensors(path);
  const rows = [...st.tensors.values()].map(({ name, dataType, shape }) => ({ name, dataType, shape, data: st.read(name) }));
  st.close();
  writeSafetensors(path, [...rows, t]);
}

function withTemp(fn: (dir: string) => Promise<void> | void): () => Promise<void> {
  return async () => {
    const tmp = tempDir();
    try {
      await fn(tmp.dir);
    } finally {
      tmp.cleanup();
    }
  };
}

describe('Llama builder (safetensors + config.json → ONNX)', () => {
  for (const [name, vocab, dir, test] of [
    ['stories260K', 512, fixturePath('stories260K'), it],
    ['shakespeare-char', 65, sharedPath('models/shakespeare-char'), itWithShared],
  ] as const) {
    test(`${name}: logits equal the PyTorch-exported ONNX (batch 2, seq 1..64)`, async () => {
      const built = loadModel(join(dir, 'model.safetensors'));
      const exported = readOnnx(join(dir, 'model.onnx'));
      expect(built.format).toBe('safetensors');
      expect(built.path).toBe(join(dir, 'model.safetensors'));
      for (const seq of [1, 17, 64]) {
        const ids = tokens(vocab, 2, seq, seq);
        const c = allClose(await logits(built, ids), await logits(exported, ids), 1e-4, 1e-4);
        // measured: stories260K 0 (bit-identical), shakespeare-char ≤ 4.0e-7
        expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5);
      }
    });
  }

  it('stories260K: linears() finds the 36 layers of the exported ONNX, by the same names', () => {
    const built = linears(loadModel(FIXTURES.storiesSafetensors)).map((l) => l.name);
    expect(built).toHaveLength(36);
    expect(built).toEqual(linears(readOnnx(FIXTURES.stories)).map((l) => l.name));
    expect(built).toContain('layers.0.mlp.gate_proj');
    expect(built.at(-1)).toBe('lm_head');
  });

  it('initializers keep the HF names and [out, in] layout and are read lazily from the safetensors file', () => {
    const model = loadModel(FIXTURES.storiesSafetensors);
    const q = model.initializer('model.layers.0.self_attn.q_proj.weight')!;
    expect(q.data_location).toBe(1);
    expect(q.dims).toEqual([64, 64]);
    const st = openSafetensors(model.path);
    expect(Buffer.from(model.tensor(q).data).equals(Buffer.from(st.read('model.layers.0.self_attn.q_proj.weight')))).toBe(true);
    st.close();
    model.close();
  });

  it('stories260K built from safetensors reproduces perplexity 3.397 on valid-head.txt', withTemp(async (dir) => {
    const path = join(dir, 'built.onnx');
    writeOnnx(loadModel(FIXTURES.storiesSafetensors), path);
    const data = await loadDataset({ kind: 'text', path: FIXTURES.validHead, tokenizer: FIXTURES.tok512, separator: '<|endoftext|>', bos: true, max_length: 512 }, dir);
    const q = (await evalReport(path, data, { latency: false })).measurements.model.quality as LMQuality;
    expect(q.perplexity.toFixed(3)).toBe('3.397');
  }));

  it('an untied lm_head equal to the embedding gives the tied logits (GQA, mobilellm model_type)', withTemp(async (dir) => {
    const shape = { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 40 };
    const tied = llamaSpec('tied', { ...shape, tie_word_embeddings: true }, { mobilellm: true, normStd: 0.1 });
    generateCheckpoint(tied, join(dir, 'tied'), { seed: 3, onnx: false });
    // the same checkpoint plus lm_head.weight = the embedding, with tie_word_embeddings false
    generateCheckpoint({ ...tied, config: { ...tied.config, tie_word_embeddings: false } }, join(dir, 'untied'), { seed: 3, onnx: false });
    const emb = tensorValues(tied.tensors[0]!, 3);
    appendTensor(join(dir, 'untied/model.safetensors'), { name: 'lm_head.weight', dataType: DataType.FLOAT, shape: [40, 32], data: new Uint8Array(emb.buffer) });
    const ids = tokens(40, 2, 9, 1);
    const a = loadModel(join(dir, 'tied/model.safetensors'));
    const b = loadModel(join(dir, 'untied/model.safetensors'));
    expect(linears(b).at(-1)!.weight).toBe('lm_head.weight');
    expect(allClose(await logits(b, ids), await logits(a, ids), 0, 0).ok).toBe(true);
  }));
});

describe('GPT-2 builder', () => {
  const shape = { n_embd: 32, n_layer: 2, n_head: 4, n_positions: 64, vocab_size: 50 };
  // weights std 0.3: pre-activations of order 1, so GELU's cubic term and softmax's shape matter
  const spec = gpt2Spec('tiny-gpt2', shape, { perturb: true, std: 0.3 });

  it('tiny random GPT-2: logits equal a float64 reference forward (batch 2, seq 1..64)', withTemp(async (dir) => {
    generateCheckpoint(spec, dir, { seed: 11, onnx: false });
    const model = loadModel(join(dir, 'model.safetensors'));
    const values = new Map(spec.tensors.map((t) => [t.name, Float64Array.from(tensorValues(t, 11))]));
    const w = (name: string) => {
      const v = values.get(name);
      if (!v) throw new Error(`reference asked for '${name}', which the checkpoint lacks`);
      return v;
    };
    for (const seq of [1, 7, 64]) {
      const ids = tokens(50, 2, seq, 100 + seq);
      const ref = Float64Array.from(gpt2Forward(w, { ...shape, n_inner: 128, layer_norm_epsilon: 1e-5 }, ids).flatMap((r) => r.flatMap((v) => [...v])));
      const c = allClose(await logits(model, ids), ref, 1e-4, 1e-5);
      expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5); // measured ≤ 5.5e-7
    }
  }));

  it('names layers h.N.attn.c_attn … lm_head, Gemm with bias for Conv1D, and decoderBlocks() finds each block', withTemp((dir) => {
    generateCheckpoint(spec, dir, { seed: 11, onnx: false });
    const model = loadModel(join(dir, 'model.safetensors'));
    const ls = linears(model);
    expect(ls.map((l) => l.name)).toEqual(['h.0.attn.c_attn', 'h.0.attn.c_proj', 'h.0.mlp.c_fc', 'h.0.mlp.c_proj', 'h.1.attn.c_attn', 'h.1.attn.c_proj', 'h.1.mlp.c_fc', 'h.1.mlp.c_proj', 'lm_head']);
    expect(ls[0]).toMatchObject({ kind: 'gemm', weight: 'transformer.h.0.attn.c_attn.weight', bias: 'transformer.h.0.attn.c_attn.bias', inFeatures: 32, outFeatures: 96 });
    expect(ls[2]).toMatchObject({ inFeatures: 32, outFeatures: 128 });
    expect(ls.at(-1)).toMatchObject({ kind: 'matmul', weight: 'transformer.wte.weight', inFeatures: 32, outFeatures: 50 });
    expect(decoderBlocks(model).map((b) => b.index)).toEqual([0, 1]);
  }));

  it('reads checkpoints without the transformer. prefix (as the hub gpt2 stores them) the same way', withTemp(async (dir) => {
    generateCheckpoint(spec, join(dir, 'a'), { seed: 5, onnx: false });
    generateCheckpoint(gpt2Spec('bare', shape, { perturb: true, prefix: '', std: 0.3 }), join(dir, 'b'), { onnx: false });
    // the same values under the bare names
    const st = openSafetensors(join(dir, 'a/model.safetensors'));
    const rows = [...st.tensors.values()].map(({ name, dataType, shape: s }) => ({ name: name.replace(/^transformer\./, ''), dataType, shape: s, data: st.read(name) }));
    st.close();
    writeSafetensors(join(dir, 'b/model.safetensors'), rows);
    const ids = tokens(50, 2, 12, 4);
    expect(allClose(await logits(loadModel(join(dir, 'b/model.safetensors')), ids), await logits(loadModel(join(dir, 'a/model.safetensors')), ids), 0, 0).ok).toBe(true);
  }));
});

describe('buildFromSafetensors / writeModelAsSafetensors', () => {
  it('an unknown model_type is a user error naming config.json and the type', withTemp((dir) => {
    copyFileSync(FIXTURES.storiesSafetensors, join(dir, 'model.safetensors'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'bert' }));
    expect(() => buildFromSafetensors(join(dir, 'model.safetensors'))).toThrow(UserError);
    expect(() => buildFromSafetensors(join(dir, 'model.safetensors'))).toThrow(/config\.json: model_type "bert" has no graph builder; supported: llama, mobilellm, qwen2, qwen3, gpt2/);
  }));

  const tinyGpt2 = (dir: string) => join(generateCheckpoint(gpt2Spec('g', { n_embd: 16, n_layer: 1, n_head: 2, n_positions: 8, vocab_size: 20 }), join(dir, 'in'), { onnx: false }).dir, 'model.safetensors');
  for (const [name, make] of [
    ['stories260K', () => FIXTURES.storiesSafetensors],
    ['tiny GPT-2', tinyGpt2],
  ] as const) {
    it(`${name}: safetensors → Model → safetensors gives identical tensor bytes and copies config.json`, withTemp((dir) => {
      const input = make(dir);
      const model = loadModel(input);
      const out = join(dir, 'out/model.safetensors');
      expect(writeModelAsSafetensors(model, out)).toEqual([out, join(dir, 'out/config.json')]);
      const a = openSafetensors(input);
      const b = openSafetensors(out);
      expect([...b.tensors.keys()]).toEqual([...a.tensors.keys()]);
      for (const [n, e] of a.tensors) {
        expect(b.tensors.get(n)).toMatchObject({ dtype: e.dtype, shape: e.shape });
        expect(Buffer.from(b.read(n)).equals(Buffer.from(a.read(n))), n).toBe(true);
      }
      a.close();
      b.close();
      expect(readFileSync(join(dir, 'out/config.json'), 'utf8')).toBe(readFileSync(join(input, '../config.json'), 'utf8'));
    }));
  }

  it('changed weights go back in place; structure safetensors cannot hold is a user error that says to write .onnx', withTemp((dir) => {
    const input = FIXTURES.storiesSafetensors;
    const name = 'model.layers.1.mlp.up_proj.weight';
    const model = loadModel(input);
    const zeros = { name, dataType: DataType.FLOAT, dims: [172, 64], data: new Uint8Array(172 * 64 * 4) };
    model.setInitializer(zeros);
    writeModelAsSafetensors(model, join(dir, 'ok.safetensors'));
    const st = openSafetensors(join(dir, 'ok.safetensors'));
    expect(st.read(name).every((b) => b === 0)).toBe(true);
    st.close();

    const write = (m: Model) => () => writeModelAsSafetensors(m, join(dir, 'bad.safetensors'));
    const added = loadModel(input);
    added.setInitializer({ name: 'scale', dataType: DataType.FLOAT, dims: [1], data: new Uint8Array(4) });
    expect(write(added)).toThrow(/tensor 'scale' was added by a pass.*write the output as \.onnx/);
    const newOp = loadModel(input);
    newOp.graph.node!.push({ op_type: 'MatMulNBits', domain: 'com.microsoft', name: '/layers.0/mlp/up_proj/MatMulNBits', input: [], output: [] });
    expect(write(newOp)).toThrow(/com\.microsoft\.MatMulNBits.*write the output as \.onnx/);
    const smaller = loadModel(input);
    smaller.setInitializer({ ...zeros, dims: [100, 64], data: new Uint8Array(100 * 64 * 4) });
    expect(write(smaller)).toThrow(/changed shape from \[172, 64\] to \[100, 64\]/);
    const removed = loadModel(input);
    removed.removeInitializer('model.norm.weight');
    expect(write(removed)).toThrow(/'model\.norm\.weight' was removed/);
  }));
});
