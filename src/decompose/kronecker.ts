import { z } from 'zod';
import { DataType } from '../model/dtype.js';
import { attr, makeNode } from '../model/graph.js';
import { replaceNode } from '../model/graph-edit.js';
import { addConstant, readWeight, removeUnused } from '../model/linear-weights.js';
import { gemmEpilogue } from '../model/gemm-epilogue.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { reconstructionError, relativeError } from '../obs/output-error.js';
import type { InputStats } from '../calibrate/stats.js';
import { eachCalibratedLayer, eachLayer, type LayerOutcome } from '../pass/layer-loop.js';
import { assertLayersFit, definePass, type LayerProblem, onValidFields } from '../pass/pass.js';
import { chooseShape } from './kronecker-budget.js';
import { inversePermutation, isIdentityPermutation, kroneckerDense, kroneckerOrder, movesData, permute, permutedKronecker, squarestShape, type KroneckerFactors, type KroneckerShape } from './kronecker-math.js';
import { emitKroneckerAtLoad } from './kronecker-load.js';
import { weightedKronecker } from './kronecker-weighted.js';

/**
 * Kronecker factorization (as in KnGPT-2 / TQCompressedGPT-2): W ≈ Σ_r A_r ⊗ B_r with the optimal
 * factors for the chosen shapes (Van Loan–Pitsianis, see kronecker-math.ts). Emitted with the
 * identity (A ⊗ B)·vec(X) = vec(A X Bᵀ) for x reshaped to X [n1, n2], as two plain GEMMs whose rows
 * are tokens (emitKronecker), or with `runtime: dense_at_load` as the factors and a constant
 * subgraph that ONNX Runtime folds into the dense weight at load (kronecker-load.ts).
 */

const KroneckerParams = z.strictObject({
  terms: z.number().int().min(1).optional().describe('R, the number of Kronecker products summed (1 without ratio)'),
  m1: z.number().int().min(1).optional().describe('rows of A (must divide the output width); near √out by default'),
  n1: z.number().int().min(1).optional().describe('columns of A (must divide the input width); near √in by default'),
  ratio: z.number().gt(0).lt(1).optional().describe("fraction of the layer's params kept: the shape and terms with the lowest error within it (given m1/n1/terms are kept)"),
  permute: z.boolean().default(false).describe('search row/column permutations: structure detection (exact on a permuted product), then permutation_rounds greedy rounds'),
  permutation_rounds: z.number().int().min(0).default(0).describe('rounds of greedy row/column re-assignment (TQCompressedGPT-2); > 0 turns the search on'),
  mode: z.enum(['weight', 'iterative']).default('weight').describe('weight: minimise ‖W − Ŵ‖; iterative (TQCompressed): layer by layer on calibration data from the already-factored layers, minimising the output error by alternating least squares'),
  max_compute: z.number().positive().default(1).describe("with ratio: only shapes and terms costing at most this fraction of the dense layer's multiply-adds per token (the factored form then does no more arithmetic than dense); a large value turns the cap off. With runtime dense_at_load the layer runs dense whatever the shape, so the cap only narrows the shapes (kept at 1 so both runtimes store the same factors; lifting it lost quality in bench/RESULTS.md)"),
  runtime: z.enum(['factored', 'dense_at_load']).default('dense_at_load').describe('factored: the file and the running graph hold the factors (two small GEMMs a layer; less memory, more dispatch per token); dense_at_load (default): the file holds the factors and a constant subgraph that ONNX Runtime folds into the dense weight when the session loads, so the layer runs as one MatMul with the latency and memory of dense at every batch size (the download stays factored)'),
  als_iterations: z.number().int().min(1).default(10).describe('alternating least-squares sweeps in iterative mode'),
  dampening: z.number().min(0).default(1e-6).describe('λ·mean(diag XᵀX) added to XᵀX in iterative mode'),
}).superRefine((p, ctx) => {
  if (p.ratio !== undefined && p.terms !== undefined && p.m1 !== undefined && p.n1 !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['ratio'], message: 'ratio chooses the shape and terms, but terms, m1 and n1 are all given; drop ratio or one of the others' });
  }
}, onValidFields);
type KroneckerParamsOut = z.output<typeof KroneckerParams>;

