/**
 * src/decompose — a pass family (layer 11): low-rank and Kronecker factorizations.
 */
import { z } from 'zod';
import { cholesky } from '../linalg/cholesky.js';
import { matmul } from '../linalg/gemm.js';
import { svd } from '../linalg/svd.js';
import { invertLower } from '../linalg/triangular.js';
import { DataType } from '../model/dtype.js';
import { makeNode } from '../model/graph.js';
import { replaceNode } from '../model/graph-edit.js';
import { readWeight, removeUnused, uniqueInitializerName } from '../model/linear-weights.js';
import { gemmEpilogue } from '../model/gemm-epilogue.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { reconstructionError, relativeError } from '../obs/output-error.js';
import type { InputStats } from '../calibrate/stats.js';
import { eachCalibratedLayer, eachLayer, type LayerOutcome } from '../pass/layer-loop.js';
import { definePass, onValidFields } from '../pass/pass.js';

/**
 * Low-rank factorization: W (out × in) ≈ A·B with A = U_k Σ_k (out × k) and B = V_kᵀ (k × in), the
 * Eckart–Young optimum in ‖W − Ŵ‖_F. Activation-aware mode (SVD-LLM, Wang et al. 2024) factors
 * W·L instead, L the Cholesky factor of the calibration XᵀX, and sets B = V_kᵀ L⁻¹, so the
 * truncation minimises the output error ‖(W − Ŵ)Xᵀ‖_F. Emitted as
 *   MatMul(x, Wᵀ) -> MatMul(MatMul(x, Bᵀ), Aᵀ)        (two smaller MatMuls)
 * A rank that would not save parameters (k ≥ mn/(m+n)) leaves the layer dense, with a warning.
 */

const RANK_CHOICES = ['rank', 'ratio', 'energy'] as const;

const SvdParams = z
  .strictObject({
    rank: z.number().int().min(1).optional().describe('keep this many singular values'),
    ratio: z.number().gt(0).lt(1).optional().describe('fraction of the layer\'s params kept: k = ratio·mn/(m+n)'),
    energy: z.number().gt(0).max(1).optional().describe('smallest k whose singular values hold this fraction of Σσ²'),
    activation_aware: z.boolean().default(false).describe('whiten by the calibration inputs (SVD-LLM): minimise the output error, not the weight error'),
    dampening: z.number().min(0).default(1e-6).describe('λ·mean(diag XᵀX) added before the whitening Cholesky'),
  })
  .superRefine((p, ctx) => {
    const given = RANK_CHOICES.filter((k) => p[k] !== undefined);
    // none given: the params as a whole; more than one: each beyond the first
    if (given.length === 0) ctx.addIssue({ code: 'custom', path: [], message: 'needs exactly one of rank, ratio or energy, got none' });
    for (const k of given.slice(1)) ctx.addIssue({ code: 'custom', path: [k], message: `needs exactly one of rank, ratio or energy, got ${given.join(' and ')}` });
  }, onValidFields);

export function chooseRank(S: Float64Array, m: number, n: number, p: { rank?: number; ratio?: number; energy?: number }): number {
  if (p.rank !== undefined) return Math.min(p.rank, S.length);
  if (p.ratio !== undefined) return Math.max(1, Math.floor((p.ratio * m * n) / (m + n)));
  const total = S.reduce((a, s) => a + s * s, 0);
  let acc = 0;
  for (let k = 0; k < S.length; k++) {
    acc += S[k]! ** 2;
    if (acc >= p.energy! * total) return k + 1;
  }
  return S.length;
}

/** Rewrites MatMul(x, W) into MatMul(MatMul(x, Bᵀ), Aᵀ) (a Gemm keeps its α and bias after them); A [out, k], B [k, in] row-major float32. */
export function emitLowRank(model: Model, layer: LinearLayer, A: Float32Array, B: Float32Array, k: number): void {
  const out = layer.outFeatures;
  const inn = layer.inFeatures;
  const Bt = new Float32Array(inn * k);
  for (let r = 0; r < k; r++) for (let c = 0; c < inn; c++) Bt[c * k + r] = B[r * inn + c]!;
  const At = new Float32Array(k * out);
  for (let r = 0; r < out; r++) for (let c = 0; c < k; c++) At[c * out + r] = A[r * k + c]!;
  const base = layer.node.name ?? layer.name;
  const vName = uniqueInitializerName(model, `${layer.name}.svd_v`);
  const uName = uniqueInitializerName(model, `${layer.name}.svd_u`);
  model.setInitializer({ name: vName, dataType: DataType.FLOAT, dims: [inn, k], data: new Uint8Array(Bt.buffer) });
  model.setInitializer({ name: uName, dataType: DataType.FLOAT, dims: [k, out], data: new Uint8Array(At.buffer) });
  const mid = `${base}/svd_v_output`;
  const epilogue = gemmEpilogue(model, layer, base, 'decompose.svd');
  replaceNode(model.graph, layer.node, [
    makeNode('MatMul', [layer.input, vName], [mid], `${base}/svd_v`),
    makeNode('MatMul', [mid, uName], [epilogue.product], `${base}/svd_u`),
    ...epilogue.nodes,
  ]);
  removeUnused(model);
}

