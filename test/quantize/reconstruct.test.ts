import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Calibrator } from '../../src/calibrate/calibrator.js';
import { calibrationFeeds, type Feeds } from '../../src/calibrate/feeds.js';
import { UserError } from '../../src/errors.js';
import { attrInt } from '../../src/model/graph.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { matMulNBitsLayers } from '../../src/model/nbits-layers.js';
import { encodeInline, readOnnx } from '../../src/model/onnx-io.js';
import { toFloat32 } from '../../src/model/pack.js';
import { foldNBitsInputs } from '../../src/quantize/nbits-fold.js';
import { reconstruct } from '../../src/quantize/reconstruct.js';
import { rotate } from '../../src/quantize/rotate.js';
import { rtn } from '../../src/quantize/rtn.js';
import { decodeNBits } from '../../src/runtime/tfjs/matmulnbits.js';
import { gridWindow } from '../../src/runtime/tfjs/fake-quant.js';
import { ortBlockLosses as blockLosses } from './block-losses.js';
import { storiesCalibration } from './models.js';

const ROOT = resolve(__dirname, '../..');
const FLOAT = join(ROOT, 'fixtures/stories260K/model.onnx');
const SAMPLES = 6;

const ctx = (model: Model, feeds: Feeds[], layers = matMulNBitsLayers(model)) => ({
  layers,
  seed: 0,
  random: Math.random,
  calibration: new Calibrator(feeds, 'sequential', 1),
  progress: { layer() {} },
  where: 'passes[1]',
  original: () => FLOAT,
});

