import { describe, expect, it } from 'vitest';
import type { InputStats } from '../../src/calibrate/stats.js';
import { MAD_A, MAD_B, madCodebook, type TrellisShape, unpackStates, viterbi } from '../../src/quantize/trellis-code.js';
import { columnExponents, columnMultipliers, trellisQuantizeLayer, type TrellisLayer } from '../../src/quantize/trellis-layer.js';
import { rotationMatrix, rotationSigns } from '../../src/quantize/trellis-rotation.js';
import { allClose } from '../helpers.js';
import { gramRef, matmulRef, outputErrorRef } from '../reference/matmul.js';
import { gaussianMatrix, identityResidual } from '../reference/random.js';

/**
 * quantize.trellis's layer (trellis-layer.ts, trellis-rotation.ts): the DCT rotation against float64
 * DCT-II, the column exponents against a search over the 16 codes, and the layer's Ŵ against a
 * float64 decode of its own stream, against Viterbi on i.i.d. Gaussian data and against a baseline
 * without GPTQ feedback.
 */

/** σ_j by BigInt: the top bit of (MAD_A·h² + MAD_B) mod 2^32, h = seed·2^16 + j */
function signRef(seed: number, j: number): number {
  const h = BigInt(seed * 65536 + j);
  const x = (BigInt(MAD_A) * h * h + BigInt(MAD_B)) % 2n ** 32n;
  return x >= 2n ** 31n ? -1 : 1;
}

/** the orthonormal DCT-II times diag(σ), in float64 */
function rotationRef(n: number, seed: number): Float64Array {
  const Q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const alpha = Math.sqrt((i === 0 ? 1 : 2) / n);
    for (let j = 0; j < n; j++) Q[i * n + j] = alpha * Math.cos((Math.PI * (2 * j + 1) * i) / (2 * n)) * signRef(seed, j);
  }
  return Q;
}

describe('trellis rotation', () => {
  for (const n of [1, 2, 5, 32, 64, 172]) {
    it(`n=${n}: rotationMatrix is orthonormal (QQᵀ = QᵀQ = I within 1e-6) and equals float64 DCT-II·diag(σ) within 1e-6`, () => {
      const Q = rotationMatrix(n, 7);
      expect(identityResidual(matmulRef(Q, Q, n, n, n, false, true), n)).toBeLessThan(1e-6);
      expect(identityResidual(matmulRef(Q, Q, n, n, n, true, false), n)).toBeLessThan(1e-6);
      const c = allClose(Q, rotationRef(n, 7), 0, 1e-6);
      expect(c.ok, c.worst).toBe(true);
    });
  }

  it('the signs behave like fair coin flips: any two of 36 seeds share 25–75 % of 256 signs, and 1024 signs have 400–624 sign changes (n/2 ± 7σ)', () => {
    const seeds = [...Array.from({ length: 32 }, (_, i) => i), 100, 1000, 2046, 2047];
    const signs = seeds.map((seed) => rotationSigns(256, seed));
    for (let a = 0; a < seeds.length; a++) {
      for (let b = a + 1; b < seeds.length; b++) {
        const shared = signs[a]!.filter((v, j) => v === signs[b]![j]).length;
        expect(shared, `seeds ${seeds[a]} and ${seeds[b]}`).toBeGreaterThanOrEqual(64);
        expect(shared, `seeds ${seeds[a]} and ${seeds[b]}`).toBeLessThanOrEqual(192);
      }
    }
    for (const seed of [0, 1, 2047]) {
      const s = rotationSigns(1024, seed);
      let changes = 0;
      for (let j = 1; j < s.length; j++) if (s[j] !== s[j - 1]) changes++;
      expect(changes, `seed ${seed}`).toBeGreaterThanOrEqual(400);
      expect(changes, `seed ${seed}`).toBeLessThanOrEqual(624);
    }
    expect(Array.from(rotationMatrix(64, 0))).not.toEqual(Array.from(rotationMatrix(64, 1)));
  });

  it('n=1024: Q spreads the constant vector (incoherence): max_i (Q·1)_i² < 30 where ‖1‖²/n = 1 (fair signs: ~2 ln n ≈ 14; a square-wave σ puts most of the n on one coefficient)', () => {
    const n = 1024;
    for (const seed of [0, 1, 2047]) {
      const Q = rotationMatrix(n, seed);
      let peak = 0;
      for (let i = 0; i < n; i++) {
        let v = 0;
        for (let j = 0; j < n; j++) v += Q[i * n + j]!;
        peak = Math.max(peak, v * v);
      }
      expect(peak, `seed ${seed}`).toBeLessThan(30); // measured 8.9, 11.0, 8.7 (the LCG's square-wave signs: 783)
    }
  });
});