export const svdPass = definePass({
  id: 'decompose.svd',
  summary: 'truncated SVD into two MatMuls; rank by rank, ratio or energy; optional activation-aware whitening (SVD-LLM)',
  params: SvdParams,
  needsCalibration: (p) => (p?.activation_aware ? { need: 'required', param: 'activation_aware', instead: 'activation_aware: false' } : { need: 'optional' }),
  eligible: (layer) => layer.kind !== 'conv',
  changesLayers: true,
  async apply(model, params, ctx) {
    // the schema and needsCalibration check these for recipes; direct callers must keep to them
    if (RANK_CHOICES.filter((k) => params[k] !== undefined).length !== 1) throw new Error('decompose.svd: params need exactly one of rank, ratio or energy');
    if (params.activation_aware && !ctx.calibration) throw new Error('decompose.svd: activation_aware needs ctx.calibration');
    // with calibration, layer by layer in sequence (TQCompressed's iterative mode): each block is
    // factored on the activations of the already-factored blocks before it (recipe mode: sequential)
    const one = async (layer: LinearLayer, s: InputStats | undefined): Promise<LayerOutcome | undefined> => {
      const m = layer.outFeatures;
      const n = layer.inFeatures;
      const W = readWeight(model, layer);
      let target: Float64Array = Float64Array.from(W);
      let Linv: Float64Array | undefined;
      if (params.activation_aware) {
        // whitening: W·L with XᵀX + λI = L·Lᵀ
        const H = Float64Array.from(s!.xtx!);
        let mean = 0;
        for (let i = 0; i < n; i++) mean += H[i * n + i]!;
        for (let i = 0; i < n; i++) H[i * n + i]! += (params.dampening * mean) / n + 1e-12;
        const L = await cholesky(H, n);
        Linv = await invertLower(L, n);
        target = await matmul(target, L, m, n, n);
      }
      const d = await svd(target, m, n);
      const k = chooseRank(d.S, m, n, params);
      if (k * (m + n) >= m * n) {
        warnings.push(`'${layer.name}' kept dense: rank ${k} of ${m}×${n} would not save parameters (needs k < ${Math.floor((m * n) / (m + n))})`);
        return undefined;
      }
      const A = new Float32Array(m * k);
      for (let r = 0; r < m; r++) for (let c = 0; c < k; c++) A[r * k + c] = d.U[r * d.rank + c]! * d.S[c]!;
      let B64: Float64Array = d.Vt.subarray(0, k * n);
      if (Linv) B64 = await matmul(Float64Array.from(B64), Linv, k, n, n);
      const B = Float32Array.from(B64);
      const approx = await matmul(A, B, m, k, n);
      const weightError = relativeError(W, approx);
      emitLowRank(model, layer, A, B, k);
      return {
        bytes_before: m * n * 4,
        bytes_after: k * (m + n) * 4,
        objective: s ? await reconstructionError(W, approx, m, s) : weightError,
        extra: { rank: k, weight_rel_error: weightError },
      };
    };
    const warnings: string[] = [];
    const layers = ctx.calibration ? await eachCalibratedLayer(model, ctx, { hessian: true }, one) : await eachLayer(ctx, (l) => one(l, undefined));
    return { layers, warnings };
  },
  estimateBytes: (layer, params) => {
    const m = layer.outFeatures;
    const n = layer.inFeatures;
    const k = params.rank ?? (params.ratio !== undefined ? Math.floor((params.ratio * m * n) / (m + n)) : undefined);
    return k !== undefined && k * (m + n) < m * n ? k * (m + n) * 4 : m * n * 4;
  },
});
