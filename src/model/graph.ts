import { AttributeType, int64ToNumber, type AttributeProto, type GraphProto, type NodeProto, type TensorProto } from './onnx-schema.js';

export function findAttribute(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute?.find((a) => a.name === name);
}

export function attrInt(node: NodeProto, name: string, fallback: number): number {
  const a = findAttribute(node, name);
  return a ? int64ToNumber(a.i) : fallback;
}

export function attrInts(node: NodeProto, name: string): number[] | undefined {
  const a = findAttribute(node, name);
  return a ? (a.ints ?? []).map(int64ToNumber) : undefined;
}

export function attrFloat(node: NodeProto, name: string, fallback: number): number {
  const a = findAttribute(node, name);
  return a?.f ?? fallback;
}

export function attrString(node: NodeProto, name: string, fallback: string): string {
  const a = findAttribute(node, name);
  return a?.s ? Buffer.from(a.s).toString('utf8') : fallback;
}

export const attr = {
  int: (name: string, i: number): AttributeProto => ({ name, type: AttributeType.INT, i }),
  ints: (name: string, ints: number[]): AttributeProto => ({ name, type: AttributeType.INTS, ints }),
  float: (name: string, f: number): AttributeProto => ({ name, type: AttributeType.FLOAT, f }),
  floats: (name: string, floats: number[]): AttributeProto => ({ name, type: AttributeType.FLOATS, floats }),
  string: (name: string, s: string): AttributeProto => ({ name, type: AttributeType.STRING, s: Buffer.from(s, 'utf8') }),
  tensor: (name: string, t: TensorProto): AttributeProto => ({ name, type: AttributeType.TENSOR, t }),
};

export function makeNode(
  opType: string,
  inputs: string[],
  outputs: string[],
  name: string,
  attributes: AttributeProto[] = [],
  domain = '',
): NodeProto {
  const node: NodeProto = { op_type: opType, input: inputs, output: outputs, name, attribute: attributes };
  if (domain) node.domain = domain;
  return node;
}

/** Who produces and who consumes each value name. Rebuild after rewriting the graph. */
export class GraphIndex {
  readonly producer = new Map<string, NodeProto>();
  readonly consumers = new Map<string, NodeProto[]>();

  constructor(graph: GraphProto) {
    for (const n of graph.node ?? []) {
      for (const o of n.output ?? []) if (o) this.producer.set(o, n);
      for (const i of [...(n.input ?? []), ...subgraphReads(n)]) {
        if (!i) continue;
        const list = this.consumers.get(i);
        if (list) list.push(n);
        else this.consumers.set(i, [n]);
      }
    }
    for (const o of graph.output ?? []) {
      // graph outputs count as a consumer so a rewrite never drops them
      const list = this.consumers.get(o.name ?? '');
      const marker: NodeProto = { op_type: '<graph output>', input: [o.name ?? ''], output: [] };
      if (list) list.push(marker);
      else this.consumers.set(o.name ?? '', [marker]);
    }
  }

  consumerCount(name: string): number {
    return this.consumers.get(name)?.length ?? 0;
  }
}

/** Names a node's subgraphs (If/Loop/Scan bodies) read from the enclosing scope. */
function subgraphReads(node: NodeProto): string[] {
  const reads: string[] = [];
  for (const a of node.attribute ?? []) {
    for (const g of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) {
      const local = new Set<string>([...(g.initializer ?? []).map((t) => t.name ?? ''), ...(g.input ?? []).map((v) => v.name ?? '')]);
      for (const n of g.node ?? []) for (const o of n.output ?? []) local.add(o);
      for (const n of g.node ?? []) for (const i of [...(n.input ?? []), ...subgraphReads(n)]) if (i && !local.has(i)) reads.push(i);
    }
  }
  return reads;
}
