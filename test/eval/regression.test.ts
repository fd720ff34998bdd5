import { mkdirSync, writeFileSync } from 'node:fs';
import sharp from 'sharp';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RegressionAccumulator, inferDataRange } from '../../src/eval/regression.js';
import { ssimPlane } from '../../src/eval/ssim.js';
import { DataType } from '../../src/model/dtype.js';
import { makeNode } from '../../src/model/graph.js';
import { Model } from '../../src/model/model.js';
import { writeOnnx } from '../../src/model/onnx-io.js';
import { checkBudgets } from '../../src/report/budget.js';
import { runCli } from '../cli/run-cli.js';
import { npy } from '../data/build.js';
import { tempDir } from '../helpers.js';
import { rng } from '../reference/random.js';
import { referenceSsim } from '../reference/ssim.js';

const tmp = tempDir('pare-regress-');
afterAll(() => tmp.cleanup());

/** y = x·a + b elementwise on input x of `dims` (batch symbolic): an image-to-image model when dims has 3 axes. */
function affineModel(name: string, dims: number[], a: number, b: number): string {
  const scalar = (n: string, v: number) => ({ name: n, data_type: DataType.FLOAT, dims: [], raw_data: new Uint8Array(Float32Array.of(v).buffer) });
  const shape = { dim: [{ dim_param: 'N' }, ...dims.map((d) => ({ dim_value: d }))] };
  const path = join(tmp.dir, name);
  const model = new Model(
    {
      ir_version: 8,
      opset_import: [{ domain: '', version: 13 }],
      graph: {
        name,
        node: [makeNode('Mul', ['x', 'a'], ['ax'], 'mul'), makeNode('Add', ['ax', 'b'], ['y'], 'add')],
        initializer: [scalar('a', a), scalar('b', b)],
        input: [{ name: 'x', type: { tensor_type: { elem_type: DataType.FLOAT, shape } } }],
        output: [{ name: 'y', type: { tensor_type: { elem_type: DataType.FLOAT, shape } } }],
      },
    },
    path,
  );
  writeOnnx(model, path);
  return path;
}

describe('SSIM and PSNR', () => {
  it('SSIM equals a float64 direct-window reference on small images (|Δ| ≤ 1e-12), and SSIM(x, x) = 1', () => {
    const r = rng(5);
    for (const [h, w, range] of [[16, 16, 1], [13, 20, 255], [11, 11, 1]] as const) {
      const x = Float64Array.from({ length: h * w }, () => r() * range);
      const y = x.map((v) => Math.min(range, Math.max(0, v + (r() - 0.5) * 0.2 * range)));
      expect(Math.abs(ssimPlane(x, y, h, w, range)! - referenceSsim(x, y, h, w, range))).toBeLessThanOrEqual(1e-12); // measured ~1e-16
      expect(ssimPlane(x, x, h, w, range)).toBeCloseTo(1, 14);
    }
    expect(ssimPlane(new Float64Array(100), new Float64Array(100), 10, 10, 1)).toBeUndefined();
  });

  it('MSE, RMSE and PSNR = 10·log10(L²/MSE) of a known error; the data range follows the targets', () => {
    const acc = new RegressionAccumulator('regression', 'targets');
    acc.add([1, 2, 3, 4], [1, 2, 3, 6]);
    acc.add([0, 0, 0, 0], [0, 0, 0, 0]);
    const q = acc.result();
    expect(q.mse).toBe(0.5);
    expect(q.rmse).toBeCloseTo(Math.SQRT1_2, 15);
    expect(q.data_range).toBe(255);
    expect(q.psnr).toBeCloseTo(10 * Math.log10((255 * 255) / 0.5), 12);
    expect([q.samples, q.values]).toEqual([2, 8]);
    expect(inferDataRange([0, 0.5, 1])).toBe(1);
  });
});