describe('trellis column exponents', () => {
  it('each column gets the power of 2^(1/4) nearest (in log) its rms ratio, clamped to [−8, 7], by search over the 16 codes; an all-zero column gets −8; multipliers are 2^(e/4) within half a float32 ulp', () => {
    const rows = 48;
    // column factors incl. out-of-range ones (2^-3.2 → −12.8 → −8, 2^2.3 → 9.2 → 7) and an all-zero column
    const factors = [1, 0.5, 2, 1.3, 0.8, 2 ** -3.2, 2 ** 2.3, 0, 1.7, 0.37, 3.1, 0.9];
    const cols = factors.length;
    const g = gaussianMatrix(rows * cols, 11);
    const M = Float32Array.from(g, (v, i) => v * factors[i % cols]!);
    let sq = 0;
    for (const v of M) sq += v * v;
    // against unit rms (the factors are the ratios, give or take a column's sampling spread) and against the matrix's rms, as the layer calls it
    for (const rms of [1, Math.sqrt(sq / M.length)]) {
      const e = columnExponents(M, rows, cols, rms);
      const m = columnMultipliers(e);
      for (let c = 0; c < cols; c++) {
        let colSq = 0;
        for (let r = 0; r < rows; r++) colSq += M[r * cols + c]! ** 2;
        const logRatio = Math.log(Math.sqrt(colSq / rows) / rms); // −∞ for the zero column
        let best = -8;
        for (let code = -7; code <= 7; code++) if (Math.abs(logRatio - (code / 4) * Math.LN2) < Math.abs(logRatio - (best / 4) * Math.LN2)) best = code;
        expect(e[c], `rms ${rms}, column ${c} (factor ${factors[c]})`).toBe(best);
        expect(Math.abs(m[c]! - 2 ** (best / 4))).toBeLessThanOrEqual(2 ** -24 * 2 ** (best / 4));
      }
      expect(e[7]).toBe(-8);
      if (rms === 1) expect([e[5], e[6]]).toEqual([-8, 7]);
    }
  });
});

/** Ŵ = Q_outᵀ·D·Q_in in float64, D[r, c] = c(state_{c·rows + r})·scale·2^(e_c/4) decoded from the layer's own stream */
function decodeRef(t: TrellisLayer): Float64Array {
  const { rows, cols, shape } = t;
  const states = unpackStates(t.stream, rows * cols, shape);
  const code = madCodebook(shape.L);
  const D = new Float64Array(rows * cols);
  for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) D[r * cols + c] = code[states[c * rows + r]!]! * t.scale * 2 ** (t.exponents[c]! / 4);
  const left = t.seeds.out < 0 ? D : matmulRef(rotationMatrix(rows, t.seeds.out), D, rows, rows, cols, true, false);
  return t.seeds.in < 0 ? left : matmulRef(left, rotationMatrix(cols, t.seeds.in), rows, cols, cols);
}

function expectDecodes(t: TrellisLayer): void {
  const ref = decodeRef(t);
  const peak = ref.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
  const c = allClose(t.weight, ref, 0, 1e-5 * peak);
  expect(c.ok, c.worst).toBe(true);
  expect(c.relFro).toBeLessThan(1e-5);
}

function relativeError(W: ArrayLike<number>, Wq: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < W.length; i++) {
    num += (W[i]! - Wq[i]!) ** 2;
    den += W[i]! ** 2;
  }
  return num / den;
}

const options = (shape: TrellisShape, seeds: { out: number; in: number }, feedback = true) => ({ shape, seeds, dampening: 0.01, blockSize: 16, scaleFactor: 1, pass: 'quantize.trellis', layer: 'test', feedback });

/**
 * The best code of the rotated weight without feedback, built here: W' = Q_out·W·Q_inᵀ in float64,
 * each column divided by the layer's scale·2^(e_c/4), and one Viterbi over the whole column-major
 * stream (the optimum over every stream the decoder reads); returns Q_outᵀ·D·Q_in.
 */
function oneStreamBaseline(W: Float32Array, t: TrellisLayer): Float64Array {
  const { rows, cols, shape } = t;
  const Qout = rotationMatrix(rows, t.seeds.out);
  const Qin = rotationMatrix(cols, t.seeds.in);
  const rotated = matmulRef(matmulRef(Qout, W, rows, rows, cols), Qin, rows, cols, cols, false, true);
  const colScale = Array.from(t.exponents, (e) => t.scale * 2 ** (e / 4));
  const stream = new Float64Array(rows * cols);
  for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) stream[c * rows + r] = rotated[r * cols + c]! / colScale[c]!;
  const code = madCodebook(shape.L);
  const { states } = viterbi(stream, code, shape);
  const D = new Float64Array(rows * cols);
  for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) D[r * cols + c] = code[states[c * rows + r]!]! * colScale[c]!;
  return matmulRef(matmulRef(Qout, D, rows, rows, cols, true, false), Qin, rows, cols, cols);
}