/**
 * x [.., n] with n = n1·n2 (index j·n2 + l), out [.., m] with m = m1·m2 (index i·m2 + k), T tokens;
 * y[t, i·m2 + k] = Σ_r Σ_j Σ_l A_r[i, j] B_r[k, l] x[t, j·n2 + l] = (Σ_r A_r ⊗ B_r) x_t, in the
 * cheaper of two contraction orders (kroneckerOrder):
 *   a-first: Z = Reshape(Transpose(Reshape(x, [T, n1, n2]), [0, 2, 1]), [T·n2, n1]) · Acat     Acat [n1, R·m1]
 *            y = Reshape(Transpose(Reshape(Z, [T, n2, R, m1]), [0, 3, 2, 1]), [T·m1, R·n2]) · Bcat   Bcat [R·n2, m2]
 *   b-first: P = Reshape(x, [T·n1, n2]) · Bcat                                             Bcat [n2, R·m2]
 *            Y = Reshape(Transpose(Reshape(P, [T, n1, R, m2]), [0, 3, 2, 1]), [T·m2, R·n1]) · Acat   Acat [R·n1, m1]
 *            y = Transpose(Reshape(Y, [T, m2, m1]), [0, 2, 1])
 * Both products are single GEMMs with tokens in the rows; a Transpose that moves only axes of
 * length 1 is left out, so m×1 ⊗ 1×n (rank-R) is two GEMMs. (The earlier emission multiplied a
 * constant [m1, R·n1] by a [T, R·n1, m2] batch, which ONNX Runtime runs as one tiny GEMM per token.)
 * With permutations, the factors approximate W[rowPerm, colPerm]: the input is gathered by colPerm
 * first and the output scattered back by rowPerm⁻¹, both as Gather on the feature axis.
 */
