import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateCheckpoint } from '../../fixtures/generate-models.js';
import { loadDataset } from '../../src/data/load.js';
import type { Dataset } from '../../src/data/types.js';
import { buildFromSafetensors } from '../../src/model/builders/index.js';
import { DataType } from '../../src/model/dtype.js';
import { GraphIndex, makeNode } from '../../src/model/graph.js';
import { redirectReaders } from '../../src/model/graph-edit.js';
import { addConstant, readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { linears, type LinearLayer } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { awq, searchAlpha } from '../../src/quantize/awq.js';
import { expandScales, foldVoInverse, voFold, type VoFold } from '../../src/quantize/awq-vo.js';
import { dequantizeMatrix, quantizeMatrix, type GridSpec } from '../../src/quantize/grid.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { gramRef, outputErrorRef } from '../reference/matmul.js';
import { decoderFeeds } from '../decoder-feeds.js';
import { allClose, tempDir } from '../helpers.js';
import { writeTokenFile, writeTinyCheckpoint } from '../model/families/checkpoints.js';
import { QWEN2 } from '../model/families/llama-families.js';
import { phi3Spec } from '../model/families/phi3-checkpoint.js';
import { cachedAgainstFull, tokens, withDecoders } from '../model/kv-decode.js';
import { calibratedContext, storiesCalibration, storiesLogits } from './models.js';

const ROOT = resolve(__dirname, '../..');
const PLAIN = join(ROOT, 'fixtures/stories260K/model.onnx');
const KV = join(ROOT, 'fixtures/stories260K-kv/model.onnx');

function folds(model: Model): VoFold[] {
  const all = linears(model);
  const index = new GraphIndex(model.graph);
  return all.filter((l) => l.name.endsWith('o_proj')).map((o) => {
    const f = voFold(model, index, all, o);
    if ('refused' in f) throw new Error(f.refused);
    return f;
  });
}

/** o_proj's columns × s_c(j), v's rows (and bias) × 1/s_c: the rewrite AWQ makes, here with seeded scales in [1/4, 4]. */
function scaleVo(model: Model, fold: VoFold, perChannel: Float64Array, channelOf = fold.channelOf): void {
  const { columns, rowsInverse } = expandScales({ channelOf }, perChannel);
  const W = readWeight(model, fold.o);
  const K = fold.o.inFeatures;
  for (let r = 0; r < fold.o.outFeatures; r++) for (let j = 0; j < K; j++) W[r * K + j] = W[r * K + j]! * columns[j]!;
  writeWeight(model, fold.o, W);
  foldVoInverse(model, fold, rowsInverse);
}

const seededScales = (n: number, seed: number) => {
  const r = seededRandom(seed);
  return Float64Array.from({ length: n }, () => 4 ** (2 * r() - 1));
};

/** quantize.awq (3-bit grid, α grid of 20) on `layers` (default: every block linear), calibrated on `samples` samples of `data`. */
function awqOn(model: Model, data: Dataset, samples: number, params: { group_size: number; v_to_o: boolean }, layers = linears(model).filter((l) => l.name.startsWith('layers.'))) {
  return awq.apply(model, { bits: 3, granularity: 'group', symmetric: false, grid: 20, ...params }, calibratedContext(model, data, samples, layers));
}

/** Greedy-free decode: the prompt, then `steps` single given tokens, each step fed the previous step's present.* as past.*. */
async function decode(model: Model, prompt: number[], next: number[]): Promise<{ logits: Float32Array[]; present: Record<string, Float32Array>[] }> {
  const s = await sessionFromModel(model, { threads: 1 });
  const logits: Float32Array[] = [];
  const present: Record<string, Float32Array>[] = [];
  let feeds = decoderFeeds(s, prompt, 1, prompt.length);
  let length = prompt.length;
  for (const token of [undefined, ...next]) {
    if (token !== undefined) {
      const past = Object.fromEntries(Object.entries(present.at(-1)!).map(([name, data]) => {
        const heads = 4;
        return [name.replace('present.', 'past_key_values.'), new ort.Tensor('float32', data, [1, heads, length - 1, data.length / (heads * (length - 1))])];
      }));
      feeds = { input_ids: new ort.Tensor('int64', BigInt64Array.of(BigInt(token)), [1, 1]), ...past };
      if (s.inputNames.includes('attention_mask')) feeds.attention_mask = new ort.Tensor('int64', new BigInt64Array(length).fill(1n), [1, length]);
      if (s.inputNames.includes('position_ids')) feeds.position_ids = new ort.Tensor('int64', BigInt64Array.of(BigInt(length - 1)), [1, 1]);
    }
    const out = await s.run(feeds);
    logits.push(out.logits!.data as Float32Array);
    present.push(Object.fromEntries(Object.entries(out).filter(([n]) => n.startsWith('present.')).map(([n, t]) => [n, t.data as Float32Array])));
    length++;
  }
  await s.release();
  return { logits, present };
}

describe('AWQ v_proj → o_proj', () => {
  it('is found through GQA on both exports: o_proj input h·8 + e reads v channel ⌊h/2⌋·8 + e, and the KV form stores the scaled values', () => {
    for (const path of [PLAIN, KV]) {
      const f = folds(readOnnx(path));
      expect(f).toHaveLength(5);
      for (const fold of f) {
        expect([fold.heads, fold.groups, fold.headDim]).toEqual([8, 4, 8]);
        expect(Array.from(fold.channelOf.slice(0, 24))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        expect(fold.channelOf[63]).toBe(31);
        expect(fold.cacheOutputs).toEqual(path === KV ? [fold.v.name.replace(/^layers\.(\d+)\..*$/, 'present.$1.value')] : []);
      }
    }
  });

  it('scaling v_proj rows by 1/s and o_proj columns by s leaves stories260K logits unchanged; the GQA-blind map j → j mod 32 does not', async () => {
    const model = readOnnx(PLAIN);
    const before = await storiesLogits(model);
    const wrong = readOnnx(PLAIN);
    folds(model).forEach((f, i) => scaleVo(model, f, seededScales(32, 10 + i)));
    folds(wrong).forEach((f, i) => scaleVo(wrong, f, seededScales(32, 10 + i), Int32Array.from(f.channelOf, (_, j) => j % 32)));
    const c = allClose(await storiesLogits(model), before, 1e-4, 1e-4);
    expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5); // float32 reassociation only, measured 2.1e-7
    expect(allClose(await storiesLogits(wrong), before, 1e-4, 1e-4).relFro).toBeGreaterThan(1e-2); // measured 0.17
  });

  it('on the KV-cache export a 6-step cached decode gives the same logits, and present.value is the original ÷ s per channel', async () => {
    const original = readOnnx(KV);
    const model = readOnnx(KV);
    const scales = folds(model).map((f, i) => seededScales(32, 20 + i));
    folds(model).forEach((f, i) => scaleVo(model, f, scales[i]!));
    const prompt = [1, 403, 407, 261, 378, 412, 282];
    const next = [300, 17, 256, 99, 401];
    const a = await decode(original, prompt, next);
    const b = await decode(model, prompt, next);
    for (let step = 0; step < a.logits.length; step++) {
      const c = allClose(b.logits[step]!, a.logits[step]!, 1e-4, 1e-4);
      expect(c.relFro, `step ${step}: ${c.worst}`).toBeLessThanOrEqual(1e-5); // measured ≤ 1.5e-6 over both tests' steps
      for (let l = 0; l < 5; l++) {
        // layer 0's keys do not depend on any v_proj; later layers' only through float32 reassociation upstream
        const key = allClose(b.present[step]![`present.${l}.key`]!, a.present[step]![`present.${l}.key`]!, 1e-4, 1e-4);
        expect(key.ok && (l > 0 || key.relFro === 0) && key.relFro <= 1e-5, `layer ${l} step ${step}: ${key.worst}, ${key.relFro}`).toBe(true); // measured ≤ 2.7e-7
        // present.value [1, 4 KV heads, length, 8]: element (g, t, e) is v channel g·8 + e
        const va = a.present[step]![`present.${l}.value`]!;
        const expected = va.map((x, i) => x / scales[l]![Math.floor(i / (8 * (va.length / 32))) * 8 + (i % 8)]!);
        const v = allClose(b.present[step]![`present.${l}.value`]!, expected, 1e-4, 1e-4);
        expect(v.ok && v.relFro <= 1e-5, `layer ${l} step ${step}: ${v.worst}, ${v.relFro}`).toBe(true); // measured ≤ 7.4e-7
      }
    }
  });

  it('quantize.awq scales o_proj on the KV-cache export too, and cached decoding is unchanged', async () => {
    const original = readOnnx(KV);
    const model = readOnnx(KV);
    const data = await storiesCalibration(join(ROOT, 'fixtures'));
    const result = await awqOn(model, data, 16, { group_size: 32, v_to_o: true });
    expect(result.warnings).toEqual([]);
    const o = result.layers.filter((l) => l.name.endsWith('o_proj'));
    expect(o.map((l) => l.extra!.folded_into)).toEqual(o.map((l) => l.name.replace('o_proj', 'v_proj')));
    expect(o.some((l) => Number(l.extra!.alpha) > 0)).toBe(true);
    const prompt = [1, 403, 407, 261, 378, 412, 282];
    const [a, b] = [await decode(original, prompt, [300, 17, 256]), await decode(model, prompt, [300, 17, 256])];
    for (let step = 0; step < a.logits.length; step++) {
      const c = allClose(b.logits[step]!, a.logits[step]!, 1e-4, 1e-4);
      expect(c.relFro, `step ${step}: ${c.worst}`).toBeLessThanOrEqual(1e-5);
    }
  });

  it('refuses a V path that is not the identity per channel (a Relu after v_proj), naming the op, and v_to_o: false leaves o_proj as before', async () => {
    const model = readOnnx(PLAIN);
    const v0 = linears(model).find((l) => l.name === 'layers.0.self_attn.v_proj')!;
    const reshape = model.graph.node!.find((n) => n.input?.[0] === v0.output && n.op_type === 'Reshape')!;
    reshape.input![0] = `${v0.output}/relu`;
    model.graph.node!.splice(model.graph.node!.indexOf(reshape), 0, makeNode('Relu', [v0.output], [`${v0.output}/relu`], '/layers.0/self_attn/v_relu'));
    const all = linears(model);
    const refused = voFold(model, new GraphIndex(model.graph), all, all.find((l) => l.name === 'layers.0.self_attn.o_proj')!);
    expect('refused' in refused && refused.refused).toMatch(/Relu node '\/layers.0\/self_attn\/v_relu'/);
    const data = await storiesCalibration(join(ROOT, 'fixtures'));
    const run = (m: Model, v_to_o: boolean, layers: LinearLayer[]) => awqOn(m, data, 8, { group_size: 32, v_to_o }, layers);
    const o = (m: Model) => linears(m).filter((l) => l.name.endsWith('o_proj'));
    const withRelu = await run(model, true, o(model));
    expect(withRelu.warnings).toHaveLength(1);
    expect(withRelu.warnings[0]).toMatch(/'layers.0.self_attn.o_proj'; left unscaled \(V's way .* Relu node/);
    const off = readOnnx(PLAIN);
    const wOff = await run(off, false, o(off));
    expect(wOff.warnings).toHaveLength(5);
    expect(wOff.layers).toHaveLength(0);
  });

  it('with channels tied as under GQA, α is the best of the grid by brute force and tied inputs share their scale', () => {
    const r = seededRandom(7);
    // 4 heads over 2 KV heads of head_dim 4: o_proj reads 16 inputs from 8 v channels
    const [n, K, rows] = [48, 16, 6];
    const channelOf = Int32Array.from({ length: K }, (_, j) => Math.floor(Math.floor(j / 4) / 2) * 4 + (j % 4));
    const X = Float32Array.from({ length: n * K }, (_, i) => (r() * 2 - 1) * (channelOf[i % K]! % 4 === 1 ? 10 : 1));
    const W = Float32Array.from({ length: rows * K }, () => r() * 2 - 1);
    const G = gramRef(X, n, K);
    const spec: GridSpec = { bits: 3, granularity: { kind: 'group', size: 8 }, symmetric: false };
    const direct = (Wq: Float32Array) => outputErrorRef(W, Wq, X, n, rows, K);
    // brute force: per-v-channel RMS pooled over the inputs that read it, s_c = rms^α / √(max·min), expanded
    const rms = Array.from({ length: 8 }, (_, c) => {
      const js = [...channelOf.keys()].filter((j) => channelOf[j] === c);
      let sq = 0;
      for (const j of js) for (let s = 0; s < n; s++) sq += X[s * K + j]! ** 2;
      return Math.sqrt(sq / (n * js.length));
    });
    const errors = Array.from({ length: 20 }, (_, i) => {
      const sc = rms.map((a) => a ** (i / 20));
      const norm = Math.sqrt(Math.max(...sc) * Math.min(...sc));
      const s = (j: number) => sc[channelOf[j]!]! / norm;
      const q = dequantizeMatrix(quantizeMatrix(W.map((w, idx) => w * s(idx % K)), rows, K, spec)).map((v, idx) => v / s(idx % K));
      return direct(q);
    });
    const best = errors.indexOf(Math.min(...errors));
    const choice = searchAlpha([{ W, rows }], K, G, n, spec, 20, channelOf);
    expect(choice.alpha).toBeCloseTo(best / 20, 12);
    expect(choice.errorAfter / errors[best]!).toBeCloseTo(1, 9);
    expect(choice.shared).toHaveLength(8);
    for (let j = 0; j < K; j++) expect(choice.scales[j]).toBe(choice.shared[channelOf[j]!]);
    expect(best).toBeGreaterThan(0); // the loud channels make scaling pay
  });
});

/**
 * AWQ's v_proj → o_proj fold on the forms beyond a plain v_proj: Qwen2's v bias (divided with
 * v_proj's rows), Phi-3's fused qkv_proj (only its v rows divided), and both at once (a bias added
 * to the fused layer's v part). All are exact in float: the scaled model computes what the original
 * does, with and without the KV cache.
 */

const tmp = tempDir('pare-awq-vo-families-');
afterAll(() => tmp.cleanup());

interface Family {
  name: string;
  vocab: number;
  build: () => Model;
  /** v's rows in the layer that holds them, and whether a bias is divided with them */
  rows: { row0: number; bias: boolean };
  /** the layer o_proj's scales fold into */
  into: 'v_proj' | 'qkv_proj';
  /** how the checkpoint stores its tensors (float32 unless said) */
  stored?: DataType;
}

function phi3(): Model {
  generateCheckpoint(phi3Spec(), join(tmp.dir, 'phi3'), { seed: 11, onnx: false });
  return buildFromSafetensors(join(tmp.dir, 'phi3', 'model.safetensors'));
}

/** Phi-3 with a seeded bias of 16 values added to the v part the Split hands on (a fused layer's bias cut as its output is). */
function phi3WithVBias(): Model {
  const model = phi3();
  const index = new GraphIndex(model.graph);
  for (const [i, qkv] of linears(model).filter((l) => l.name.endsWith('qkv_proj')).entries()) {
    const split = index.consumers.get(qkv.output)![0]!;
    const v = split.output![2]!;
    const r = seededRandom(60 + i);
    const bias = addConstant(model, `${qkv.name}.v_bias`, DataType.FLOAT, [16], Array.from({ length: 16 }, () => r() - 0.5));
    redirectReaders(model.graph, v, `${v}/biased`);
    model.graph.node!.splice(model.graph.node!.indexOf(split) + 1, 0, makeNode('Add', [v, bias], [`${v}/biased`], `${split.name}/v_bias`));
  }
  return model;
}

const FAMILIES: Family[] = [
  {
    name: 'qwen2 (v_proj.bias)',
    vocab: QWEN2.config.vocab_size as number,
    build: () => buildFromSafetensors(writeTinyCheckpoint(QWEN2, join(tmp.dir, 'qwen2')).path),
    rows: { row0: 0, bias: true },
    into: 'v_proj',
  },
  {
    name: 'qwen2 float16 checkpoint (weights and v bias read through a Cast)',
    vocab: QWEN2.config.vocab_size as number,
    build: () => buildFromSafetensors(writeTinyCheckpoint(QWEN2, join(tmp.dir, 'qwen2-f16'), { dataType: DataType.FLOAT16 }).path),
    rows: { row0: 0, bias: true },
    into: 'v_proj',
    stored: DataType.FLOAT16,
  },
  // 6 query heads and 2 KV heads of 8: q is rows 0–47, k 48–63, v 64–79
  { name: 'phi3 (fused qkv_proj)', vocab: phi3Spec().config.vocab_size as number, build: phi3, rows: { row0: 64, bias: false }, into: 'qkv_proj' },
  { name: 'phi3 (fused qkv_proj, bias on its v part)', vocab: phi3Spec().config.vocab_size as number, build: phi3WithVBias, rows: { row0: 64, bias: true }, into: 'qkv_proj' },
];

/** Logits of the two models on 2 × 12 seeded tokens, then greedy decoding with the cache against re-running, on the scaled one. */
async function compare(original: Model, scaled: Model, vocab: number): Promise<{ relFro: number; cachedWorst: number; sameTokens: boolean }> {
  const ids = tokens(vocab, 2, 12, 5);
  const [a, b] = await withDecoders([original, scaled], async (d0, d1) => [await d0.full(ids), await d1.full(ids)]);
  const decoded = await withDecoders([scaled, scaled], (cached, full) => cachedAgainstFull(cached, full, tokens(vocab, 2, 5, 9), 8, vocab));
  return { relFro: allClose(b!, a!, 1e-4, 1e-4).relFro, cachedWorst: decoded.worst, sameTokens: JSON.stringify(decoded.cachedTokens) === JSON.stringify(decoded.fullTokens) };
}

describe('AWQ v_proj → o_proj on biased and fused V', () => {
  it('refuses a v bias that another node reads too (dividing it would change that node), naming the bias', () => {
    const model = FAMILIES[0]!.build();
    const [first] = folds(model);
    model.graph.node!.push(makeNode('Identity', [first!.bias!], ['bias_copy'], 'bias_reader'));
    const all = linears(model);
    const refused = voFold(model, new GraphIndex(model.graph), all, first!.o);
    expect('refused' in refused && refused.refused).toBe(`the bias '${first!.bias}' added to 'layers.0.self_attn.v_proj' is not a vector of 16 values read by that Add alone`);
  });

  for (const f of FAMILIES) {
    it(`${f.name}: found on every layer (v rows from ${f.rows.row0}${f.rows.bias ? ', with the bias' : ''}); scaling leaves the logits and the cached decode unchanged, and ${f.rows.bias ? 'leaving the bias unscaled' : 'scaling the q rows instead'} does not`, async () => {
      const original = f.build();
      const found = folds(original);
      expect(found).toHaveLength(3);
      for (const fold of found) {
        expect([fold.row0, fold.bias !== undefined, fold.heads, fold.groups, fold.headDim]).toEqual([f.rows.row0, f.rows.bias, 6, 2, 8]);
        expect(fold.cacheOutputs).toHaveLength(1);
        if (fold.bias !== undefined) expect(original.tensor(fold.bias).dataType).toBe(f.stored ?? DataType.FLOAT);
      }
      const scaled = f.build();
      folds(scaled).forEach((fold, i) => scaleVo(scaled, fold, seededScales(16, 30 + i)));
      const exact = await compare(original, scaled, f.vocab);
      expect(exact.relFro).toBeLessThanOrEqual(1e-5); // float32 reassociation only: measured 5.0e-7 (qwen2), 5.5e-7 (qwen2 float16), 6.2e-7 (phi3), 6.0e-7 (phi3 + v bias)
      expect(exact.cachedWorst).toBeLessThanOrEqual(1e-5); // measured 5.9e-7, 5.8e-7, 1.6e-6, 7.7e-7
      expect(exact.sameTokens).toBe(true);
      // the control: the fold is wrong without the bias, or on the wrong rows
      const wrong = f.build();
      folds(wrong).forEach((fold, i) => scaleVo(wrong, f.rows.bias ? { ...fold, bias: undefined } : { ...fold, row0: 0 }, seededScales(16, 30 + i)));
      expect((await compare(original, wrong, f.vocab)).relFro).toBeGreaterThan(1e-3); // measured 0.77, 0.77, 0.93, 0.47
    }, 60_000);

    it(`${f.name}: quantize.awq folds every o_proj into ${f.into} without a warning, and the float model computes as before, with the cache as without`, async () => {
      const original = f.build();
      const model = f.build();
      const path = writeTokenFile(join(tmp.dir, `${f.into}.u16`), f.vocab, 16 * 8, 5);
      const data = await loadDataset({ kind: 'tokens', path, dtype: 'uint16', seq_len: 16, count: 8, offset: 0 }, tmp.dir);
      const result = await awqOn(model, data, 8, { group_size: 16, v_to_o: true });
      expect(result.warnings).toEqual([]);
      const o = result.layers.filter((l) => l.name.endsWith('o_proj'));
      expect(o.map((l) => l.extra!.folded_into)).toEqual(o.map((l) => l.name.replace('o_proj', f.into)));
      expect(o.some((l) => Number(l.extra!.alpha) > 0)).toBe(true);
      const r = await compare(original, model, f.vocab);
      expect(r.relFro).toBeLessThanOrEqual(1e-5); // measured 4.9e-7 (qwen2), 5.4e-7 (qwen2 float16), 8.3e-7 (phi3), 8.6e-7 (phi3 + v bias)
      expect(r.cachedWorst).toBeLessThanOrEqual(1e-5); // measured 5.0e-7, 5.6e-7, 1.4e-6, 5.5e-7
      expect(r.sameTokens).toBe(true);
    }, 60_000);
  }
});
