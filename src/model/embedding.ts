import { DataType } from './dtype.js';
import { attrInt } from './graph.js';
import type { Model } from './model.js';
import { int64ToNumber, type NodeProto } from './onnx-schema.js';

/** The token embedding: a Gather along axis 0 of a 2-D float initializer [vocab, hidden] by a graph input (the token ids). */
export interface TokenEmbedding {
  node: NodeProto;
  /** the table's initializer */
  table: string;
  vocab: number;
  hidden: number;
}

const FLOATS = new Set<number>([DataType.FLOAT, DataType.FLOAT16]);

export function tokenEmbedding(model: Model): TokenEmbedding | undefined {
  const inputs = new Set((model.graph.input ?? []).map((v) => v.name));
  for (const node of model.graph.node ?? []) {
    if (node.op_type !== 'Gather' || (node.domain ?? '') !== '' || attrInt(node, 'axis', 0) !== 0) continue;
    const [table, ids] = node.input ?? [];
    if (!table || !ids || !inputs.has(ids) || !model.hasInitializer(table)) continue;
    const t = model.initializer(table)!;
    const dims = (t.dims ?? []).map(int64ToNumber);
    if (dims.length !== 2 || !FLOATS.has(t.data_type ?? 0)) continue;
    return { node, table, vocab: dims[0]!, hidden: dims[1]! };
  }
  return undefined;
}
