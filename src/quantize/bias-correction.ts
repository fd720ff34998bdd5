import { z } from 'zod';
import { UserError } from '../errors.js';
import type { InputStats } from '../calibrate/stats.js';
import { DataType } from '../model/dtype.js';
import { attr, attrFloat, makeNode } from '../model/graph.js';
import { replaceNode } from '../model/graph-edit.js';
import { addConstant } from '../model/linear-weights.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { toFloat32 } from '../model/pack.js';
import type { LayerProblem } from '../pass/pass.js';
import { type ScaleDtype, storedScale } from './grid.js';

/**
 * Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization Through Weight
 * Equalization and Bias Correction", §4.2): once W is quantized to Ŵ, the layer's output on an
 * input x is off by (W − Ŵ)·x, on average (W − Ŵ)·μ with μ the mean of the calibration inputs.
 * Adding b = (W − Ŵ)·μ to the output makes the mean error over those inputs zero; it is also the
 * bias that minimises the mean squared output error for this Ŵ (the error's least-squares offset).
 *
 * μ is the mean of the inputs the calibrator hands the quantizer: in sequential mode, the inputs
 * the model sees with every earlier block already quantized, which are the inputs this layer will
 * see at run time, and the same inputs GPTQ's XᵀX minimises the error on. The float model's mean
 * input would also correct the shift the earlier blocks' rounding made, a target GPTQ does not
 * have (the GPTAQ experiment in bench/RESULTS.md: chasing the float model's inputs overfits).
 *
 * y = x·W + b is exact for every MatMul and Gemm linear (the bias adds along the output axis);
 * conv layers are refused.
 */

export const BIAS_CORRECTION_FIELD = {
  bias_correction: z
    .boolean()
    .optional()
    .describe('(default false) add b = (W − Ŵ)·μ to each layer\'s output, μ the mean of its calibration inputs, so the quantized layer\'s mean output error on them is zero (Nagel et al. 2019); stored as MatMulNBits\' bias (float16 behind a Cast with scale_dtype float16) or an Add, merged with a Gemm\'s own bias; counted at 4 bytes an output (2 with float16)'),
};

export function biasCorrectionProblems(pass: string, layers: readonly LinearLayer[]): LayerProblem[] {
  return layers
    .filter((l) => l.kind === 'conv')
    .map((l) => ({ param: 'bias_correction', message: `${pass}: '${l.name}' is a conv; bias_correction adds an output bias to MatMul and Gemm layers only, leave it out of targets or drop bias_correction` }));
}

/** μ = Σx / rows per input channel; the statistics must have been collected with `sum: true`. */
export function meanInput(stats: InputStats, pass: string, layer: string): Float64Array {
  if (!stats.sum) throw new Error(`${pass}: '${layer}': bias correction needs the calibration statistics' Σx`);
  if (stats.rows === 0) throw new UserError(`${pass}: '${layer}' saw no calibration rows; bias_correction needs calibration data`);
  return stats.sum.map((s) => s / stats.rows);
}

/** b[r] = Σ_j (W − Ŵ)[r, j]·μ_j (W, Ŵ rows × cols, out × in), summed in float64, then rounded as it will be stored. */
export function correctionBias(W: Float32Array, Wq: Float32Array, rows: number, cols: number, mu: Float64Array, dtype?: ScaleDtype): Float32Array {
  const b = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < cols; j++) s += (W[r * cols + j]! - Wq[r * cols + j]!) * mu[j]!;
    b[r] = storedScale(s, dtype);
  }
  return b;
}

/** Stored bytes of a correction bias: one float per output, float16 when the scales are (params.ts's quantizedBytes counts them). */
export function biasBytes(rows: number, dtype?: ScaleDtype): number {
  return rows * (dtype === 'float16' ? 2 : 4);
}

/** A Gemm's β·C as float32 values, zero when it has none (the caller checks C is a constant [N]). */
function gemmBiasValues(model: Model, layer: LinearLayer): Float32Array {
  if (!layer.bias) return new Float32Array(layer.outFeatures);
  const t = model.tensor(layer.bias);
  const count = t.dims.reduce((a, d) => a * d, 1);
  if (count !== layer.outFeatures) throw new UserError(`bias_correction: Gemm '${layer.name}' bias has shape [${t.dims.join(', ')}]; merging a correction needs a bias of [${layer.outFeatures}]`);
  const beta = attrFloat(layer.node, 'beta', 1);
  return toFloat32(t.dataType, t.data, layer.outFeatures).map((v) => v * beta);
}

