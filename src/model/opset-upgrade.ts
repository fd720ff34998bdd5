import { UserError } from '../errors.js';
import { DataType } from './dtype.js';
import { attr, attrInt, attrInts, attrString, findAttribute, makeNode } from './graph.js';
import { insertBefore, replaceNode } from './graph-edit.js';
import { uniqueInitializerName } from './linear-weights.js';
import type { Model } from './model.js';
import { int64ToNumber, type NodeProto } from './onnx-schema.js';

/**
 * Upgrading a model's default-domain opset, op by op, as ONNX's version converter does: for every
 * version in (from, to] at which an op's schema changed, either the change keeps what the node
 * computes (new types, new optional inputs: nothing to do) or a rule rewrites the node to the new
 * schema (an attribute that became an input, a changed default, changed axis semantics). An op
 * without an entry, or a change without a rule, is refused naming the op and the version.
 *
 *   Squeeze/Unsqueeze@13, ReduceMean@18, Split@13: axes/split attribute -> int64 constant input
 *   Pad@11, Clip@11, Slice@10, Dropout@12: attributes -> constant inputs
 *   Reshape@5: shape attribute -> input          Upsample@10 -> Resize;  Resize@11: asymmetric coordinates
 *   BatchNormalization@6/7/9/14: legacy attributes and training outputs dropped
 *   Softmax/LogSoftmax/Hardmax@13: x -> Reshape(Op(Flatten(x, axis), axis=-1), Shape(x))   (pre-13 coerces to 2-D)
 */

type Rule = (u: Upgrade, node: NodeProto) => void;

interface Upgrade {
  model: Model;
  node: NodeProto;
  /** a new int64 (or float) constant named after the node */
  constant(suffix: string, values: number[], dataType?: number, dims?: number[]): string;
}

/** Versions at which each op's schema changed (its since_version list); `rules` rewrite the node at those that need it. */
const OPS: Record<string, { since: number[]; rules?: Record<number, Rule> }> = {};

function op(names: string[], since: number[], rules?: Record<number, Rule>): void {
  for (const n of names) OPS[n] = { since, rules };
}

const dropAttributes =
  (...names: string[]): Rule =>
  (_u, node) => {
    node.attribute = (node.attribute ?? []).filter((a) => !names.includes(a.name ?? ''));
  };

/** The attribute `name` (ints) becomes input `index` (an int64 constant); an absent attribute leaves the input absent. */
const intsToInput =
  (name: string, index: number): Rule =>
  (u, node) => {
    const values = attrInts(node, name);
    dropAttributes(name)(u, node);
    if (values === undefined) return;
    const input = node.input ?? [];
    while (input.length < index) input.push('');
    input[index] = u.constant(name, values);
    node.input = input;
  };

const consumedInputs = dropAttributes('consumed_inputs');
const legacyBroadcast: Rule = (u, node) => {
  if (attrInt(node, 'broadcast', 0) === 1 && findAttribute(node, 'axis')) throw refusal(u, node, 7, 'its legacy broadcast along an axis');
  dropAttributes('broadcast', 'axis')(u, node);
};

function refusal(u: Upgrade, node: NodeProto, version: number, what: string): UserError {
  return new UserError(`${u.model.path}: cannot upgrade ${node.op_type}${node.name ? ` '${node.name}'` : ''} past opset ${version - 1}: pare has no rule for ${what}`);
}

