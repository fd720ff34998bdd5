import { makeNode } from '../../src/model/graph.js';
import { Model } from '../../src/model/model.js';
import { seededRandom } from '../../src/pipeline/pass.js';

/** x [batch, k] · W [k, n] with seeded weights. */
export function singleMatMul(k: number, n: number): Model {
  const r = seededRandom(k * n);
  const W = Float32Array.from({ length: k * n }, () => r() - 0.5);
  const tensorType = (dims: (number | string)[]) => ({ tensor_type: { elem_type: 1, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } });
  return new Model(
    {
      ir_version: 8,
      opset_import: [{ domain: '', version: 17 }],
      graph: {
        name: 'single-matmul',
        node: [makeNode('MatMul', ['x', 'W'], ['y'], '/proj/MatMul')],
        initializer: [{ name: 'W', data_type: 1, dims: [k, n], raw_data: new Uint8Array(W.buffer) }],
        input: [{ name: 'x', type: tensorType(['batch', k]) }],
        output: [{ name: 'y', type: tensorType(['batch', n]) }],
      },
    },
    'single-matmul.onnx',
  );
}

