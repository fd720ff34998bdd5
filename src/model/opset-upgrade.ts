import { UserError } from '../errors.js';
import { DataType } from './dtype.js';
import { attrInts } from './graph.js';
import { addConstant } from './linear-weights.js';
import type { Model } from './model.js';
import type { GraphProto, NodeProto } from './onnx-schema.js';

/**
 * Raise a model's default-domain opset from 13..20 to a newer one, rewriting the operators whose
 * signature changed in between so the graph computes the same values. Between 13 and 21 that is
 * the Reduce family (opset 18 moved `axes` from an attribute to an input); every other change in
 * that range adds types or optional attributes whose defaults keep the old behaviour, except a few
 * operators whose meaning changed, which are refused.
 */

const AXES_TO_INPUT_AT_18 = new Set(['ReduceMean', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceSumSquare']);

/** Operators whose outputs or inputs changed meaning after opset 13 (with the version that changed them). */
const CHANGED_MEANING: Record<string, number> = { GroupNormalization: 21, DFT: 20, GridSample: 20 };

const OLDEST_UPGRADABLE = 13;

function eachNode(graph: GraphProto, visit: (node: NodeProto) => void): void {
  for (const node of graph.node ?? []) {
    visit(node);
    for (const a of node.attribute ?? []) {
      if (a.g) eachNode(a.g, visit);
      for (const g of a.graphs ?? []) eachNode(g, visit);
    }
  }
}

/** Raise the default-domain opset to `target` in place; a no-op when the model already imports it or newer. */
export function upgradeOpset(model: Model, target: number, why: string): void {
  const from = model.opset();
  if (from >= target) return;
  const refuse = (what: string) => new UserError(`${model.path}: cannot raise ONNX opset ${from} to ${target} (${why}): ${what}`);
  if (from < OLDEST_UPGRADABLE) throw refuse(`pare rewrites models from opset ${OLDEST_UPGRADABLE} on; convert it with onnx.version_converter first`);
  if ((model.proto.functions?.length ?? 0) > 0) throw refuse('the model defines local functions, which import opsets of their own');
  eachNode(model.graph, (node) => {
    const op = node.op_type ?? '';
    if ((node.domain ?? '') !== '' && node.domain !== 'ai.onnx') return;
    const changedAt = CHANGED_MEANING[op];
    if (changedAt !== undefined && from < changedAt && target >= changedAt) throw refuse(`node '${node.name ?? op}' is a ${op}, whose meaning changed at opset ${changedAt}`);
    if (AXES_TO_INPUT_AT_18.has(op) && from < 18 && target >= 18) {
      const axes = attrInts(node, 'axes');
      node.attribute = (node.attribute ?? []).filter((a) => a.name !== 'axes');
      if (axes) node.input = [node.input![0]!, addConstant(model, `${node.name || op}.axes`, DataType.INT64, [axes.length], axes)];
    }
  });
  for (const o of model.proto.opset_import ?? []) if ((o.domain ?? '') === '' || o.domain === 'ai.onnx') o.version = target;
  // IR 10 is the first to carry 4-bit tensors, which opset 21 brings
  if (target >= 21 && Number(model.proto.ir_version ?? 0) < 10) model.proto.ir_version = 10;
}