// ops whose changes in these versions are new types or optional inputs only (consumed_inputs went at 6)
op(['Relu', 'Sigmoid', 'Tanh', 'Exp', 'Log', 'Sqrt', 'Abs', 'Neg', 'Floor', 'Ceil', 'Reciprocal', 'Elu', 'Selu', 'HardSigmoid', 'LeakyRelu'], [1, 6, 13, 14, 16, 22], { 6: consumedInputs });
op(['Add', 'Sub', 'Mul', 'Div'], [1, 6, 7, 13, 14], { 6: consumedInputs, 7: legacyBroadcast });
op(['Max', 'Min', 'Sum', 'Mean'], [1, 6, 8, 12, 13], { 6: consumedInputs });
op(['Pow'], [1, 7, 12, 13, 15], { 7: legacyBroadcast });
op(['PRelu'], [1, 6, 7, 9, 16], { 6: consumedInputs });
op(['Conv', 'ConvTranspose'], [1, 11, 22]);
op(['MaxPool'], [1, 8, 10, 11, 12, 22]);
op(['AveragePool'], [1, 7, 10, 11, 19, 22]);
op(['GlobalAveragePool', 'GlobalMaxPool', 'LRN', 'InstanceNormalization'], [1, 6, 13, 22], { 6: consumedInputs });
op(['Gemm'], [1, 6, 7, 9, 11, 13], { 7: dropAttributes('broadcast') });
op(['MatMul'], [1, 9, 13]);
op(['Flatten'], [1, 9, 11, 13, 21]);
op(['Transpose', 'Gather', 'Shape', 'Identity', 'Cast', 'Constant', 'Erf', 'Expand', 'Where', 'Equal', 'Greater', 'Less', 'Not', 'ConstantOfShape', 'ArgMax', 'ArgMin'], [1, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 19, 20, 21]);
op(['Tile'], [1, 6, 13]);
op(['Sin', 'Cos'], [7, 22]);
op(['Range'], [11]);
op(['Einsum'], [12]);
op(['Trilu'], [14]);
op(['LayerNormalization'], [17]);
op(['Gelu'], [20]);
op(['GreaterOrEqual', 'LessOrEqual'], [12, 16]);
op(['And', 'Or', 'Xor'], [1, 7]);
op(['Mod'], [10, 13]);
op(['Size'], [1, 13, 19, 21]);
op(['CumSum'], [11, 14]);
op(['ScatterND'], [11, 13, 16, 18]);
op(['IsNaN', 'IsInf'], [9, 10, 13, 20]);
op(['Sign'], [9, 13]);
op(['Softplus', 'Softsign'], [1, 22]);
op(['HardSwish'], [14, 22]);
op(['Concat'], [1, 4, 11, 13], {
  4: (u, node) => {
    if (!findAttribute(node, 'axis')) node.attribute = [...(node.attribute ?? []), attr.int('axis', 1)];
  },
});
op(['Reshape'], [1, 5, 13, 14, 19, 21], { 5: intsToInput('shape', 1) });
op(['Squeeze', 'Unsqueeze'], [1, 11, 13, 21], { 13: intsToInput('axes', 1) });
op(['ReduceMean', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL1', 'ReduceL2', 'ReduceLogSumExp', 'ReduceSumSquare'], [1, 11, 13, 18, 20], { 18: intsToInput('axes', 1) });
op(['ReduceSum'], [1, 11, 13], { 13: intsToInput('axes', 1) });
op(['Pad'], [1, 2, 11, 13, 18, 19, 21], {
  11: (u, node) => {
    const value = findAttribute(node, 'value')?.f ?? 0;
    intsToInput('pads', 1)(u, node);
    dropAttributes('value')(u, node);
    if (value !== 0) node.input = [...node.input!, u.constant('constant_value', [value], DataType.FLOAT, [])];
  },
});
op(['Clip'], [1, 6, 11, 12, 13], {
  6: consumedInputs,
  11: (u, node) => {
    const min = findAttribute(node, 'min')?.f;
    const max = findAttribute(node, 'max')?.f;
    dropAttributes('min', 'max')(u, node);
    node.input = [node.input![0]!, min === undefined ? '' : u.constant('min', [min], DataType.FLOAT, []), max === undefined ? '' : u.constant('max', [max], DataType.FLOAT, [])];
    while (node.input.at(-1) === '') node.input.pop();
  },
});
op(['Slice'], [1, 10, 11, 13], {
  10: (u, node) => {
    const [starts, ends, axes] = ['starts', 'ends', 'axes'].map((n) => attrInts(node, n));
    dropAttributes('starts', 'ends', 'axes')(u, node);
    node.input = [node.input![0]!, u.constant('starts', starts ?? []), u.constant('ends', ends ?? []), ...(axes ? [u.constant('axes', axes)] : [])];
  },
});
op(['Split'], [1, 2, 11, 13, 18], {
  13: intsToInput('split', 1),
  18: (_u, node) => {
    if (!node.input?.[1]) node.attribute = [...(node.attribute ?? []), attr.int('num_outputs', (node.output ?? []).length)];
  },
});
op(['Dropout'], [1, 6, 7, 10, 12, 13, 22], {
  6: consumedInputs,
  7: dropAttributes('is_test'),
  // inference ignores the ratio; the attribute goes
  12: dropAttributes('ratio'),
});
op(['BatchNormalization'], [1, 6, 7, 9, 14, 15], {
  6: (u, node) => {
    consumedInputs(u, node);
    dropAttributes('is_test')(u, node);
  },
  9: (u, node) => {
    if (attrInt(node, 'spatial', 1) !== 1) throw refusal(u, node, 9, 'spatial: 0');
    dropAttributes('spatial')(u, node);
  },
  14: (u, node) => {
    if ((node.output ?? []).slice(1).some((o) => o && readers(u.model, o))) throw refusal(u, node, 14, 'its training outputs');
    node.output = node.output!.slice(0, 1);
  },
});
op(['Upsample'], [7, 9, 10], {
  9: (u, node) => {
    const scales = findAttribute(node, 'scales')?.floats;
    dropAttributes('scales')(u, node);
    if (scales) node.input = [node.input![0]!, u.constant('scales', scales, DataType.FLOAT)];
  },
  10: (_u, node) => {
    node.op_type = 'Resize';
  },
});
op(['Resize'], [10, 11, 13, 18, 19], {
  11: (u, node) => {
    // opset 10 sampled at asymmetric coordinates and rounded nearest down
    node.input = [node.input![0]!, '', node.input![1]!];
    node.attribute = [...(node.attribute ?? []), attr.string('coordinate_transformation_mode', 'asymmetric')];
    if (attrString(node, 'mode', 'nearest') === 'nearest') node.attribute.push(attr.string('nearest_mode', 'floor'));
  },
});
op(['Softmax', 'LogSoftmax', 'Hardmax'], [1, 11, 13], {
  13: (u, node) => {
    const axis = attrInt(node, 'axis', 1);
    const producer = (u.model.graph.node ?? []).find((n) => n.output?.includes(node.input![0]!));
    dropAttributes('axis')(u, node);
    // a 2-D input normalised over its last axis means the same in both semantics
    if ((axis === 1 || axis === -1) && (producer?.op_type === 'Gemm' || producer?.op_type === 'Flatten')) {
      node.attribute = [...(node.attribute ?? []), attr.int('axis', -1)];
      return;
    }
    const x = node.input![0]!;
    const out = node.output![0]!;
    const base = node.name || out;
    const flat = makeNode('Flatten', [x], [`${base}/flat`], `${base}/Flatten`, [attr.int('axis', axis)]);
    const shape = makeNode('Shape', [x], [`${base}/shape`], `${base}/Shape`);
    node.input = [`${base}/flat`];
    node.output = [`${base}/flat_out`];
    node.attribute = [...(node.attribute ?? []), attr.int('axis', -1)];
    insertBefore(u.model.graph, node, [flat, shape]);
    replaceNode(u.model.graph, node, [node, makeNode('Reshape', [`${base}/flat_out`, `${base}/shape`], [out], `${base}/Reshape`)]);
  },
});
op(['QuantizeLinear', 'DequantizeLinear'], [10, 13, 19, 21]);
op(['QLinearConv', 'QLinearMatMul', 'ConvInteger', 'MatMulInteger'], [10, 21]);

function readers(model: Model, value: string): boolean {
  return (model.graph.node ?? []).some((n) => n.input?.includes(value)) || (model.graph.output ?? []).some((o) => o.name === value);
}

/** The lowest IR version that may import each opset (ONNX's versioning table). */
function irFor(opset: number): number {
  if (opset >= 21) return 10;
  if (opset >= 19) return 9;
  if (opset >= 15) return 8;
  if (opset >= 12) return 7;
  if (opset >= 11) return 6;
  if (opset >= 10) return 5;
  return 3;
}

/** The highest default-domain opset pare has rules up to. */
export const MAX_UPGRADE_OPSET = 21;

/**
 * Rewrite `model` in place to import default-domain opset `to`; a model already at `to` is left
 * as it is. Returns the ops whose nodes changed, for the report.
 */
export function upgradeOpset(model: Model, to: number): { from: number; to: number; rewritten: Record<string, number> } {
  const from = model.opset();
  if (to === from) return { from, to, rewritten: {} };
  if (to < from) throw new UserError(`${model.path}: --opset ${to} is lower than the model's opset ${from}; pare upgrades only`);
  if (to > MAX_UPGRADE_OPSET) throw new UserError(`--opset ${to}: pare upgrades up to opset ${MAX_UPGRADE_OPSET}`);
  const unknown = [...new Set((model.graph.node ?? []).filter((n) => !n.domain || n.domain === 'ai.onnx').map((n) => n.op_type ?? '').filter((o) => !OPS[o]))];
  if (unknown.length) throw new UserError(`${model.path}: cannot upgrade from opset ${from} to ${to}: pare has no upgrade rules for ${unknown.join(', ')}`);
  // a subgraph (If, Loop) would need the same walk; none of the ops above has one
  const rewritten: Record<string, number> = {};
  for (const node of [...(model.graph.node ?? [])]) {
    if (node.domain && node.domain !== 'ai.onnx') continue;
    const entry = OPS[node.op_type ?? '']!;
    const u: Upgrade = {
      model,
      node,
      constant: (suffix, values, dataType = DataType.INT64, dims = [values.length]) => {
        const name = uniqueInitializerName(model, `${node.name || node.output![0]}/${suffix}`);
        const data = dataType === DataType.INT64 ? new Uint8Array(BigInt64Array.from(values, (v) => BigInt(v)).buffer) : new Uint8Array(Float32Array.from(values).buffer);
        model.setInitializer({ name, dataType, dims, data });
        return name;
      },
    };
    for (const v of entry.since) {
      if (v <= from || v > to) continue;
      const opBefore = node.op_type;
      const rule = entry.rules?.[v];
      if (!rule) continue;
      rule(u, node);
      rewritten[opBefore!] = (rewritten[opBefore!] ?? 0) + 1;
      // Upsample became Resize: its later versions are Resize's
      if (node.op_type !== opBefore) {
        for (const w of OPS[node.op_type!]!.since) if (w > v && w <= to) OPS[node.op_type!]!.rules?.[w]?.(u, node);
        break;
      }
    }
  }
  const imports = (model.proto.opset_import ??= []);
  const own = imports.find((o) => !o.domain || o.domain === 'ai.onnx');
  if (own) own.version = to;
  else imports.push({ domain: '', version: to });
  model.proto.ir_version = Math.max(int64ToNumber(model.proto.ir_version ?? 0), irFor(to));
  return { from, to, rewritten };
}
