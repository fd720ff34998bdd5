import { describe, expect, it } from 'vitest';
import { kroneckerDense, nearestKronecker, type KroneckerFactors } from '../../src/decompose/kronecker-math.js';
import { weightedKronecker, weightedObjective } from '../../src/decompose/kronecker-weighted.js';
import { random } from './kronecker-fixtures.js';

/** XᵀX (float64 loop) of `rows` samples whose channels have very different scales, as activations do */
function hessian(n: number, rows: number, seed: number): Float64Array {
  const X = random(rows * n, seed);
  for (let t = 0; t < rows; t++) for (let c = 0; c < n; c++) X[t * n + c] *= 1 + 20 * (c % 7 === 0 ? 1 : 0) + c / n;
  const H = new Float64Array(n * n);
  for (let t = 0; t < rows; t++) for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) H[a * n + b] += X[t * n + a]! * X[t * n + b]!;
  return H;
}

/** ∂f/∂B_r[k,l] = Σ_{i,j} G[(i,k),(j,l)]·A_r[i,j] with G = −2 (W − Ŵ) H, by plain loops */
function gradientB(W: Float64Array, H: Float64Array, f: KroneckerFactors): number {
  const { m1, n1, m2, n2 } = f.shape;
  const m = m1 * m2;
  const n = n1 * n2;
  const approx = kroneckerDense(f);
  const G = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let c = 0; c < n; c++) {
    let s = 0;
    for (let d = 0; d < n; d++) s += (W[i * n + d]! - approx[i * n + d]!) * H[d * n + c]!;
    G[i * n + c] = -2 * s;
  }
  let norm = 0;
  f.A.forEach((A) => {
    for (let k = 0; k < m2; k++) for (let l = 0; l < n2; l++) {
      let g = 0;
      for (let i = 0; i < m1; i++) for (let j = 0; j < n1; j++) g += G[(i * m2 + k) * n + j * n2 + l]! * A[i * n1 + j]!;
      norm += g * g;
    }
  });
  return Math.sqrt(norm);
}

describe('output-aware Kronecker factors (alternating least squares)', () => {
  const shape = { m1: 4, n1: 6, m2: 8, n2: 5 };
  const m = 32;
  const n = 30;
  const W = random(m * n, 1);

  it('with H = I equals the plain Van Loan–Pitsianis error', async () => {
    const H = new Float64Array(n * n);
    for (let i = 0; i < n; i++) H[i * n + i] = 1;
    for (const terms of [1, 3]) {
      const plain = await nearestKronecker(W, shape, terms);
      const plainError = W.reduce((a, w, i) => a + (w - kroneckerDense(plain)[i]!) ** 2, 0);
      const fit = await weightedKronecker(W, H, plain, 10);
      expect(Math.abs(fit.objectiveBefore - plainError)).toBeLessThanOrEqual(1e-12 * plainError);
      expect(Math.abs(fit.objective - plainError)).toBeLessThanOrEqual(1e-9 * plainError); // measured: equal to rounding
    }
  });

  it('lowers the output error tr((W − Ŵ) H (W − Ŵ)ᵀ) below the plain solution on the same H', async () => {
    const H = hessian(n, 200, 2);
    for (const terms of [1, 2]) {
      const plain = await nearestKronecker(W, shape, terms);
      const fit = await weightedKronecker(W, H, plain, 20);
      const plainObjective = await weightedObjective(W, kroneckerDense(plain), H, m, n);
      const objective = await weightedObjective(W, kroneckerDense(fit.factors), H, m, n);
      console.log(`R = ${terms}: output error plain ${plainObjective.toFixed(3)}, weighted ${objective.toFixed(3)} after ${fit.iterations} iterations`);
      expect(Math.abs(fit.objective - objective)).toBeLessThanOrEqual(1e-9 * objective);
      expect(objective).toBeLessThan(0.95 * plainObjective); // measured: see the log line
    }
  });

  it('each step is the exact least-squares minimiser: the B-gradient vanishes after a B-step', async () => {
    const H = hessian(n, 200, 3);
    const plain = await nearestKronecker(W, shape, 2);
    const fit = await weightedKronecker(W, H, plain, 1);
    expect(fit.iterations).toBe(1);
    expect(gradientB(W, H, fit.factors)).toBeLessThan(1e-8 * gradientB(W, H, plain));
  });
});

describe('output-aware Kronecker factors on rank-like shapes (the separable solves)', () => {
  // m×1 ⊗ 1×n and one-sided cases: N = G ⊗ H on one side, an R×R normal matrix on the other
  const shapes = [
    { m1: 1, n1: 12, m2: 10, n2: 1 },
    { m1: 10, n1: 1, m2: 1, n2: 12 },
    { m1: 4, n1: 6, m2: 5, n2: 1 },
    { m1: 4, n1: 1, m2: 5, n2: 6 },
  ];
  for (const shape of shapes) {
    it(`equal the full (R·n)² solves within rounding: ${shape.m1}×${shape.n1} ⊗ ${shape.m2}×${shape.n2}`, async () => {
      const m = shape.m1 * shape.m2;
      const n = shape.n1 * shape.n2;
      const W = random(m * n, 5);
      const H = hessian(n, 100, 6);
      for (let i = 0; i < n; i++) H[i * n + i] += 1e-3;
      const terms = Math.min(3, shape.m1 * shape.n1, shape.m2 * shape.n2);
      const plain = await nearestKronecker(W, shape, terms);
      const fast = await weightedKronecker(W, H, plain, 4);
      const full = await weightedKronecker(W, H, plain, 4, { separable: false });
      expect(fast.iterations).toBe(full.iterations);
      expect(Math.abs(fast.objective - full.objective)).toBeLessThanOrEqual(1e-9 * full.objective); // measured ≤ 1e-12
      const a = kroneckerDense(fast.factors);
      const b = kroneckerDense(full.factors);
      let diff = 0;
      let norm = 0;
      for (let i = 0; i < a.length; i++) (diff += (a[i]! - b[i]!) ** 2), (norm += b[i]! ** 2);
      expect(Math.sqrt(diff / norm)).toBeLessThan(1e-8); // Ŵ itself, not just f
      expect(fast.objective).toBeLessThan(fast.objectiveBefore);
    });
  }
});
