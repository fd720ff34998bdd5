import type { GraphProto, NodeProto, ValueInfoProto } from './onnx-schema.js';

/**
 * The edits a graph rewrite makes, in one place. New nodes go exactly where the node they replace or
 * precede was, so a topologically sorted node list stays sorted and the output's node order is a
 * function of the input's alone (same input, recipe and seed: same bytes).
 */

function indexOf(graph: GraphProto, node: NodeProto, edit: string): number {
  const i = (graph.node ?? []).indexOf(node);
  if (i < 0) throw new Error(`${edit}: node '${node.name ?? node.op_type}' is not in graph '${graph.name ?? ''}'`);
  return i;
}

/** `old` leaves the graph and `nodes` take its place, in order. */
export function replaceNode(graph: GraphProto, old: NodeProto, nodes: readonly NodeProto[]): void {
  graph.node!.splice(indexOf(graph, old, 'replaceNode'), 1, ...nodes);
}

/** `nodes` go right before `anchor`, in order: new producers of values `anchor` will read. */
export function insertBefore(graph: GraphProto, anchor: NodeProto, nodes: readonly NodeProto[]): void {
  graph.node!.splice(indexOf(graph, anchor, 'insertBefore'), 0, ...nodes);
}

/** Drops every node `drop` picks; the others keep their order. Returns how many were dropped. */
export function removeNodes(graph: GraphProto, drop: (node: NodeProto) => boolean): number {
  const before = graph.node?.length ?? 0;
  graph.node = (graph.node ?? []).filter((n) => !drop(n));
  return before - graph.node.length;
}

/**
 * Every reader of value `from` reads `to` instead: node inputs, subgraph bodies that read it from
 * this scope, and graph outputs (renamed, so the model's output takes the new name).
 */
export function redirectReaders(graph: GraphProto, from: string, to: string): void {
  redirectNodeInputs(graph.node ?? [], from, to);
  renameValueInfo(graph, 'output', from, to);
}

function redirectNodeInputs(nodes: readonly NodeProto[], from: string, to: string): void {
  for (const n of nodes) {
    const input = n.input ?? [];
    for (let i = 0; i < input.length; i++) if (input[i] === from) input[i] = to;
    for (const a of n.attribute ?? []) {
      for (const g of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) if (!definesLocally(g, from)) redirectNodeInputs(g.node ?? [], from, to);
    }
  }
}

/** A subgraph that defines `name` itself shadows the outer value of that name. */
function definesLocally(g: GraphProto, name: string): boolean {
  return (
    (g.initializer ?? []).some((t) => t.name === name) || (g.input ?? []).some((v) => v.name === name) || (g.node ?? []).some((n) => (n.output ?? []).includes(name))
  );
}

/** The graph's value lists: its inputs, its outputs, and the intermediate values' type annotations. */
export type ValueList = 'input' | 'output' | 'value_info';

/** Entries of `list` named `from` are named `to`, in place. */
export function renameValueInfo(graph: GraphProto, list: ValueList, from: string, to: string): void {
  for (const v of graph[list] ?? []) if (v.name === from) v.name = to;
}

/** Entries of `list` named `name` leave it; the others keep their order. */
export function removeValueInfo(graph: GraphProto, list: ValueList, name: string): void {
  const values: ValueInfoProto[] | undefined = graph[list];
  if (values) graph[list] = values.filter((v) => v.name !== name);
}