/** What the layer adds after its product once `extra` (an error of x·W) is corrected: Gemm β·C + α·extra, MatMul extra; float32. */
export function mergedBias(model: Model, layer: LinearLayer, extra: Float32Array): Float32Array {
  if (layer.kind !== 'gemm') return extra;
  if (layer.node.input?.[2] && !layer.bias) throw new UserError(`bias_correction: Gemm '${layer.name}' adds a computed tensor '${layer.node.input[2]}', not a constant bias`);
  const alpha = attrFloat(layer.node, 'alpha', 1);
  const own = gemmBiasValues(model, layer);
  return own.map((v, i) => v + alpha * extra[i]!);
}

/**
 * The layer (still a MatMul or Gemm reading a dequantized weight) corrects its product by `b`: a
 * Gemm takes β·C + α·b as its C with β = 1; a MatMul writes into an Add of b.
 */
export function addOutputBias(model: Model, layer: LinearLayer, b: Float32Array): void {
  const node = layer.node;
  if (layer.kind === 'gemm') {
    const c = addConstant(model, `${layer.name}.bias_corrected`, DataType.FLOAT, [layer.outFeatures], mergedBias(model, layer, b));
    node.input = [...(node.input ?? []).slice(0, 2), c];
    node.attribute = [...(node.attribute ?? []).filter((a) => a.name !== 'beta'), attr.float('beta', 1)];
    return;
  }
  const bName = addConstant(model, `${layer.name}.bias_correction`, DataType.FLOAT, [layer.outFeatures], b);
  const unbiased = `${layer.output}/unbiased`;
  node.output![0] = unbiased;
  replaceNode(model.graph, node, [node, makeNode('Add', [unbiased, bName], [layer.output], `${node.name ?? layer.name}/Add_bias_correction`)]);
}

/**
 * The per-token output error on the calibration inputs once `b` is added, from the uncorrected one:
 * mean ‖Δx − b‖² = mean ‖Δx‖² − 2·b·(Δμ) + ‖b‖², Δ = W − Ŵ.
 */
export function correctedError(uncorrected: number, W: Float32Array, Wq: Float32Array, rows: number, cols: number, mu: Float64Array, b: Float32Array): number {
  let cross = 0;
  let norm = 0;
  for (let r = 0; r < rows; r++) {
    let dmu = 0;
    for (let j = 0; j < cols; j++) dmu += (W[r * cols + j]! - Wq[r * cols + j]!) * mu[j]!;
    cross += b[r]! * dmu;
    norm += b[r]! ** 2;
  }
  return uncorrected - 2 * cross + norm;
}

/** The layer's bias correction and the corrected per-token error, from W, Ŵ and the layer's statistics. */
export function biasCorrection(W: Float32Array, Wq: Float32Array, rows: number, cols: number, stats: InputStats, uncorrected: number, where: { pass: string; layer: string; dtype?: ScaleDtype }): { bias: Float32Array; error: number } {
  const mu = meanInput(stats, where.pass, where.layer);
  const bias = correctionBias(W, Wq, rows, cols, mu, where.dtype);
  return { bias, error: correctedError(uncorrected, W, Wq, rows, cols, mu, bias) };
}

const centered = new WeakMap<InputStats, InputStats>();

/**
 * The statistics with XᵀX replaced by Σ (x − μ)(x − μ)ᵀ = XᵀX − n·μμᵀ. With the bias correction in
 * place a layer's output error is ‖(W − Ŵ)(X − μ)ᵀ‖²: the mean part is the bias's, so the quantizer
 * should minimise the centred error. One copy per statistics object (q/k/v share theirs).
 */
export function centeredStats(stats: InputStats, pass: string, layer: string): InputStats {
  const done = centered.get(stats);
  if (done) return done;
  const mu = meanInput(stats, pass, layer);
  const d = stats.dim;
  const xtx = stats.xtx!.slice();
  for (let a = 0; a < d; a++) for (let b = 0; b < d; b++) xtx[a * d + b] -= stats.rows * mu[a]! * mu[b]!;
  const out = { ...stats, xtx };
  centered.set(stats, out);
  return out;
}
