import { GraphIndex } from './graph.js';
import type { Model } from './model.js';
import type { NodeProto, ValueInfoProto } from './onnx-schema.js';

/**
 * Slicing a graph: the nodes a set of values needs when some values are already known (fed in),
 * and that slice as a stand-alone Model whose inputs are the known values it reads.
 */

export interface Slice {
  /** the nodes to run, in graph order */
  nodes: NodeProto[];
  /** values the slice reads but does not compute (known values and graph inputs), initializers excluded */
  reads: string[];
}

/** True when a node carries a subgraph (If, Loop, Scan): its outer-scope reads are not in `input`. */
export function hasSubgraph(node: NodeProto): boolean {
  return (node.attribute ?? []).some((a) => Boolean(a.g) || (a.graphs?.length ?? 0) > 0);
}

/**
 * The nodes needed to compute `targets` when every value with `known(name)` true is given, walking
 * producers backwards; initializers and unproduced values (graph inputs) end the walk.
 */
export function sliceFor(model: Model, index: GraphIndex, targets: readonly string[], known: (name: string) => boolean): Slice {
  const nodes = new Set<NodeProto>();
  const reads = new Set<string>();
  const seen = new Set<string>();
  const stack = [...targets];
  while (stack.length > 0) {
    const name = stack.pop()!;
    if (!name || seen.has(name)) continue;
    seen.add(name);
    if (model.hasInitializer(name)) continue;
    const producer = index.producer.get(name);
    if (known(name) || !producer) {
      reads.add(name);
      continue;
    }
    if (nodes.has(producer)) continue;
    nodes.add(producer);
    for (const i of producer.input ?? []) stack.push(i);
  }
  return { nodes: (model.graph.node ?? []).filter((n) => nodes.has(n)), reads: [...reads] };
}

/**
 * `nodes` of `model` as their own Model: `inputs` become graph inputs, only the initializers the
 * nodes read are kept (external and spilled ones still read through the original), no outputs (the
 * caller names them when it builds a session).
 */
export function subModel(model: Model, nodes: NodeProto[], inputs: ValueInfoProto[]): Model {
  const used = new Set(nodes.flatMap((n) => n.input ?? []));
  const produced = new Set(nodes.flatMap((n) => n.output ?? []));
  const graph = model.graph;
  return model.derive({
    ...model.proto,
    graph: {
      ...graph,
      node: nodes,
      input: inputs,
      output: [],
      initializer: (graph.initializer ?? []).filter((t) => used.has(t.name ?? '')),
      value_info: (graph.value_info ?? []).filter((v) => produced.has(v.name ?? '')),
    },
  });
}
