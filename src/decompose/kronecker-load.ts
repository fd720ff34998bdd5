import { DataType } from '../model/dtype.js';
import { attr, makeNode } from '../model/graph.js';
import { replaceNode } from '../model/graph-edit.js';
import { addConstant, removeUnused } from '../model/linear-weights.js';
import { gemmEpilogue } from '../model/gemm-epilogue.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import type { NodeProto } from '../model/onnx-schema.js';
import { inversePermutation, isIdentityPermutation, movesData, type KroneckerFactors } from './kronecker-math.js';

/**
 * Kronecker factors stored, the dense weight built at load (`runtime: dense_at_load`): the file
 * holds only the factors, and a constant subgraph rebuilds Wᵀ = (Σ_r A_r ⊗ B_r)ᵀ from them, which
 * ONNX Runtime's constant folding computes once when the session is created, so the running graph is
 * the dense layer's lone MatMul (latency and resident memory equal to dense at every batch size):
 *
 *   Ã [n1·m1, R]   Ã[j·m1 + i, r] = A_r[i, j]
 *   B̃ [R, n2·m2]   B̃[r, l·m2 + k] = B_r[k, l]
 *   P = Ã · B̃ [n1·m1, n2·m2]       P[(j, i), (l, k)] = Σ_r A_r[i, j] B_r[k, l] = W[i·m2 + k, j·n2 + l]
 *   Wᵀ = Reshape(Transpose(Reshape(P, [n1, m1, n2, m2]), [0, 2, 1, 3]), [n, m])   (the Transpose left out when it moves no data)
 *   with permutations (the factors approximate W[rowPerm, colPerm]): Gather(Wᵀ, colPerm⁻¹, axis 0), then Gather(·, rowPerm⁻¹, axis 1)
 *   y = x · Wᵀ (+ the Gemm's α and bias)
 *
 * Only MatMul, Reshape, Transpose and Gather on initializers (all in this form since opset 5): ORT's
 * CPU constant folding computes them at load, and the tfjs executor runs (and differentiates) them
 * each step when distill.kd trains Ã and B̃, which are no layer's weight (distill/trainable.ts).
 * The expansion MatMul has two constant operands, so linears() does not count it as a layer.
 */
export function emitKroneckerAtLoad(model: Model, layer: LinearLayer, f: KroneckerFactors, perms?: { rowPerm: Int32Array; colPerm: Int32Array }): void {
  const { m1, n1, m2, n2 } = f.shape;
  const [m, n] = [m1 * m2, n1 * n2];
  const R = f.A.length;
  const base = layer.node.name ?? layer.name;
  const v = (s: string) => `${base}/kron_${s}`;
  const i64 = (name: string, values: number[]) => addConstant(model, v(name), DataType.INT64, [values.length], values);
  const i32 = (name: string, values: number[]) => addConstant(model, v(name), DataType.INT32, [values.length], values);
  const At = new Float32Array(n1 * m1 * R);
  const Bt = new Float32Array(R * n2 * m2);
  f.A.forEach((A, r) => {
    const B = f.B[r]!;
    for (let i = 0; i < m1; i++) for (let j = 0; j < n1; j++) At[(j * m1 + i) * R + r] = A[i * n1 + j]!;
    for (let k = 0; k < m2; k++) for (let l = 0; l < n2; l++) Bt[r * n2 * m2 + l * m2 + k] = B[k * n2 + l]!;
  });
  const a = addConstant(model, `${layer.name}.kron_a`, DataType.FLOAT, [n1 * m1, R], At);
  const b = addConstant(model, `${layer.name}.kron_b`, DataType.FLOAT, [R, n2 * m2], Bt);
  const epilogue = gemmEpilogue(model, layer, base, 'decompose.kronecker');
  const nodes: NodeProto[] = [makeNode('MatMul', [a, b], [v('blocks')], v('MatMul_expand'))];
  const split = [n1, m1, n2, m2];
  if (movesData(split, [0, 2, 1, 3])) {
    nodes.push(
      makeNode('Reshape', [v('blocks'), i64('split_shape', split)], [v('split')], v('Reshape_split')),
      makeNode('Transpose', [v('split')], [v('regrouped')], v('Transpose_expand'), [attr.ints('perm', [0, 2, 1, 3])]),
      makeNode('Reshape', [v('regrouped'), i64('weight_shape', [n, m])], [v('weight')], v('Reshape_weight')),
    );
  } else {
    nodes.push(makeNode('Reshape', [v('blocks'), i64('weight_shape', [n, m])], [v('weight')], v('Reshape_weight')));
  }
  let weight = v('weight');
  if (perms && !isIdentityPermutation(perms.colPerm)) {
    nodes.push(makeNode('Gather', [weight, i32('col_perm_inverse', inversePermutation(perms.colPerm))], [v('weight_cols')], v('Gather_cols'), [attr.int('axis', 0)]));
    weight = v('weight_cols');
  }
  if (perms && !isIdentityPermutation(perms.rowPerm)) {
    nodes.push(makeNode('Gather', [weight, i32('row_perm_inverse', inversePermutation(perms.rowPerm))], [v('weight_rows')], v('Gather_rows'), [attr.int('axis', 1)]));
    weight = v('weight_rows');
  }
  nodes.push(makeNode('MatMul', [layer.input, weight], [epilogue.product], v('MatMul')), ...epilogue.nodes);
  replaceNode(model.graph, layer.node, nodes);
  removeUnused(model);
}
