import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Calibrator } from '../../src/calibrate/calibrator.js';
import { calibrationFeeds } from '../../src/calibrate/feeds.js';
import { loadDataset } from '../../src/data/load.js';
import { svdPass } from '../../src/decompose/svd.js';
import { matmul } from '../../src/linalg/gemm.js';
import { svd } from '../../src/linalg/svd.js';
import { readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { allClose } from '../helpers.js';
import { storiesLogits } from '../quantize/models.js';

const ROOT = resolve(__dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');
const noProgress = { layer() {} };

const logits = (model: ReturnType<typeof readOnnx>) => storiesLogits(model, { batch: 2, seq: 25, seed: 12 });

async function calibrator(model: ReturnType<typeof readOnnx>): Promise<Calibrator> {
  const data = await loadDataset(
    { kind: 'text', path: 'tinystories/valid-head.txt', tokenizer: 'stories260K/tok512.bin', separator: '<|endoftext|>', bos: true, max_length: 512, select: '1-10', segment: 128 },
    join(ROOT, 'fixtures'),
  );
  return new Calibrator(calibrationFeeds(model, data, 64), 'oneshot', 1);
}

describe('decompose.svd', () => {
  it('rank-k weight error² equals the sum of the discarded σ², and ORT runs the two MatMuls as the dense Ŵ', async () => {
    const model = readOnnx(MODEL);
    const reference = readOnnx(MODEL);
    const targets = linears(model).filter((l) => l.name.endsWith('mlp.up_proj'));
    const spectra = await Promise.all(targets.map(async (l) => (await svd(readWeight(model, l), l.outFeatures, l.inFeatures)).S));
    const result = await svdPass.apply(model, { rank: 24, activation_aware: false, dampening: 1e-6 }, { layers: targets, seed: 0, random: Math.random, progress: noProgress, where: 'passes[0]' });
    for (const [i, stat] of result.layers.entries()) {
      const S = spectra[i]!;
      const discarded = S.slice(24).reduce((a, s) => a + s * s, 0);
      const total = S.reduce((a, s) => a + s * s, 0);
      expect(Number(stat.extra!.weight_rel_error) ** 2).toBeCloseTo(discarded / total, 6);
      expect(stat.bytes_after).toBe(24 * (172 + 64) * 4);
    }
    // reference: the reconstructed dense weight in place of each factorized layer
    for (const l of linears(reference).filter((x) => x.name.endsWith('mlp.up_proj'))) {
      const W = readWeight(reference, l);
      const d = await svd(W, l.outFeatures, l.inFeatures);
      const US = new Float64Array(l.outFeatures * 24);
      for (let r = 0; r < l.outFeatures; r++) for (let c = 0; c < 24; c++) US[r * 24 + c] = d.U[r * d.rank + c]! * d.S[c]!;
      writeWeight(reference, l, Float32Array.from(await matmul(US, Float64Array.from(d.Vt.subarray(0, 24 * l.inFeatures)), l.outFeatures, 24, l.inFeatures)));
    }
    expect(model.graph.node!.filter((n) => n.name?.endsWith('/svd_v'))).toHaveLength(5);
    const c = allClose(await logits(model), await logits(reference), 1e-4, 1e-4);
    expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5);
  });

  it('activation-aware SVD has a lower output error than plain SVD at the same rank on every layer', async () => {
    const plain = readOnnx(MODEL);
    const aware = readOnnx(MODEL);
    const pick = (m: ReturnType<typeof readOnnx>) => linears(m).filter((l) => l.name.startsWith('layers.'));
    const p = await svdPass.apply(plain, { rank: 16, activation_aware: false, dampening: 1e-6 }, { layers: pick(plain), seed: 0, random: Math.random, calibration: await calibrator(plain), progress: noProgress, where: 'passes[0]' });
    const a = await svdPass.apply(aware, { rank: 16, activation_aware: true, dampening: 1e-6 }, { layers: pick(aware), seed: 0, random: Math.random, calibration: await calibrator(aware), progress: noProgress, where: 'passes[0]' });
    expect(a.layers.length).toBe(p.layers.length);
    for (const [i, s] of a.layers.entries()) expect(s.objective!, s.name).toBeLessThan(p.layers[i]!.objective!);
  });

  it('a rank that saves no parameters leaves the layer dense with a warning', async () => {
    const model = readOnnx(MODEL);
    const targets = linears(model).filter((l) => l.name === 'layers.0.self_attn.q_proj'); // 64×64: needs k < 32
    const r = await svdPass.apply(model, { rank: 40, activation_aware: false, dampening: 1e-6 }, { layers: targets, seed: 0, random: Math.random, progress: noProgress, where: 'passes[0]' });
    expect(r.layers).toHaveLength(0);
    expect(r.warnings[0]).toContain('would not save parameters');
  });
});
