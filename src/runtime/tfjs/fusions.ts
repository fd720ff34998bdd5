import type { NodeProto } from '../../model/onnx-schema.js';
import { attrInt, attrInts } from '../../model/graph.js';
import { isHost, type Val } from './ops/types.js';

/** Domain of the ops the executor substitutes for node patterns; no ONNX file contains them. */
export const FUSED_DOMAIN = 'pare.tfjs';

/**
 * RoPE's rotate-half, `Concat(Neg(x₂), x₁)` over `x₁, x₂ = Split(x)` in halves on the last axis,
 * becomes one `pare.tfjs.RotateHalf(x)` node writing the Concat's output. The Split and Neg stay in
 * the list; the executor's plan drops them when nothing else reads them. The three wasm kernels
 * (strided SplitV and Concat, forward and backward) took ≈ 25 ms of a 4 × 128 stories260K step;
 * RotateHalf is one product with a signed permutation matrix (ops/rotate-half.ts).
 */
export function fuseRotateHalf(nodes: NodeProto[], constants: ReadonlyMap<string, Val>): NodeProto[] {
  const producer = new Map<string, NodeProto>();
  for (const n of nodes) for (const o of n.output ?? []) if (o) producer.set(o, n);
  // Concat(Neg(x₂), x₁), x₁, x₂ = Split(x, axis −1, halves)  ->  RotateHalf(x) = x·[[0, I], [−I, 0]]
  return nodes.map((n) => {
    if (n.op_type !== 'Concat' || (n.domain ?? '') !== '' || n.input?.length !== 2 || attrInt(n, 'axis', 0) !== -1) return n;
    const [negOut, first] = n.input as [string, string];
    const neg = producer.get(negOut);
    if (neg?.op_type !== 'Neg' || (neg.domain ?? '') !== '') return n;
    const split = producer.get(neg.input?.[0] ?? '');
    if (!split || split.op_type !== 'Split' || (split.domain ?? '') !== '' || split.output?.length !== 2 || attrInt(split, 'axis', 0) !== -1) return n;
    if (split.output[0] !== first || split.output[1] !== neg.input![0] || !equalHalves(split, constants)) return n;
    return { name: `${n.name ?? ''}/RotateHalf`, op_type: 'RotateHalf', domain: FUSED_DOMAIN, input: [split.input![0]!], output: [...n.output!] };
  });
}

/** The Split cuts its axis into two equal parts: no sizes (equal split), or two equal constant sizes. */
function equalHalves(split: NodeProto, constants: ReadonlyMap<string, Val>): boolean {
  const sizesInput = split.input?.[1];
  const attr = attrInts(split, 'split');
  if (!sizesInput && !attr) return true;
  if (attr) return attr.length === 2 && attr[0] === attr[1];
  const v = constants.get(sizesInput!);
  return v !== undefined && isHost(v) && v.size === 2 && v.data[0] === v.data[1];
}
