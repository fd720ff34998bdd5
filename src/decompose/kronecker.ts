import { z } from 'zod';
import { UserError } from '../errors.js';
import { DataType } from '../model/dtype.js';
import { attr, makeNode } from '../model/graph.js';
import { addConstant, readWeight, removeUnused } from '../model/linear-weights.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { reconstructionError, relativeError } from '../obs/output-error.js';
import { definePass, type LayerStat } from '../pipeline/pass.js';
import { kroneckerDense, permutedKronecker, squarestShape, type KroneckerFactors, type KroneckerShape } from './kronecker-math.js';

/**
 * Kronecker factorization (as in KnGPT-2 / TQCompressedGPT-2): W ≈ Σ_r A_r ⊗ B_r with the optimal
 * factors for the chosen shapes (Van Loan–Pitsianis, see kronecker-math.ts). Emitted with the
 * identity (A ⊗ B)·vec(X) = vec(A X Bᵀ) for x reshaped to X [n1, n2]:
 *   MatMul(x, Wᵀ) -> Reshape(Σ_r MatMul(A_r, MatMul(Reshape(x, [-1, n1, n2]), B_rᵀ)), [..., m])
 */

const KroneckerParams = z.object({
  terms: z.number().int().min(1).default(1).describe('R, the number of Kronecker products summed'),
  m1: z.number().int().min(1).optional().describe('rows of A (must divide the output width); near √out by default'),
  n1: z.number().int().min(1).optional().describe('columns of A (must divide the input width); near √in by default'),
  permutation_rounds: z.number().int().min(0).default(0).describe('rounds of row/column permutation search before factoring (TQCompressedGPT-2); 0 = none'),
});

/**
 * With permutations, the factors approximate W[rowPerm, colPerm]: the input is gathered by colPerm
 * first and the output scattered back by rowPerm⁻¹, both as Gather on the feature axis.
 */
export function emitKronecker(model: Model, layer: LinearLayer, f: KroneckerFactors, perms?: { rowPerm: Int32Array; colPerm: Int32Array }): void {
  const { m1, n1, m2, n2 } = f.shape;
  const base = layer.node.name ?? layer.name;
  const v = (s: string) => `${base}/kron_${s}`;
  const i64 = (name: string, values: number[]) => addConstant(model, v(name), DataType.INT64, [values.length], values);
  // permutation indices as int32: Gather takes them, and they weigh half of int64
  const i32 = (name: string, values: number[]) => addConstant(model, v(name), DataType.INT32, [values.length], values);
  const f32 = (name: string, dims: number[], values: Float64Array) => addConstant(model, `${layer.name}.${name}`, DataType.FLOAT, dims, values);
  const identity = (p: Int32Array) => p.every((x, i) => x === i);
  let input = layer.input;
  const nodes = [];
  if (perms && !identity(perms.colPerm)) {
    nodes.push(makeNode('Gather', [layer.input, i32('col_perm', Array.from(perms.colPerm))], [v('x_permuted')], v('Gather_in'), [attr.int('axis', -1)]));
    input = v('x_permuted');
  }
  const rowInverse = perms && !identity(perms.rowPerm) ? Array.from(perms.rowPerm).reduce((inv, p, i) => ((inv[p] = i), inv), new Array<number>(perms.rowPerm.length)) : undefined;
  nodes.push(
    makeNode('Shape', [layer.input], [v('shape')], v('Shape')),
    makeNode('Slice', [v('shape'), i64('start', [0]), i64('end', [-1])], [v('lead')], v('Slice')),
    makeNode('Concat', [v('lead'), i64('width', [m1 * m2])], [v('out_shape')], v('Concat'), [attr.int('axis', 0)]),
    makeNode('Reshape', [input, i64('x_shape', [-1, n1, n2])], [v('x3')], v('Reshape_in')),
  );
  const terms: string[] = [];
  f.A.forEach((A, r) => {
    const B = f.B[r]!;
    const Bt = new Float64Array(n2 * m2);
    for (let k = 0; k < m2; k++) for (let l = 0; l < n2; l++) Bt[l * m2 + k] = B[k * n2 + l]!;
    const bName = f32(`kron_b${r}`, [n2, m2], Bt);
    const aName = f32(`kron_a${r}`, [m1, n1], A);
    nodes.push(makeNode('MatMul', [v('x3'), bName], [v(`p${r}`)], v(`MatMul_b${r}`)));
    nodes.push(makeNode('MatMul', [aName, v(`p${r}`)], [v(`y${r}`)], v(`MatMul_a${r}`)));
    terms.push(v(`y${r}`));
  });
  const summed = terms.length === 1 ? terms[0]! : v('sum');
  if (terms.length > 1) nodes.push(makeNode('Sum', terms, [summed], v('Sum')));
  if (rowInverse) {
    nodes.push(makeNode('Reshape', [summed, v('out_shape')], [v('y_permuted')], v('Reshape_out')));
    nodes.push(makeNode('Gather', [v('y_permuted'), i32('row_perm_inverse', rowInverse)], [layer.output], v('Gather_out'), [attr.int('axis', -1)]));
  } else {
    nodes.push(makeNode('Reshape', [summed, v('out_shape')], [layer.output], v('Reshape_out')));
  }
  const all = model.graph.node!;
  all.splice(all.indexOf(layer.node), 1, ...nodes);
  removeUnused(model);
}

