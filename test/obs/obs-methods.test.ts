import { describe, expect, it } from 'vitest';
import type { InputStats } from '../../src/calibrate/stats.js';
import { prepareHessian } from '../../src/obs/hessian.js';
import { seededRandom } from '../../src/util/random.js';
import { magnitudePrune } from '../../src/prune/magnitude.js';
import { parsePattern } from '../../src/prune/masks.js';
import { sparsegptPrune } from '../../src/prune/sparsegpt.js';
import { wandaPrune } from '../../src/prune/wanda.js';
import { dequantizeMatrix, quantizeMatrix } from '../../src/quantize/grid.js';
import { gptqQuantize } from '../../src/quantize/gptq.js';
import { reconstructionError } from '../../src/obs/output-error.js';

/** Seeded normal samples (Box–Muller). */
function normals(n: number, seed: number): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()));
}

/** X [n, d] with correlated features and a few large-magnitude channels, like transformer activations. */
function activations(n: number, d: number, seed: number): Float32Array {
  const Z = normals(n * d, seed);
  const mix = normals(d * d, seed + 1);
  const X = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      let s = Z[i * d + j]!;
      for (let k = 0; k < 4; k++) s += 0.5 * Z[i * d + ((j + k * 7) % d)]! * mix[j * d + k]!;
      X[i * d + j] = s * (j % 13 === 0 ? 6 : 1);
    }
  }
  return X;
}

function statsOf(X: Float32Array, n: number, d: number): InputStats {
  const xtx = new Float64Array(d * d);
  const sqnorm = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < d; a++) {
      const xa = X[i * d + a]!;
      sqnorm[a] += xa * xa;
      for (let b = 0; b < d; b++) xtx[a * d + b] += xa * X[i * d + b]!;
    }
  }
  return { tensor: 'x', dim: d, rows: n, xtx, sqnorm };
}

/** ‖(W − Ŵ) Xᵀ‖² in float64: the layer output error the methods minimise. */
function outputError(W: Float32Array, Wq: Float32Array, rows: number, d: number, xtx: Float64Array): number {
  let total = 0;
  const dw = new Float64Array(d);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < d; j++) dw[j] = W[r * d + j]! - Wq[r * d + j]!;
    for (let a = 0; a < d; a++) {
      if (dw[a] === 0) continue;
      let s = 0;
      for (let b = 0; b < d; b++) s += xtx[a * d + b]! * dw[b]!;
      total += dw[a]! * s;
    }
  }
  return total;
}

const rows = 48;
const d = 96;
const n = 1024;
const X = activations(n, d, 3);
const stats = statsOf(X, n, d);
const W0 = normals(rows * d, 9);

function identityStats(c: number): InputStats {
  const xtx = new Float64Array(d * d);
  for (let j = 0; j < d; j++) xtx[j * d + j] = (c * n) / 2;
  return { tensor: 'x', dim: d, rows: n, xtx };
}

describe('SparseGPT', () => {
  it('with H = cI picks the magnitude mask within each block and changes no kept weight', async () => {
    const W = W0.slice();
    const { Hinv } = await prepareHessian(identityStats(3), W, rows, { dampening: 0, pass: 't', layer: 'l' });
    await sparsegptPrune(W, rows, d, Hinv, { sparsity: 0.5, pattern: undefined, blockSize: d });
    const expected = W0.slice();
    magnitudePrune(expected, rows, d, { sparsity: 0.5, pattern: undefined });
    expect(W).toEqual(expected);
  });

  it('2:4 leaves two nonzeros in every four inputs', async () => {
    const W = W0.slice();
    const { Hinv } = await prepareHessian(stats, W, rows, { dampening: 0.01, pass: 't', layer: 'l' });
    await sparsegptPrune(W, rows, d, Hinv, { sparsity: 0, pattern: { n: 2, m: 4 }, blockSize: 32 });
    for (let g = 0; g < W.length; g += 4) expect(W.subarray(g, g + 4).filter((v) => v !== 0).length).toBe(2);
  });

  for (const name of ['unstructured', '2:4']) {
    const pattern = parsePattern(name);
    it(`${name}: layer output error below Wanda's and magnitude's on the same weights`, async () => {
      const sgpt = W0.slice();
      const { Hinv } = await prepareHessian(stats, sgpt, rows, { dampening: 0.01, pass: 't', layer: 'l' });
      await sparsegptPrune(sgpt, rows, d, Hinv, { sparsity: 0.5, pattern, blockSize: 32 });
      const mag = W0.slice();
      magnitudePrune(mag, rows, d, { sparsity: 0.5, pattern });
      const wan = W0.slice();
      wandaPrune(wan, rows, d, stats.sqnorm!, { sparsity: 0.5, pattern });
      const e = (w: Float32Array) => outputError(W0, w, rows, d, stats.xtx!);
      expect(e(sgpt)).toBeLessThan(e(wan));
      expect(e(wan)).toBeLessThan(e(mag));
    });
  }
});