export function emitKronecker(model: Model, layer: LinearLayer, f: KroneckerFactors, perms?: { rowPerm: Int32Array; colPerm: Int32Array }): void {
  const { m1, n1, m2, n2 } = f.shape;
  const R = f.A.length;
  const base = layer.node.name ?? layer.name;
  const v = (s: string) => `${base}/kron_${s}`;
  const i64 = (name: string, values: number[]) => addConstant(model, v(name), DataType.INT64, [values.length], values);
  // permutation indices as int32: Gather takes them, and they weigh half of int64
  const i32 = (name: string, values: number[]) => addConstant(model, v(name), DataType.INT32, [values.length], values);
  const f32 = (name: string, dims: number[], values: Float64Array) => addConstant(model, `${layer.name}.${name}`, DataType.FLOAT, dims, values);
  let input = layer.input;
  const epilogue = gemmEpilogue(model, layer, base, 'decompose.kronecker');
  const nodes = [];
  if (perms && !isIdentityPermutation(perms.colPerm)) {
    nodes.push(makeNode('Gather', [layer.input, i32('col_perm', Array.from(perms.colPerm))], [v('x_permuted')], v('Gather_in'), [attr.int('axis', -1)]));
    input = v('x_permuted');
  }
  const rowInverse = perms && !isIdentityPermutation(perms.rowPerm) ? inversePermutation(perms.rowPerm) : undefined;
  /** Reshape, then Transpose when it moves data, then Reshape to `to` */
  const regroup = (x: string, tag: string, dims: number[], perm: number[], to: number[]): string => {
    if (!movesData(dims, perm)) {
      nodes.push(makeNode('Reshape', [x, i64(`${tag}_shape`, to)], [v(tag)], v(`Reshape_${tag}`)));
      return v(tag);
    }
    nodes.push(
      makeNode('Reshape', [x, i64(`${tag}_split_shape`, [-1, ...dims.slice(1)])], [v(`${tag}_split`)], v(`Reshape_${tag}_split`)),
      makeNode('Transpose', [v(`${tag}_split`)], [v(`${tag}_t`)], v(`Transpose_${tag}`), [attr.ints('perm', perm)]),
      makeNode('Reshape', [v(`${tag}_t`), i64(`${tag}_shape`, to)], [v(tag)], v(`Reshape_${tag}`)),
    );
    return v(tag);
  };
  const order = kroneckerOrder(f.shape);
  // m×1 ⊗ 1×n (either way round) is rank R: x·U then ·V on [.., features], no reshape at all
  const rank = order === 'a-first' ? m1 === 1 && n2 === 1 : n1 === 1 && m2 === 1;
  if (!rank) {
    nodes.push(
      makeNode('Shape', [layer.input], [v('shape')], v('Shape')),
      makeNode('Slice', [v('shape'), i64('start', [0]), i64('end', [-1])], [v('lead')], v('Slice')),
      makeNode('Concat', [v('lead'), i64('width', [m1 * m2])], [v('out_shape')], v('Concat'), [attr.int('axis', 0)]),
    );
  }
  let y: string;
  if (order === 'a-first') {
    const Acat = new Float64Array(n1 * R * m1);
    const Bcat = new Float64Array(R * n2 * m2);
    f.A.forEach((A, r) => {
      const B = f.B[r]!;
      for (let i = 0; i < m1; i++) for (let j = 0; j < n1; j++) Acat[j * R * m1 + r * m1 + i] = A[i * n1 + j]!;
      for (let k = 0; k < m2; k++) for (let l = 0; l < n2; l++) Bcat[(r * n2 + l) * m2 + k] = B[k * n2 + l]!;
    });
    const x2 = rank ? input : regroup(input, 'x', [2, n1, n2], [0, 2, 1], [-1, n1]);
    nodes.push(makeNode('MatMul', [x2, f32('kron_a', [n1, R * m1], Acat)], [v('z')], v('MatMul_a')));
    const q = rank ? v('z') : regroup(v('z'), 'q', [2, n2, R, m1], [0, 3, 2, 1], [-1, R * n2]);
    nodes.push(makeNode('MatMul', [q, f32('kron_b', [R * n2, m2], Bcat)], [v('y')], v('MatMul_b')));
    y = v('y');
  } else {
    const Bcat = new Float64Array(n2 * R * m2);
    const Acat = new Float64Array(R * n1 * m1);
    f.A.forEach((A, r) => {
      const B = f.B[r]!;
      for (let k = 0; k < m2; k++) for (let l = 0; l < n2; l++) Bcat[l * R * m2 + r * m2 + k] = B[k * n2 + l]!;
      for (let i = 0; i < m1; i++) for (let j = 0; j < n1; j++) Acat[(r * n1 + j) * m1 + i] = A[i * n1 + j]!;
    });
    if (!rank) nodes.push(makeNode('Reshape', [input, i64('x_shape', [-1, n2])], [v('x2')], v('Reshape_in')));
    nodes.push(makeNode('MatMul', [rank ? input : v('x2'), f32('kron_b', [n2, R * m2], Bcat)], [v('p')], v('MatMul_b')));
    const q = rank ? v('p') : regroup(v('p'), 'q', [2, n1, R, m2], [0, 3, 2, 1], [-1, R * n1]);
    nodes.push(makeNode('MatMul', [q, f32('kron_a', [R * n1, m1], Acat)], [v('y')], v('MatMul_a')));
    y = rank ? v('y') : regroup(v('y'), 'y_order', [2, m2, m1], [0, 2, 1], [-1, m1 * m2]);
  }
  if (rank) {
    // y is [.., m] already
    if (rowInverse) nodes.push(makeNode('Gather', [y, i32('row_perm_inverse', rowInverse)], [epilogue.product], v('Gather_out'), [attr.int('axis', -1)]));
    else nodes.at(-1)!.output = [epilogue.product];
  } else if (rowInverse) {
    nodes.push(makeNode('Reshape', [y, v('out_shape')], [v('y_permuted')], v('Reshape_out')));
    nodes.push(makeNode('Gather', [v('y_permuted'), i32('row_perm_inverse', rowInverse)], [epilogue.product], v('Gather_out'), [attr.int('axis', -1)]));
  } else {
    nodes.push(makeNode('Reshape', [y, v('out_shape')], [epilogue.product], v('Reshape_out')));
  }
  nodes.push(...epilogue.nodes);
  replaceNode(model.graph, layer.node, nodes);
  removeUnused(model);
}