/** stories260K with every block linear RTN 3-bit g32 (optionally packed 3-bit codes and float16 scales), and its calibration feeds. */
async function quantized(storage: { packed_3bit?: boolean; scale_dtype?: 'float16'; float_zero_points?: boolean } = {}, rotated = false): Promise<{ model: Model; feeds: Feeds[] }> {
  const model = readOnnx(FLOAT);
  const feeds = calibrationFeeds(model, await storiesCalibration(join(ROOT, 'fixtures')), SAMPLES);
  if (rotated) await rotate.apply(model, rotate.params.parse({}), { ...ctx(model, feeds), layers: [], where: 'passes[0]' });
  const params = rtn.params.parse({ bits: 3, granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits', ...storage });
  await rtn.apply(model, params, { ...ctx(model, feeds, linears(model).filter((l) => l.name.startsWith('layers.'))), where: 'passes[0]' });
  return { model, feeds };
}

/** Each MatMulNBits layer's decoded codes, scales and zero points, read through its folded storage. */
async function grids(model: Model) {
  const { work } = await foldNBitsInputs(model);
  return new Map(
    (work.graph.node ?? [])
      .filter((n) => n.op_type === 'MatMulNBits')
      .map((n) => {
        const layout = { N: attrInt(n, 'N', 0), K: attrInt(n, 'K', 0), bits: attrInt(n, 'bits', 4), block: attrInt(n, 'block_size', 32) };
        const s = work.tensor(n.input![2]!);
        const zeros = work.tensor(n.input![3]!).data;
        return [n.name!, decodeNBits(work.tensor(n.input![1]!).data, toFloat32(s.dataType, s.data), zeros, layout)];
      }),
  );
}

const ortBlockLosses = (model: Model, feeds: Feeds[]) => blockLosses(model, feeds, FLOAT);

describe('quantize.reconstruct', () => {
  it('lowers every block output error, and ONNX Runtime on the written model measures the losses the fake-quantized training reported', async () => {
    const { model, feeds } = await quantized();
    const ortBefore = await ortBlockLosses(model, feeds);
    const result = await reconstruct.apply(model, { epochs: 3, lr: 3e-3 }, ctx(model, feeds));
    const reported = result.layers.filter((l) => l.name.endsWith('q_proj')).map((l) => l.extra!);
    expect(reported).toHaveLength(5);
    const ortAfter = await ortBlockLosses(model, feeds);
    for (const [b, r] of reported.entries()) {
      expect(r.kept).toBe('true');
      expect(Number(r.block_loss_after)).toBeLessThan(Number(r.block_loss_before));
      // the written codes are the fake-quantized weights: ORT's forward equals tfjs's to float32 reassociation
      expect(Math.abs(ortAfter[b]! - Number(r.block_loss_after)) / ortAfter[b]!).toBeLessThan(1e-4); // measured ≤ 1.2e-6
    }
    // block 0 starts from the same input in both runs, so its "before" is the RTN model's own
    expect(Math.abs(ortBefore[0]! - Number(reported[0]!.block_loss_before)) / ortBefore[0]!).toBeLessThan(1e-4); // measured 7.2e-7
    // end to end, independently of the training's bookkeeping: every block's output is closer to the float model's
    for (const [b, after] of ortAfter.entries()) expect(after).toBeLessThan(ortBefore[b]!);
  }, 120_000);

  it('packed 3-bit codes and float16 scales: codes stay on their 3-bit grid, scales and zero points are unchanged, the file keeps its size', async () => {
    const { model, feeds } = await quantized({ packed_3bit: true, scale_dtype: 'float16' });
    const before = await grids(model);
    const bytes = encodeInline(model).length;
    const ortBefore = await ortBlockLosses(model, feeds);
    const result = await reconstruct.apply(model, { epochs: 1, lr: 1e-2 }, ctx(model, feeds));
    expect(result.layers).toHaveLength(35);
    const after = await grids(model);
    let changed = 0;
    for (const [name, b] of before) {
      const a = after.get(name)!;
      expect(a.scale).toEqual(b.scale);
      expect(a.zero).toEqual(b.zero);
      const [lo, hi] = gridWindow(b.codes, b.zero, 0, 15);
      expect(hi - lo).toBe(7);
      for (const q of a.codes) expect(q >= lo && q <= hi).toBe(true);
      for (let i = 0; i < a.codes.length; i++) if (a.codes[i] !== b.codes[i]) changed++;
    }
    expect(changed).toBeGreaterThan(0);
    expect(encodeInline(model).length).toBe(bytes);
    const ortAfter = await ortBlockLosses(model, feeds);
    expect(ortAfter.at(-1)!).toBeLessThan(ortBefore.at(-1)!);
  }, 120_000);

  it('is deterministic: two runs write the same bytes', async () => {
    const encoded: Uint8Array[] = [];
    for (let run = 0; run < 2; run++) {
      const { model, feeds } = await quantized();
      await reconstruct.apply(model, { epochs: 1, lr: 1e-2 }, ctx(model, feeds));
      encoded.push(encodeInline(model));
    }
    expect(Buffer.compare(encoded[0]!, encoded[1]!)).toBe(0);
  }, 120_000);

  it('refuses a model whose residual stream a rotation changed, since its targets are the input model\'s block outputs', async () => {
    const { model, feeds } = await quantized({}, true);
    const run = reconstruct.apply(model, { epochs: 1, lr: 1e-3 }, ctx(model, feeds));
    await expect(run).rejects.toThrow(UserError);
    await expect(run).rejects.toThrow(/differs from that model's by \d+\.\d % .*quantize\.rotate/);
  }, 60_000);

  it('refuses float zero points, whose grid has no integer codes to train, naming the node and the fix', async () => {
    const { model, feeds } = await quantized({ float_zero_points: true });
    const run = reconstruct.apply(model, { epochs: 1, lr: 1e-3 }, ctx(model, feeds));
    await expect(run).rejects.toThrow(UserError);
    await expect(run).rejects.toThrow(/MatMulNBits '[^']+' stores float zero points .*quantize without float_zero_points/);
  }, 60_000);

  it('refuses a model with no MatMulNBits layer among the targets, naming them', async () => {
    const model = readOnnx(FLOAT);
    const feeds = calibrationFeeds(model, await storiesCalibration(join(ROOT, 'fixtures')), 1);
    const run = reconstruct.apply(model, { epochs: 1, lr: 1e-3 }, ctx(model, feeds, linears(model)));
    await expect(run).rejects.toThrow(UserError);
    await expect(run).rejects.toThrow(/targets matched no MatMulNBits layer/);
  });
});
