import type { NodeProto } from '../../model/onnx-schema.js';

/**
 * The executor's static view of the graph: nodes in dependency order, which values change from run
 * to run (they depend on feed values or trainable weights), and the nodes each output set needs.
 */
export interface Step {
  node: NodeProto;
  inputs: string[];
  outputs: string[];
  /** true when the outputs depend only on constants and feed shapes (cached per feed-shape signature) */
  isStatic: boolean;
}

/** Kahn's order over the nodes; ONNX requires sorted graphs, but rewritten graphs may not be. */
export function topoSort(nodes: NodeProto[], available: Set<string>): NodeProto[] {
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => (n.output ?? []).forEach((o) => o && producer.set(o, i)));
  const order: NodeProto[] = [];
  const state = new Uint8Array(nodes.length); // 0 new, 1 visiting, 2 done
  const visit = (i: number) => {
    if (state[i] === 2) return;
    if (state[i] === 1) throw new Error(`graph has a cycle through node '${nodes[i]!.name}'`);
    state[i] = 1;
    for (const inp of nodes[i]!.input ?? []) {
      if (!inp || available.has(inp)) continue;
      const p = producer.get(inp);
      if (p !== undefined) visit(p);
    }
    state[i] = 2;
    order.push(nodes[i]!);
  };
  nodes.forEach((_, i) => visit(i));
  return order;
}

/** Steps in order, each marked static or dynamic. `dynamicSources`: feeds and trainable initializers. */
export function buildSteps(ordered: NodeProto[], dynamicSources: Set<string>): Step[] {
  const dynamic = new Set(dynamicSources);
  return ordered.map((node) => {
    const inputs = [...(node.input ?? [])];
    const outputs = [...(node.output ?? [])];
    // Shape reads only the feed's shape, which is part of the cache key
    const isStatic = node.op_type === 'Shape' || !inputs.some((i) => i && dynamic.has(i));
    if (!isStatic) outputs.forEach((o) => o && dynamic.add(o));
    return { node, inputs, outputs, isStatic };
  });
}

/** The steps needed for `outputs`, in order. */
export function stepsFor(steps: Step[], outputs: string[]): Step[] {
  const need = new Set(outputs);
  const keep = new Array<boolean>(steps.length).fill(false);
  for (let i = steps.length - 1; i >= 0; i--) {
    const s = steps[i]!;
    if (!s.outputs.some((o) => need.has(o))) continue;
    keep[i] = true;
    for (const inp of s.inputs) if (inp) need.add(inp);
  }
  return steps.filter((_, i) => keep[i]);
}