/** m1 and n1, when given, must divide every layer's output and input widths. */
function divisionProblems(p: { m1?: number; n1?: number }, layers: readonly LinearLayer[]): LayerProblem[] {
  const problems: LayerProblem[] = [];
  for (const layer of layers) {
    const [m, n] = [layer.outFeatures, layer.inFeatures];
    if (p.m1 !== undefined && m % p.m1 !== 0) problems.push({ param: 'm1', message: `decompose.kronecker: '${layer.name}' is ${m}×${n}; m1 ${p.m1} must divide its ${m} outputs` });
    if (p.n1 !== undefined && n % p.n1 !== 0) problems.push({ param: 'n1', message: `decompose.kronecker: '${layer.name}' is ${m}×${n}; n1 ${p.n1} must divide its ${n} inputs` });
  }
  return problems;
}

/** factor shapes and terms: from the budget when `ratio` is given, else from m1/n1/terms (near-square by default) */
async function planFor(W: Float32Array, layer: LinearLayer, p: KroneckerParamsOut): Promise<{ shape: KroneckerShape; terms: number } | string> {
  const m = layer.outFeatures;
  const n = layer.inFeatures;
  if (p.ratio !== undefined) {
    const choice = await chooseShape(W, m, n, p.ratio, { m1: p.m1, n1: p.n1, terms: p.terms, maxCompute: p.max_compute });
    return choice ?? `'${layer.name}' kept dense: no Kronecker shape of a ${m}×${n} weight${p.m1 || p.n1 || p.terms ? ' with the given m1/n1/terms' : ''} fits ratio ${p.ratio} within max_compute ${p.max_compute}`;
  }
  const auto = squarestShape(m, n);
  const m1 = p.m1 ?? auto.m1;
  const n1 = p.n1 ?? auto.n1;
  return { shape: { m1, n1, m2: m / m1, n2: n / n1 }, terms: p.terms ?? 1 };
}

/** H[colPerm, colPerm] + λ·mean(diag H)·I */
function permutedHessian(H: Float64Array, n: number, colPerm: Int32Array, dampening: number): Float64Array {
  const out = new Float64Array(n * n);
  let trace = 0;
  for (let a = 0; a < n; a++) {
    trace += H[a * n + a]!;
    for (let b = 0; b < n; b++) out[a * n + b] = H[colPerm[a]! * n + colPerm[b]!]!;
  }
  for (let a = 0; a < n; a++) out[a * n + a] += (dampening * trace) / n;
  return out;
}

