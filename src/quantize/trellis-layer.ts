import type { InputStats } from '../calibrate/stats.js';
import { matmul } from '../linalg/gemm.js';
import { obsBlockLoop } from '../obs/block-loop.js';
import { prepareHessian } from '../obs/hessian.js';
import { madCodebook, packStates, type TrellisShape, viterbi } from './trellis-code.js';
import { rotationMatrix } from './trellis-rotation.js';

/**
 * One layer of quantize.trellis: rotate W [rows, cols] (outputs × inputs) into W' = Q_out·W·Q_inᵀ
 * (trellis-rotation.ts) and the calibration Gram matrix into Q_in·XᵀX·Q_inᵀ, scale W' to unit rms,
 * then run GPTQ's column loop (obs/block-loop.ts) with a trellis "vector" quantizer per column: the
 * column's rows are one Viterbi segment, continuing the stream where the previous column ended, and
 * the column's error is compensated on the later columns through the rotated inverse Hessian as GPTQ
 * does (LDLQ with one trellis per column, as QTIP's BlockLDLQ with tiles one column wide).
 *
 * The stream stores the states column-major (column 0's rows, then column 1's, …), so the decoded
 * values fill W'ᵀ [cols, rows] row by row.
 */
export interface TrellisLayer {
  shape: TrellisShape;
  rows: number;
  cols: number;
  /** seeds of Q_out and Q_in */
  seeds: { out: number; in: number };
  /** W' ≈ scale · c(states) */
  scale: number;
  /** the packed stream (trellis-code.ts packStates) */
  stream: Uint8Array;
  /** Ŵ [rows, cols] as ORT rebuilds it (float32) */
  weight: Float32Array;
  /** GPTQ's OBS estimate of the output error */
  loss: number;
}

export interface TrellisOptions {
  shape: TrellisShape;
  seeds: { out: number; in: number };
  dampening: number;
  blockSize: number;
  /** the rms of W' is multiplied by this to give the scale (the codebook has unit variance) */
  scaleFactor: number;
  pass: string;
  layer: string;
}

/** Q·M·Pᵀ for Q [a, a], M [a, b], P [b, b] (float32 via the shared GEMM). */
async function sandwich(Q: Float32Array, M: Float32Array, P: Float32Array, a: number, b: number, transposeOuter: boolean): Promise<Float32Array> {
  // transposeOuter: Qᵀ·M·P instead (the inverse rotation)
  const Qx = transposeOuter ? transpose(Q, a, a) : Q;
  const Px = transposeOuter ? P : transpose(P, b, b);
  const left = await matmul(Qx, M, a, a, b);
  return matmul(left, Px, a, b, b);
}

export function transpose(M: Float32Array, rows: number, cols: number): Float32Array {
  const T = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) T[c * rows + r] = M[r * cols + c]!;
  return T;
}

/** Q_in·XᵀX·Q_inᵀ in float64 (the Hessian stays float64 as everywhere in obs/). */
function rotateGram(xtx: Float64Array, Q: Float32Array, n: number): Float64Array {
  const tmp = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const q = Q[i * n + k]!;
      if (q === 0) continue;
      for (let j = 0; j < n; j++) tmp[i * n + j]! += q * xtx[k * n + j]!;
    }
  }
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += tmp[i * n + k]! * Q[j * n + k]!;
      out[i * n + j] = s;
    }
  }
  return out;
}

export async function trellisQuantizeLayer(W: Float32Array, rows: number, cols: number, stats: InputStats, opts: TrellisOptions): Promise<TrellisLayer> {
  const { shape } = opts;
  const Qout = rotationMatrix(rows, opts.seeds.out);
  const Qin = rotationMatrix(cols, opts.seeds.in);
  const rotated = await sandwich(Qout, W, Qin, rows, cols, false);
  let sq = 0;
  for (const v of rotated) sq += v * v;
  const scale = Math.fround(Math.sqrt(sq / rotated.length) * opts.scaleFactor) || 1;
  const target = rotated.map((v) => v / scale);
  const rotatedStats: InputStats = { tensor: stats.tensor, dim: cols, rows: stats.rows, xtx: rotateGram(stats.xtx!, Qin, cols) };
  const prepared = await prepareHessian(rotatedStats, target, rows, { dampening: opts.dampening, pass: opts.pass, layer: opts.layer });
  const code = madCodebook(shape.L);
  const states = new Int32Array(rows * cols);
  let last: number | undefined;
  const { loss } = await obsBlockLoop(target, rows, cols, prepared.Hinv, opts.blockSize, {
    column(i, w, q) {
      const path = viterbi(w, code, shape, last);
      for (let r = 0; r < rows; r++) q[r] = code[path.states[r]!]!;
      states.set(path.states, i * rows);
      last = path.states[rows - 1];
    },
  });
  const decoded = new Float32Array(rows * cols);
  for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) decoded[r * cols + c] = Math.fround(code[states[c * rows + r]!]! * scale);
  const weight = await sandwich(Qout, decoded, Qin, rows, cols, true);
  return { shape, rows, cols, seeds: opts.seeds, scale, stream: packStates(states, shape), weight, loss };
}