describe('GPTQ', () => {
  it('with a diagonal Hessian equals RTN', async () => {
    for (const granularity of [{ kind: 'channel' }, { kind: 'group', size: 32 }] as const) {
      const W = W0.slice();
      const { Hinv } = await prepareHessian(identityStats(2), W, rows, { dampening: 0, pass: 't', layer: 'l' });
      const { m } = await gptqQuantize(W, rows, d, Hinv, undefined, { bits: 4, granularity, symmetric: true, blockSize: 32 });
      const rtn = quantizeMatrix(W0, rows, d, { bits: 4, granularity, symmetric: true });
      expect(m.q).toEqual(rtn.q);
      expect(m.scales).toEqual(rtn.scales);
    }
  });

  for (const actOrder of [false, true]) {
    it(`4-bit group 32${actOrder ? ' act_order' : ''}: layer output error below RTN's`, async () => {
      const W = W0.slice();
      const prepared = await prepareHessian(stats, W, rows, { dampening: 0.01, actOrder, pass: 't', layer: 'l' });
      const { m } = await gptqQuantize(W, rows, d, prepared.Hinv, prepared.perm, { bits: 4, granularity: { kind: 'group', size: 32 }, symmetric: false, blockSize: 32 });
      const rtn = dequantizeMatrix(quantizeMatrix(W0, rows, d, { bits: 4, granularity: { kind: 'group', size: 32 }, symmetric: false }));
      const e = (w: Float32Array) => outputError(W0, w, rows, d, stats.xtx!);
      expect(e(dequantizeMatrix(m))).toBeLessThan(0.8 * e(rtn));
    });
  }

  it('a Hessian that stays singular after dampening is a user error naming the layer', async () => {
    const zero: InputStats = { tensor: 'x', dim: 2, rows: 4, xtx: Float64Array.from([1, 2, 2, 1]) };
    await expect(prepareHessian(zero, new Float32Array(4), 2, { dampening: 0, pass: 'quantize.gptq', layer: 'layers.3.mlp.down_proj' })).rejects.toThrow(/layers\.3\.mlp\.down_proj.*not positive definite/);
  });
});

describe('prepareHessian', () => {
  it('layers reading the same statistics share one factorization, equal to a fresh one, and each gets its dead columns zeroed', async () => {
    // input 5 never fires: a dead column
    const xtx = stats.xtx!.slice();
    for (let k = 0; k < d; k++) xtx[5 * d + k] = xtx[k * d + 5] = 0;
    const shared: InputStats = { ...stats, xtx };
    const opts = { dampening: 0.01, pass: 'prune.sparsegpt', layer: 'q' };
    const Wq = W0.slice();
    const Wk = normals(16 * d, 10);
    const a = await prepareHessian(shared, Wq, rows, opts);
    const b = await prepareHessian(shared, Wk, 16, { ...opts, layer: 'k' });
    expect(b.Hinv).toBe(a.Hinv);
    expect([a.dead, b.dead]).toEqual([1, 1]);
    for (let r = 0; r < rows; r++) expect(Wq[r * d + 5]).toBe(0);
    for (let r = 0; r < 16; r++) expect(Wk[r * d + 5]).toBe(0);
    const fresh = await prepareHessian({ ...shared, xtx: xtx.slice() }, W0.slice(), rows, opts);
    expect(fresh.Hinv).not.toBe(a.Hinv);
    expect(fresh.Hinv).toEqual(a.Hinv);
    // other options are another factorization
    const damped = await prepareHessian(shared, W0.slice(), rows, { ...opts, dampening: 0.1 });
    expect(damped.Hinv).not.toEqual(a.Hinv);
  });
});

describe('reconstructionError', () => {
  it('equals ‖(W − Ŵ)Xᵀ‖² / n computed by a float64 loop', async () => {
    const Wq = W0.map((v) => Math.round(v * 4) / 4);
    const got = await reconstructionError(W0, Wq, rows, stats);
    const want = outputError(W0, Wq, rows, d, stats.xtx!) / n;
    expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-9 * want); // same float64 sums, different order
  });
});