export const kronecker = definePass({
  id: 'decompose.kronecker',
  summary: 'Kronecker factorization W ≈ Σ A_r ⊗ B_r (Van Loan–Pitsianis; shapes from a budget; permutation search; iterative output-aware mode), emitted as two token-row GEMMs (rank shapes: MatMul → MatMul) capped at the dense compute, or (runtime: dense_at_load) stored factored and expanded to the dense MatMul by ONNX Runtime at load',
  params: KroneckerParams,
  needsCalibration: (p) => (p?.mode === 'iterative' ? { need: 'required', param: 'mode', instead: 'mode: weight' } : { need: 'optional' }),
  eligible: (layer) => layer.kind !== 'conv',
  changesLayers: true,
  checkLayers: (params, layers) => divisionProblems(params, layers),
  async apply(model, params, ctx) {
    assertLayersFit(divisionProblems(params, ctx.layers));
    // needsCalibration makes recipes give calibration for this; direct callers must pass it
    if (params.mode === 'iterative' && !ctx.calibration) throw new Error('decompose.kronecker: mode iterative needs ctx.calibration');
    const search = params.permute || params.permutation_rounds > 0;
    const warnings: string[] = [];
    // with calibration, layer by layer in sequence: each block is factored on the activations of the
    // already-factored blocks before it (TQCompressed's iterative mode; recipe calibration mode sequential)
    const one = async (layer: LinearLayer, s: InputStats | undefined): Promise<LayerOutcome | undefined> => {
      const m = layer.outFeatures;
      const n = layer.inFeatures;
      const W = readWeight(model, layer);
      const plan = await planFor(W, layer, params);
      if (typeof plan === 'string') {
        warnings.push(plan);
        return undefined;
      }
      const { shape, terms } = plan;
      const kept = terms * (shape.m1 * shape.n1 + shape.m2 * shape.n2);
      if (kept >= m * n || shape.m1 * shape.n1 === 1 || shape.n2 * shape.m2 === 1) {
        warnings.push(`'${layer.name}' kept dense: ${terms} term(s) of ${shape.m1}×${shape.n1} ⊗ ${shape.m2}×${shape.n2} would not shrink a ${m}×${n} weight`);
        return undefined;
      }
      const found = await permutedKronecker(W, shape, terms, { rounds: params.permutation_rounds, structure: search });
      let f = found.factors;
      const extra: Record<string, number | string> = {};
      if (params.mode === 'iterative') {
        const fit = await weightedKronecker(permute(W, n, found.rowPerm, found.colPerm), permutedHessian(s!.xtx!, n, found.colPerm, params.dampening), f, params.als_iterations);
        f = fit.factors;
        extra.als_iterations = fit.iterations;
      }
      // Ŵ in W's own row/column order
      const permutedApprox = kroneckerDense(f);
      const approx = new Float32Array(m * n);
      for (let b = 0; b < m; b++) for (let c = 0; c < n; c++) approx[found.rowPerm[b]! * n + found.colPerm[c]!] = permutedApprox[b * n + c]!;
      const weightError = relativeError(W, approx);
      (params.runtime === 'dense_at_load' ? emitKroneckerAtLoad : emitKronecker)(model, layer, f, found);
      const normW = Math.max(W.reduce((a, w) => a + w * w, 0), 1e-300);
      return {
        bytes_before: m * n * 4,
        bytes_after: kept * 4,
        objective: s ? await reconstructionError(W, approx, m, s) : weightError,
        extra: {
          terms: f.A.length,
          factors: `${shape.m1}×${shape.n1} ⊗ ${shape.m2}×${shape.n2}`,
          params_before: m * n,
          params_after: kept,
          weight_rel_error: weightError,
          weight_rel_error_without_permutation: Math.sqrt(found.errorWithoutPermutation / normW),
          ...(search ? { weight_rel_error_with_permutation: Math.sqrt(found.error / normW) } : {}),
          ...extra,
        },
      };
    };
    const layers = ctx.calibration ? await eachCalibratedLayer(model, ctx, { hessian: true }, one) : await eachLayer(ctx, (l) => one(l, undefined));
    return { layers, warnings };
  },
  estimateBytes: (layer, params, bytesBefore) => {
    if (params.ratio !== undefined) return Math.floor(params.ratio * bytesBefore);
    const m = layer.outFeatures;
    const n = layer.inFeatures;
    const auto = squarestShape(m, n);
    const m1 = params.m1 ?? auto.m1;
    const n1 = params.n1 ?? auto.n1;
    if (m % m1 !== 0 || n % n1 !== 0) return bytesBefore;
    const kept = (params.terms ?? 1) * (m1 * n1 + (m / m1) * (n / n1)) * 4;
    return Math.min(kept, bytesBefore);
  },
});
