import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/model/dtype.js';
import { makeNode } from '../../src/model/graph.js';
import { insertBefore, redirectReaders, removeNodes, removeValueInfo, renameValueInfo, replaceNode } from '../../src/model/graph-edit.js';
import { Model } from '../../src/model/model.js';
import type { GraphProto, NodeProto, ValueInfoProto } from '../../src/model/onnx-schema.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';

const names = (g: GraphProto) => (g.node ?? []).map((n) => n.name);
const value = (name: string, dims: number[]): ValueInfoProto => ({ name, type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: dims.map((d) => ({ dim_value: d })) } } } });

/** a → b → c → d, each reading the previous one's output; x in, d out */
function chain(): GraphProto {
  const node = ['a', 'b', 'c', 'd'].map((n, i, all) => makeNode('Relu', [i === 0 ? 'x' : `${all[i - 1]}_out`], [`${n}_out`], n));
  return { name: 'chain', node, input: [value('x', [2])], output: [value('d_out', [2])], value_info: [value('b_out', [2]), value('c_out', [2])] };
}

describe('graph edits', () => {
  it('replaceNode puts the new nodes in the old one\'s place, in order; the rest keep theirs', () => {
    const g = chain();
    const [b1, b2] = [makeNode('Relu', ['a_out'], ['t'], 'b1'), makeNode('Relu', ['t'], ['b_out'], 'b2')];
    replaceNode(g, g.node![1]!, [b1, b2]);
    expect(names(g)).toEqual(['a', 'b1', 'b2', 'c', 'd']);
    replaceNode(g, g.node![4]!, [makeNode('Identity', ['c_out'], ['d_out'], 'd_id')]);
    expect(names(g)).toEqual(['a', 'b1', 'b2', 'c', 'd_id']);
    replaceNode(g, g.node![0]!, []);
    expect(names(g)).toEqual(['b1', 'b2', 'c', 'd_id']);
  });

  it('insertBefore puts the nodes right before the anchor, in order', () => {
    const g = chain();
    insertBefore(g, g.node![0]!, [makeNode('Abs', ['x'], ['x_abs'], 'p'), makeNode('Neg', ['x_abs'], ['x_neg'], 'q')]);
    insertBefore(g, g.node![5]!, [makeNode('Abs', ['c_out'], ['c_abs'], 'r')]);
    expect(names(g)).toEqual(['p', 'q', 'a', 'b', 'c', 'r', 'd']);
  });

  it('a node that is not in the graph is an error, never an edit at the wrong place', () => {
    const g = chain();
    const stranger: NodeProto = makeNode('Relu', ['x'], ['y'], 'stranger');
    expect(() => replaceNode(g, stranger, [])).toThrow("replaceNode: node 'stranger' is not in graph 'chain'");
    expect(() => insertBefore(g, stranger, [])).toThrow("insertBefore: node 'stranger' is not in graph 'chain'");
    expect(names(g)).toEqual(['a', 'b', 'c', 'd']);
  });

  it('removeNodes drops what it picks, keeps the order of the rest and counts what it dropped', () => {
    const g = chain();
    expect(removeNodes(g, (n) => n.name === 'b' || n.name === 'd')).toBe(2);
    expect(names(g)).toEqual(['a', 'c']);
    expect(removeNodes(g, () => false)).toBe(0);
    expect(names(g)).toEqual(['a', 'c']);
  });

  it('redirectReaders rewires node inputs and graph outputs; a subgraph reads the new value unless it defines the name itself', () => {
    const g = chain();
    const body = (defines: boolean): GraphProto => ({ node: [makeNode('Identity', ['c_out'], defines ? ['c_out'] : ['inner'], 'inner')] });
    const open = body(false);
    const shadowing = body(true);
    g.node!.push({ op_type: 'If', name: 'if', input: ['cond'], output: ['if_out'], attribute: [{ name: 'then_branch', g: open }, { name: 'else_branch', g: shadowing }] });
    g.output!.push(value('c_out', [2]));
    redirectReaders(g, 'c_out', 'b_out');
    expect(g.node!.find((n) => n.name === 'd')!.input).toEqual(['b_out']);
    expect(g.output!.map((o) => o.name)).toEqual(['d_out', 'b_out']);
    expect(open.node![0]!.input).toEqual(['b_out']);
    expect(shadowing.node![0]!.input).toEqual(['c_out']);
    expect(g.value_info!.map((v) => v.name)).toEqual(['b_out', 'c_out']); // annotations describe values, not readers
  });

  it('value lists: rename and remove by name in graph inputs, outputs and value_info', () => {
    const g = chain();
    renameValueInfo(g, 'value_info', 'b_out', 'b_renamed');
    renameValueInfo(g, 'input', 'x', 'x_renamed');
    expect([g.input!.map((v) => v.name), g.value_info!.map((v) => v.name)]).toEqual([['x_renamed'], ['b_renamed', 'c_out']]);
    removeValueInfo(g, 'value_info', 'b_renamed');
    removeValueInfo(g, 'output', 'd_out');
    removeValueInfo(g, 'input', 'not there');
    expect([g.input!.length, g.output, g.value_info!.map((v) => v.name)]).toEqual([1, [], ['c_out']]);
    expect(g.value_info![0]!.type?.tensor_type?.shape?.dim).toEqual([{ dim_value: 2 }]);
  });

  it('MatMul(x, W) -> MatMul(MatMul(x, A), B) with W = A·B exactly: ONNX Runtime gives the same output', async () => {
    // A [3, 2] and B [2, 4] of small integers, so W = A·B and both products are exact in float32
    const A = [1, 2, -1, 0, 3, 1];
    const B = [2, 0, 1, -1, 1, 3, 0, 2];
    const W = Array.from({ length: 12 }, (_, k) => A[Math.floor(k / 4) * 2]! * B[k % 4]! + A[Math.floor(k / 4) * 2 + 1]! * B[4 + (k % 4)]!);
    const f32 = (name: string, dims: number[], v: number[]) => ({ name, data_type: DataType.FLOAT, dims, raw_data: new Uint8Array(Float32Array.from(v).buffer) });
    const graph: GraphProto = {
      name: 'g',
      node: [makeNode('Relu', ['x'], ['h'], 'relu'), makeNode('MatMul', ['h', 'W'], ['y'], 'mm')],
      initializer: [f32('W', [3, 4], W), f32('A', [3, 2], A), f32('B', [2, 4], B)],
      input: [value('x', [2, 3])],
      output: [value('y', [2, 4])],
    };
    const model = new Model({ ir_version: 8, opset_import: [{ domain: '', version: 17 }], graph }, 'in-memory.onnx');
    const x = new ort.Tensor('float32', Float32Array.from([1, -2, 3, 0.5, 4, -1]), [2, 3]);
    const run = async () => {
      const s = await sessionFromModel(model, { threads: 1 });
      try {
        return Array.from((await s.run({ x })).y!.data as Float32Array);
      } finally {
        await s.release();
      }
    };
    const before = await run();
    replaceNode(graph, graph.node![1]!, [makeNode('MatMul', ['h', 'A'], ['t'], 'mm/a'), makeNode('MatMul', ['t', 'B'], ['y'], 'mm/b')]);
    expect(names(graph)).toEqual(['relu', 'mm/a', 'mm/b']);
    expect(await run()).toEqual(before);
  });
});