function shapeFor(layer: LinearLayer, p: { m1?: number; n1?: number }, where: string): KroneckerShape {
  const m = layer.outFeatures;
  const n = layer.inFeatures;
  const auto = squarestShape(m, n);
  const m1 = p.m1 ?? auto.m1;
  const n1 = p.n1 ?? auto.n1;
  if (m % m1 !== 0 || n % n1 !== 0) throw new UserError(`decompose.kronecker: '${layer.name}' is ${m}×${n}; ${where}.params m1 ${m1} / n1 ${n1} must divide it`);
  return { m1, n1, m2: m / m1, n2: n / n1 };
}

export const kronecker = definePass({
  id: 'decompose.kronecker',
  summary: 'Kronecker factorization W ≈ Σ A_r ⊗ B_r (Van Loan–Pitsianis), emitted as Reshape → MatMul → MatMul → Reshape',
  params: KroneckerParams,
  needsCalibration: false,
  eligible: (layer) => layer.kind === 'matmul',
  async apply(model, params, ctx) {
    const stats = ctx.calibration ? await ctx.calibration.collect(model, ctx.layers, { hessian: true }) : undefined;
    const layers: LayerStat[] = [];
    const warnings: string[] = [];
    for (const [j, layer] of ctx.layers.entries()) {
      ctx.progress.layer(j, ctx.layers.length, layer.name);
      const t0 = performance.now();
      const m = layer.outFeatures;
      const n = layer.inFeatures;
      const shape = shapeFor(layer, params, ctx.where);
      const kept = params.terms * (shape.m1 * shape.n1 + shape.m2 * shape.n2);
      if (kept >= m * n || shape.m1 === 1 || shape.n2 * shape.m2 === 1) {
        warnings.push(`'${layer.name}' kept dense: ${params.terms} term(s) of ${shape.m1}×${shape.n1} ⊗ ${shape.m2}×${shape.n2} would not shrink a ${m}×${n} weight`);
        continue;
      }
      const W = readWeight(model, layer);
      const found = await permutedKronecker(W, shape, params.terms, { rounds: params.permutation_rounds, structure: params.permutation_rounds > 0 });
      const f = found.factors;
      // Ŵ in W's own row/column order
      const permutedApprox = kroneckerDense(f);
      const approx = new Float32Array(m * n);
      for (let b = 0; b < m; b++) for (let c = 0; c < n; c++) approx[found.rowPerm[b]! * n + found.colPerm[c]!] = permutedApprox[b * n + c]!;
      const weightError = relativeError(W, approx);
      emitKronecker(model, layer, f, found);
      const s = stats?.get(layer.input);
      layers.push({
        name: layer.name,
        kind: layer.kind,
        shape: [m, n],
        ms: performance.now() - t0,
        bytes_before: m * n * 4,
        bytes_after: kept * 4,
        objective: s ? await reconstructionError(W, approx, m, s) : weightError,
        extra: {
          terms: f.A.length,
          factors: `${shape.m1}×${shape.n1} ⊗ ${shape.m2}×${shape.n2}`,
          weight_rel_error: weightError,
          weight_rel_error_without_permutation: Math.sqrt(found.errorWithoutPermutation / Math.max(W.reduce((a, w) => a + w * w, 0), 1e-300)),
        },
      });
    }
    return { layers, warnings };
  },
});
