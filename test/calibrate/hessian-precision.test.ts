import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Calibrator } from '../../src/calibrate/calibrator.js';
import { calibrationFeeds, type Feeds } from '../../src/calibrate/feeds.js';
import type { InputStats } from '../../src/calibrate/stats.js';
import { linears, type LinearLayer } from '../../src/model/linears.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { allClose } from '../helpers.js';
import { storiesCalibration } from '../quantize/models.js';

/**
 * XᵀX from float32 products of ≤ 4096 rows summed in float64 (the default) against float64 products,
 * on stories260K's real activations: the calibration text of the float64-reference comparison
 * (test/obs/reference.test.ts), 128 × 128 tokens, so every statistic sums 4 float32 products.
 */

const ROOT = resolve(__dirname, '../..');

/** relative Frobenius bound on every layer input; measured worst 1.2e-7 (oneshot and sequential) */
const RELFRO = 1e-6;

function expectClose(a: Map<string, InputStats>, b: Map<string, InputStats>): number {
  let worst = 0;
  for (const [name, ref] of b) {
    const got = a.get(name)!;
    expect(got.rows).toBe(ref.rows);
    const scale = ref.xtx!.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const c = allClose(got.xtx!, ref.xtx!, 1e-5, 1e-6 * scale);
    expect(c.ok, `${name}: ${c.worst}`).toBe(true);
    expect(c.relFro, name).toBeLessThan(RELFRO);
    worst = Math.max(worst, c.relFro);
  }
  return worst;
}

describe('hessian_precision on stories260K activations', () => {
  let model: ReturnType<typeof readOnnx>;
  let layers: LinearLayer[];
  let feeds: Feeds[];

  beforeAll(async () => {
    model = readOnnx(join(ROOT, 'fixtures/stories260K/model.onnx'));
    const data = await storiesCalibration(join(ROOT, 'fixtures'));
    layers = linears(model).filter((l) => l.name.startsWith('layers.'));
    feeds = calibrationFeeds(model, data, 128);
  });

  it('float32 products summed in float64 equal float64 products within 1e-6 (oneshot)', async () => {
    const f32 = await new Calibrator(feeds, 'oneshot', 1).collect(model, layers, { hessian: true });
    const f64 = await new Calibrator(feeds, 'oneshot', 1, { hessianPrecision: 'float64' }).collect(model, layers, { hessian: true });
    expect(f64.size).toBe(new Set(layers.map((l) => l.input)).size);
    const worst = expectClose(f32, f64);
    expect(worst).toBeGreaterThan(0); // float32 products did run
  });

  it('sequential block sub-graphs take the precision too', async () => {
    const run = async (hessianPrecision: 'float32' | 'float64') => {
      const out: Map<string, InputStats>[] = [];
      for await (const { stats } of new Calibrator(feeds, 'sequential', 1, { hessianPrecision }).blocks(model, layers, { hessian: true })) out.push(stats);
      return out;
    };
    const [a, b] = [await run('float32'), await run('float64')];
    expect(a.length).toBe(b.length);
    let worst = 0;
    for (const [j, s] of b.entries()) worst = Math.max(worst, expectClose(a[j]!, s));
    expect(worst).toBeGreaterThan(0);
  });
});
