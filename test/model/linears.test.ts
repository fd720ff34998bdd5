import { describe, expect, it } from 'vitest';
import { readOnnx } from '../../src/model/onnx-io.js';
import { linears } from '../../src/model/linears.js';
import { attr, makeNode } from '../../src/model/graph.js';
import { Model } from '../../src/model/model.js';
import { readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { toFloat32 } from '../../src/model/pack.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { convNet } from '../../fixtures/generate-convnet.js';
import { FIXTURES, itWithShared, SHARED_MODELS } from '../helpers.js';

describe('linear-layer query', () => {
  it('stories260K: the 35 block projections plus the tied lm_head, not the attention MatMuls', () => {
    const layers = linears(readOnnx(FIXTURES.stories));
    expect(layers).toHaveLength(36);
    const names = layers.map((l) => l.name);
    for (let b = 0; b < 5; b++) {
      for (const p of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']) {
        expect(names).toContain(`layers.${b}.${p}`);
      }
    }
    expect(names).toContain('lm_head');
    expect(names.some((n) => /self_attn$/.test(n) || /MatMul/.test(n))).toBe(false);
    const q = layers.find((l) => l.name === 'layers.0.self_attn.q_proj')!;
    expect([q.kind, q.outFeatures, q.inFeatures, q.input]).toEqual(['matmul', 64, 64, '/layers.0/input_layernorm/Mul_1_output_0']);
    const k = layers.find((l) => l.name === 'layers.0.self_attn.k_proj')!;
    expect([k.outFeatures, k.inFeatures]).toEqual([32, 64]); // 4 KV heads × 8
    const down = layers.find((l) => l.name === 'layers.2.mlp.down_proj')!;
    expect([down.outFeatures, down.inFeatures]).toEqual([64, 172]);
    const head = layers.find((l) => l.name === 'lm_head')!;
    expect([head.outFeatures, head.inFeatures]).toEqual([512, 64]);
  });

  it('mnist-8: two Convs and the MatMul whose weight comes through a Reshape', () => {
    const model = readOnnx(FIXTURES.mnist);
    const layers = linears(model);
    expect(layers.map((l) => [l.name, l.kind, l.outFeatures, l.inFeatures])).toEqual([
      ['Convolution28', 'conv', 8, 25],
      ['Convolution110', 'conv', 16, 200],
      ['Times212', 'matmul', 10, 256],
    ]);
    const times = layers[2];
    expect(times.weightChain.map((n) => n.op_type)).toEqual(['Reshape']);
    // [out, in] is the transpose of the reshaped [256, 10] initializer
    const raw = toFloat32(1, model.tensor('Parameter193').data);
    const W = readWeight(model, times);
    for (const [o, i] of [[0, 0], [3, 17], [9, 255]]) expect(W[o * 256 + i]).toBe(raw[i * 10 + o]);
  });

  itWithShared('squeezenet-cifar10: the 11 Convs with their biases', () => {
    const layers = linears(readOnnx(SHARED_MODELS.squeezenet));
    expect(layers).toHaveLength(11);
    expect(layers.every((l) => l.kind === 'conv' && l.bias)).toBe(true);
    const e3 = layers.find((l) => l.name === 'squeezenet/fire2/expand3x3/BiasAdd')!;
    expect([e3.outFeatures, e3.inFeatures, e3.group]).toEqual([e3.weightShape[0], e3.weightShape[1] * 9, 1]);
  });

  it('the generated SqueezeNet-style convnet: its 8 Convs with their biases, a 3×3 Conv as [out, in·9]', () => {
    const layers = linears(convNet('convnet.onnx'));
    expect(layers.map((l) => [l.name, l.kind, l.outFeatures, l.inFeatures, l.group])).toEqual([
      ['conv1/BiasAdd', 'conv', 16, 27, 1],
      ['fire2/squeeze1x1/BiasAdd', 'conv', 8, 16, 1],
      ['fire2/expand1x1/BiasAdd', 'conv', 16, 8, 1],
      ['fire2/expand3x3/BiasAdd', 'conv', 16, 72, 1],
      ['fire3/squeeze1x1/BiasAdd', 'conv', 8, 32, 1],
      ['fire3/expand1x1/BiasAdd', 'conv', 16, 8, 1],
      ['fire3/expand3x3/BiasAdd', 'conv', 16, 72, 1],
      ['conv10/BiasAdd', 'conv', 10, 32, 1],
    ]);
    expect(layers.every((l) => l.bias)).toBe(true);
    const e3 = layers.find((l) => l.name === 'fire2/expand3x3/BiasAdd')!;
    expect(e3.weightShape).toEqual([16, 8, 3, 3]);
  });

  it('writing back what was read leaves ONNX Runtime outputs unchanged, for every layer form', async () => {
    for (const model of [readOnnx(FIXTURES.stories), readOnnx(FIXTURES.mnist), convNet('convnet.onnx')]) {
      const input = model.graph.input![0];
      const dims = input.type!.tensor_type!.shape!.dim!.map((d) => Number(d.dim_value ?? 0) || 1);
      const size = dims.reduce((a, b) => a * b, 1);
      const feeds: Record<string, ort.Tensor> =
        input.type!.tensor_type!.elem_type === 7
          ? { [input.name!]: new ort.Tensor('int64', BigInt64Array.from([1n, 400n, 57n, 99n]), [1, 4]) }
          : { [input.name!]: new ort.Tensor('float32', Float32Array.from({ length: size }, (_, i) => ((i * 37) % 255) / 255), dims) };
      const before = await (await sessionFromModel(model)).run(feeds);
      for (const layer of linears(model)) writeWeight(model, layer, readWeight(model, layer));
      const after = await (await sessionFromModel(model)).run(feeds);
      const key = Object.keys(before)[0];
      expect(Array.from(after[key].data as Float32Array)).toEqual(Array.from(before[key].data as Float32Array));
    }
  });

  it('a MatMul of two constants (even through a Transpose) is constant work ONNX Runtime folds, not a layer; its consumer MatMul is none either', () => {
    const f32 = (name: string, dims: number[]) => ({ name, data_type: 1, dims, raw_data: new Uint8Array(new Float32Array(dims[0]! * dims[1]!).buffer) });
    const model = new Model(
      {
        ir_version: 8,
        opset_import: [{ domain: '', version: 17 }],
        graph: {
          name: 'constant-product',
          node: [
            makeNode('Transpose', ['a'], ['a_t'], 'T', [attr.ints('perm', [1, 0])]),
            makeNode('MatMul', ['a_t', 'b'], ['w'], '/proj/expand'),
            makeNode('MatMul', ['x', 'w'], ['y'], '/proj/MatMul'),
            makeNode('MatMul', ['y', 'c'], ['z'], '/head/MatMul'),
          ],
          initializer: [f32('a', [2, 4]), f32('b', [2, 3]), f32('c', [3, 5])],
          input: [{ name: 'x', type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 1 }, { dim_value: 4 }] } } } }],
          output: [{ name: 'z', type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 1 }, { dim_value: 5 }] } } } }],
        },
      },
      'constant-product.onnx',
    );
    expect(linears(model).map((l) => l.name)).toEqual(['head']);
  });

  it('a MatMul whose left operand is computed from initializers alone (through Cast and Mul, as packed_3bit\'s unpacking chain) is no layer', () => {
    const f32 = (name: string, dims: number[]) => ({ name, data_type: 1, dims, raw_data: new Uint8Array(new Float32Array(dims[0]! * dims[1]!).buffer) });
    const model = new Model(
      {
        ir_version: 8,
        opset_import: [{ domain: '', version: 17 }],
        graph: {
          name: 'computed-constant',
          node: [
            makeNode('Cast', ['codes'], ['codes_f'], '/unpack/Cast', [attr.int('to', 1)]),
            makeNode('Mul', ['codes_f', 'two'], ['doubled'], '/unpack/Mul'),
            makeNode('MatMul', ['doubled', 'pairs'], ['w'], '/unpack/MatMul'),
            makeNode('MatMul', ['x', 'c'], ['y'], '/head/MatMul'),
          ],
          initializer: [{ name: 'codes', data_type: 2, dims: [2, 4], raw_data: new Uint8Array(8) }, f32('two', [1, 1]), f32('pairs', [4, 3]), f32('c', [4, 5])],
          input: [{ name: 'x', type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 1 }, { dim_value: 4 }] } } } }],
          output: [
            { name: 'y', type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 1 }, { dim_value: 5 }] } } } },
            { name: 'w', type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 2 }, { dim_value: 3 }] } } } },
          ],
        },
      },
      'computed-constant.onnx',
    );
    expect(linears(model).map((l) => l.name)).toEqual(['head']);
  });
});
