import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Calibrator } from '../../src/calibrate/calibrator.js';
import { calibrationFeeds } from '../../src/calibrate/feeds.js';
import { GraphIndex, makeNode } from '../../src/model/graph.js';
import { readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { linears, type LinearLayer } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { awq, searchAlpha } from '../../src/quantize/awq.js';
import { expandScales, voFold, type VoFold } from '../../src/quantize/awq-vo.js';
import { dequantizeMatrix, quantizeMatrix, type GridSpec } from '../../src/quantize/grid.js';
import { foldInverse } from '../../src/quantize/smoothquant.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { gramRef, outputErrorRef } from '../reference/matmul.js';
import { decoderFeeds } from '../decoder-feeds.js';
import { allClose } from '../helpers.js';
import { storiesCalibration, storiesLogits } from './models.js';

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

/** o_proj's columns × s_c(j), v_proj's rows × 1/s_c: the rewrite AWQ makes, here with seeded scales in [1/4, 4]. */
function scaleVo(model: Model, fold: VoFold, perChannel: Float64Array, channelOf = fold.channelOf): void {
  const { columns, rowsInverse } = expandScales({ channelOf }, perChannel);
  const W = readWeight(model, fold.o);
  const K = fold.o.inFeatures;
  for (let r = 0; r < fold.o.outFeatures; r++) for (let j = 0; j < K; j++) W[r * K + j] = W[r * K + j]! * columns[j]!;
  writeWeight(model, fold.o, W);
  foldInverse(model, { kind: 'linear', layer: fold.v, row0: 0 }, rowsInverse);
}

const seededScales = (n: number, seed: number) => {
  const r = seededRandom(seed);
  return Float64Array.from({ length: n }, () => 4 ** (2 * r() - 1));
};

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
    const result = await awq.apply(model, { bits: 3, granularity: 'group', group_size: 32, symmetric: false, grid: 20, v_to_o: true }, {
      layers: linears(model).filter((l) => l.name.startsWith('layers.')),
      seed: 0,
      random: Math.random,
      calibration: new Calibrator(calibrationFeeds(model, data, 16), 'oneshot', 1),
      progress: { layer() {} },
      where: 'passes[0]',
    });
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
    const run = async (m: Model, v_to_o: boolean, layers: LinearLayer[]) =>
      awq.apply(m, { bits: 3, granularity: 'group', group_size: 32, symmetric: false, grid: 20, v_to_o }, {
        layers,
        seed: 0,
        random: Math.random,
        calibration: new Calibrator(calibrationFeeds(m, data, 8), 'oneshot', 1),
        progress: { layer() {} },
        where: 'passes[0]',
      });
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