describe('metrics by task in pare eval', () => {
  const n = 3;
  const [c, h, w] = [1, 16, 16];
  const r = rng(11);
  const x = Float32Array.from({ length: n * c * h * w }, () => r());
  const data = join(tmp.dir, 'x.npy');
  writeFileSync(data, npy('<f4', [n, c, h, w], x));
  const reference = affineModel('identity.onnx', [c, h, w], 1, 0);
  const shifted = affineModel('shifted.onnx', [c, h, w], 1, 0.1);

  it('an [N, C, H, W] output is image-to-image: against the reference, MSE 0.01, RMSE 0.1, PSNR 20 dB (range 1), SSIM as the reference implementation gives', async () => {
    const res = await runCli(['eval', shifted, '--data', data, '--reference', reference, '--no-latency', '--json']);
    expect(res.code, res.err).toBe(0);
    const q = JSON.parse(res.out).measurements.model.quality;
    expect(q).toMatchObject({ task: 'image-to-image', against: 'reference', data_range: 1, samples: n, values: n * h * w });
    expect(q.mse).toBeCloseTo(0.01, 6); // float32 adds of 0.1
    expect(q.rmse).toBeCloseTo(0.1, 5);
    expect(q.psnr).toBeCloseTo(20, 3);
    let ssim = 0;
    for (let s = 0; s < n; s++) {
      const plane = Array.from(x.subarray(s * h * w, (s + 1) * h * w));
      ssim += referenceSsim(plane.map((v) => Math.fround(v + 0.1)), plane, h, w, 1) / n;
    }
    expect(q.ssim).toBeCloseTo(ssim, 6);
  });

  it('with targets both models are scored against them, and --max-psnr-drop budgets the change', async () => {
    const targets = join(tmp.dir, 't.npy');
    writeFileSync(targets, npy('<f4', [n, c, h, w], x.map((v) => v + 0.05)));
    const res = await runCli(['eval', shifted, '--data', data, '--targets', targets, '--reference', reference, '--no-latency', '--json']);
    expect(res.code, res.err).toBe(0);
    const report = JSON.parse(res.out);
    const m = report.measurements;
    expect(m.model.quality.against).toBe('targets');
    // both are 0.05 off the targets
    expect(m.model.quality.rmse).toBeCloseTo(0.05, 5);
    expect(m.reference.quality.rmse).toBeCloseTo(0.05, 5);
    expect(checkBudgets(m.reference, m.model, { max_psnr_drop: { kind: 'absolute', value: 0.01 } })[0]!.ok).toBe(true);
    const worse = { ...m.model, quality: { ...m.model.quality, psnr: m.model.quality.psnr - 1 } };
    const check = checkBudgets(m.reference, worse, { max_psnr_drop: { kind: 'absolute', value: 0.5 } })[0]!;
    expect(check).toMatchObject({ metric: 'psnr_db', ok: false });
    expect(check.change).toBeCloseTo(m.reference.quality.psnr - worse.quality.psnr, 9);
  });

  it('pare report diff --max-psnr-drop fails (exit 3) when the new model is further from the targets', async () => {
    const targets = join(tmp.dir, 't2.npy');
    writeFileSync(targets, npy('<f4', [n, c, h, w], x.map((v) => v + 0.05)));
    const [a, b] = [join(tmp.dir, 'a.json'), join(tmp.dir, 'b.json')];
    expect((await runCli(['eval', reference, '--data', data, '--targets', targets, '--no-latency', '-o', a])).code).toBe(0);
    expect((await runCli(['eval', affineModel('far.onnx', [c, h, w], 1, 0.2), '--data', data, '--targets', targets, '--no-latency', '-o', b])).code).toBe(0);
    const ok = await runCli(['report', 'diff', a, b, '--max-psnr-drop', '10']);
    expect(ok.code, ok.err).toBe(0);
    const res = await runCli(['report', 'diff', a, b, '--max-psnr-drop', '1', '--max-rmse-increase', '0.2']);
    expect(res.code).toBe(3);
    // rmse 0.05 -> 0.15: PSNR falls by 20·log10(3) = 9.54 dB; RMSE rises 0.1, inside its budget
    expect(res.err).toMatch(/budget failed: max_psnr_drop 1: PSNR dB [\d.]+ -> [\d.]+ \(drop \+9\.54\d*\)/);
    expect(res.err).not.toMatch(/max_rmse_increase/);
  });

  it('an image folder with a folder of same-named target images: the error of the outputs against the targets, in the data\'s scale', async () => {
    const [lr, hr] = [join(tmp.dir, 'lr'), join(tmp.dir, 'hr')];
    mkdirSync(lr);
    mkdirSync(hr);
    for (let s = 0; s < n; s++) {
      const px = Uint8Array.from({ length: h * w }, () => Math.floor(r() * 200));
      await sharp(Buffer.from(px), { raw: { width: w, height: h, channels: 1 } }).png().toFile(join(lr, `${s}.png`));
      await sharp(Buffer.from(px.map((v) => v + 10)), { raw: { width: w, height: h, channels: 1 } }).png().toFile(join(hr, `${s}.png`));
    }
    const res = await runCli(['eval', reference, '--data', lr, '--targets', hr, '--color', 'gray', '--preset', '0to1', '--no-latency', '--json']);
    expect(res.code, res.err).toBe(0);
    const report = JSON.parse(res.out);
    const q = report.measurements.model.quality;
    expect(q).toMatchObject({ task: 'image-to-image', against: 'targets', data_range: 1, samples: n });
    expect(q.rmse).toBeCloseTo(10 / 255, 6);
    expect(q.psnr).toBeCloseTo(20 * Math.log10(25.5), 4);
    expect(report.data.description).toMatch(/; targets hr 1×16×16 \(same names, gray, nchw, scale 0\.00392157\)$/);
  });

  it('--task regression on a classifier-shaped output; a 3-axis output is regression by default', async () => {
    const flat = join(tmp.dir, 'flat.npy');
    writeFileSync(flat, npy('<f4', [n, 4], Float32Array.from({ length: n * 4 }, (_, i) => i)));
    const res = await runCli(['eval', affineModel('flat-shift.onnx', [4], 1, 2), '--data', flat, '--reference', affineModel('flat-id.onnx', [4], 1, 0), '--task', 'regression', '--no-latency', '--json']);
    expect(res.code, res.err).toBe(0);
    expect(JSON.parse(res.out).measurements.model.quality).toMatchObject({ task: 'regression', mse: 4, rmse: 2, data_range: 255 });
    const cube = join(tmp.dir, 'cube.npy');
    writeFileSync(cube, npy('<f4', [n, 2, 3], new Float32Array(n * 6)));
    const r3 = await runCli(['eval', affineModel('cube.onnx', [2, 3], 2, 0), '--data', cube, '--reference', affineModel('cube-id.onnx', [2, 3], 1, 0), '--no-latency', '--json']);
    expect(JSON.parse(r3.out).measurements.model.quality).toMatchObject({ task: 'regression', mse: 0 });
  });

  it('neither labels, targets nor a reference: one warning line on stderr and in the report, no quality', async () => {
    const res = await runCli(['eval', shifted, '--data', data, '--no-latency', '--json']);
    expect(res.code).toBe(0);
    expect(res.err.trim().split('\n')).toHaveLength(1);
    expect(res.err).toMatch(/^warning: .*x\.npy: no labels, no targets and no reference model, so no quality number/);
    const report = JSON.parse(res.out);
    expect(report.measurements.model.quality).toBeUndefined();
    expect(report.warnings[0]).toMatch(/no labels, no targets and no reference model/);
  });
});