describe('trellisQuantizeLayer', () => {
  const shape = { L: 12, k: 2 };

  it('identity XᵀX, both sides rotated, Gaussian W 64×64: relative error within 10 % of Viterbi\'s MSE on 4096 N(0,1) samples and within 3 % of one Viterbi over the whole stream; Ŵ is the float64 decode of its stream (relative 1e-5); scale is rms(W); feedback changes nothing', async () => {
    const [rows, cols, n] = [64, 64, 256];
    const W = Float32Array.from(gaussianMatrix(rows * cols, 31), (v) => 0.05 * v);
    const xtx = new Float64Array(cols * cols);
    for (let i = 0; i < cols; i++) xtx[i * cols + i] = n;
    const stats: InputStats = { tensor: 'x', dim: cols, rows: n, xtx };
    const t = await trellisQuantizeLayer(W, rows, cols, stats, options(shape, { out: 3, in: 4 }));
    expectDecodes(t);
    // the rotation keeps the Frobenius norm, so the rms of W' is W's
    const rms = Math.sqrt(W.reduce((a, v) => a + v * v, 0) / W.length);
    expect(Math.abs(t.scale - rms)).toBeLessThan(1e-5 * rms);
    // a diagonal Hessian propagates no error: the same stream as without feedback
    expect((await trellisQuantizeLayer(W, rows, cols, stats, options(shape, { out: 3, in: 4 }, false))).stream).toEqual(t.stream);
    const samples = gaussianMatrix(4096, 2024);
    const gaussianMse = viterbi(samples, madCodebook(shape.L), shape).error / samples.length;
    const rel = relativeError(W, t.weight);
    const oneStream = relativeError(W, oneStreamBaseline(W, t));
    expect(Math.abs(rel / gaussianMse - 1)).toBeLessThan(0.1); // measured 0.0753 / 0.0766 = 0.983 (without the lookahead: 1.20)
    expect(rel / oneStream).toBeLessThan(1.03); // measured 0.0753 / 0.0743 = 1.014 (without the lookahead: 1.24)
  });

  it('with correlated inputs, GPTQ feedback lowers the output error ‖(W − Ŵ)Xᵀ‖² below the best code of the same rotated, scaled weight without feedback (one Viterbi over the whole stream)', async () => {
    const [rows, cols, n] = [32, 64, 512];
    // X [n, cols]: four dominant directions (singular values ~20, 12, 8, 5 per √n) plus small isotropic noise
    const dominant = [20, 12, 8, 5];
    const G = gaussianMatrix(n * dominant.length, 41);
    const V = gaussianMatrix(dominant.length * cols, 42);
    const noise = gaussianMatrix(n * cols, 43);
    const X = new Float64Array(n * cols);
    for (let s = 0; s < n; s++) {
      for (let j = 0; j < cols; j++) {
        let v = 0.1 * noise[s * cols + j]!;
        for (let d = 0; d < dominant.length; d++) v += (dominant[d]! / Math.sqrt(cols)) * G[s * dominant.length + d]! * V[d * cols + j]!;
        X[s * cols + j] = v;
      }
    }
    const W = Float32Array.from(gaussianMatrix(rows * cols, 44));
    const stats: InputStats = { tensor: 'x', dim: cols, rows: n, xtx: gramRef(X, n, cols) };
    const t = await trellisQuantizeLayer(W, rows, cols, stats, options(shape, { out: 5, in: 6 }));
    expectDecodes(t);
    const withFeedback = outputErrorRef(W, t.weight, X, n, rows, cols);
    const without = outputErrorRef(W, oneStreamBaseline(W, t), X, n, rows, cols);
    expect(withFeedback).toBeLessThan(0.25 * without); // measured 3.29e4 / 1.05e6 = 0.031 (the layer with feedback: false: 7.5e5)
  });

  for (const [rotate, seeds] of [
    ['none', { out: -1, in: -1 }],
    ['inputs', { out: -1, in: 9 }],
    ['outputs', { out: 9, in: -1 }],
  ] as const) {
    it(`rotate ${rotate} (seeds ${seeds.out}, ${seeds.in}): Ŵ is the float64 decode of its stream with only those rotations (relative 1e-5; none: the float32 decode exactly)`, async () => {
      const [rows, cols, n] = [24, 40, 128];
      const W = Float32Array.from(gaussianMatrix(rows * cols, 51));
      const X = gaussianMatrix(n * cols, 52);
      const t = await trellisQuantizeLayer(W, rows, cols, { tensor: 'x', dim: cols, rows: n, xtx: gramRef(X, n, cols) }, options({ L: 8, k: 3 }, seeds));
      expect(t.seeds).toEqual(seeds);
      expectDecodes(t);
      if (rotate === 'none') {
        // no rotation on either side: Ŵ is the float32 decode itself, bit for bit
        const states = unpackStates(t.stream, rows * cols, t.shape);
        const code = madCodebook(t.shape.L);
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) expect(t.weight[r * cols + c]).toBe(Math.fround(code[states[c * rows + r]!]! * Math.fround(t.scale * Math.fround(2 ** (t.exponents[c]! / 4)))));
      }
    });
  }
});
