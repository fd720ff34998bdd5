import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { convNet } from '../../fixtures/generate-convnet.js';
import { activityCnn, kwsMlp, superResolution } from '../../fixtures/generate-vision.js';
import { DataType } from '../../src/model/dtype.js';
import { attr, makeNode } from '../../src/model/graph.js';
import { Model } from '../../src/model/model.js';
import type { AttributeProto, TensorProto } from '../../src/model/onnx-schema.js';
import { readOnnx, writeOnnx } from '../../src/model/onnx-io.js';
import { upgradeOpset } from '../../src/model/opset-upgrade.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { runCli } from '../cli/run-cli.js';
import { allClose, FIXTURES, tempDir } from '../helpers.js';

/**
 * An upgraded model computes what the original computes: both run in ONNX Runtime on the same seeded
 * inputs (ONNX Runtime implements every opset version of these ops) and their outputs must agree to
 * float32 rounding (ONNX Runtime may pick other Conv kernels for the upgraded graph).
 */

async function outputs(model: Model, feeds: Record<string, ort.Tensor>): Promise<Float32Array[]> {
  const s = await sessionFromModel(model, { threads: 1 });
  try {
    const r = await s.run(feeds);
    return s.outputNames.map((n) => r[n]!.data as Float32Array);
  } finally {
    await s.release();
  }
}

function feedsFor(shapes: Record<string, number[]>, seed = 3): Record<string, ort.Tensor> {
  const r = seededRandom(seed);
  return Object.fromEntries(Object.entries(shapes).map(([n, dims]) => [n, new ort.Tensor('float32', Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => 4 * r() - 2), dims)]));
}

async function expectSameOutputs(make: () => Model, to: number, shapes: Record<string, number[]>): Promise<Model> {
  const original = make();
  const upgraded = make();
  const from = original.opset();
  const r = upgradeOpset(upgraded, to);
  expect(r).toMatchObject({ from, to });
  expect(upgraded.opset()).toBe(to);
  const feeds = feedsFor(shapes);
  const [a, b] = [await outputs(upgraded, feeds), await outputs(original, feeds)];
  expect(a.length).toBe(b.length);
  for (const [i, x] of a.entries()) {
    const cmp = allClose(x, b[i]!, 1e-4, 1e-5);
    expect(cmp.ok, cmp.worst).toBe(true);
    expect(cmp.relFro).toBeLessThanOrEqual(1e-5); // measured ≤ 3.2e-7 (mnist-8 2.3e-7, super-resolution 3.2e-7, the rest equal)
  }
  return upgraded;
}

/** A graph of one node over float input x [shape] and float constants, at `opset`. */
function oneOp(opset: number, op: string, xShape: number[], attributes: AttributeProto[] = [], constants: Record<string, { dims: number[]; values: number[]; int64?: boolean }> = {}, outputs = 1): () => Model {
  return () => {
    const initializer: TensorProto[] = Object.entries(constants).map(([name, c]) => ({
      name,
      data_type: c.int64 ? DataType.INT64 : DataType.FLOAT,
      dims: c.dims,
      raw_data: new Uint8Array((c.int64 ? BigInt64Array.from(c.values, BigInt) : Float32Array.from(c.values)).buffer),
    }));
    const outs = Array.from({ length: outputs }, (_, i) => `y${i}`);
    return new Model(
      {
        ir_version: 5,
        opset_import: [{ domain: '', version: opset }],
        graph: {
          name: op,
          node: [makeNode(op, ['x', ...Object.keys(constants)], outs, op, attributes)],
          initializer,
          input: [{ name: 'x', type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: xShape.map((d) => ({ dim_value: d })) } } } }],
          output: outs.map((name) => ({ name, type: { tensor_type: { elem_type: DataType.FLOAT } } })),
        },
      },
      `${op}.onnx`,
    );
  };
}

describe('opset upgrade', () => {
  it('mnist-8 (opset 8) to 13 and to 18 computes the same digits', async () => {
    for (const to of [13, 18]) await expectSameOutputs(() => readOnnx(FIXTURES.mnist), to, { Input3: [1, 1, 28, 28] });
  });

  it('the generated models: super-resolution (IR 3, opset 10) and the opset-9 activity CNN, KWS MLP and convnet (Squeeze, BatchNorm, Softmax) to 13 and 18', async () => {
    for (const to of [13, 18]) {
      await expectSameOutputs(() => superResolution(), to, { input: [1, 1, 12, 12] });
      const activity = await expectSameOutputs(() => activityCnn(), to, { input: [2, 3, 1, 32] });
      expect((activity.graph.node ?? []).find((n) => n.op_type === 'Squeeze')!.input).toHaveLength(2);
      await expectSameOutputs(() => kwsMlp(), to, { features: [2, 250] });
      await expectSameOutputs(() => convNet('convnet.onnx'), to, { input_1: [2, 32, 32, 3] });
    }
  });

  const RULES: [string, () => Model, number, number[]][] = [
    ['Squeeze axes attribute -> input (13)', oneOp(11, 'Squeeze', [2, 1, 3], [attr.ints('axes', [1])]), 13, [2, 1, 3]],
    ['Unsqueeze axes attribute -> input (13)', oneOp(11, 'Unsqueeze', [2, 3], [attr.ints('axes', [0, 3])]), 13, [2, 3]],
    ['Pad pads and value attributes -> inputs (11)', oneOp(10, 'Pad', [1, 2, 3, 3], [attr.ints('pads', [0, 0, 1, 2, 0, 0, 2, 1]), attr.float('value', 0.5)]), 13, [1, 2, 3, 3]],
    ['Pad reflect (11)', oneOp(10, 'Pad', [1, 2, 4, 4], [attr.ints('pads', [0, 0, 1, 1, 0, 0, 1, 1]), attr.string('mode', 'reflect')]), 13, [1, 2, 4, 4]],
    ['Clip min/max attributes -> inputs (11)', oneOp(10, 'Clip', [3, 4], [attr.float('min', -0.5), attr.float('max', 0.7)]), 13, [3, 4]],
    ['Clip with max only (11)', oneOp(10, 'Clip', [3, 4], [attr.float('max', 0.7)]), 13, [3, 4]],
    ['Resize nearest at opset 10 -> asymmetric floor (11)', oneOp(10, 'Resize', [1, 2, 3, 3], [attr.string('mode', 'nearest')], { scales: { dims: [4], values: [1, 1, 2.5, 2] } }), 13, [1, 2, 3, 3]],
    ['Resize linear at opset 10 -> asymmetric (11)', oneOp(10, 'Resize', [1, 2, 3, 3], [attr.string('mode', 'linear')], { scales: { dims: [4], values: [1, 1, 2, 3] } }), 13, [1, 2, 3, 3]],
    ['Upsample scales attribute (9) -> Resize (10, 11)', oneOp(8, 'Upsample', [1, 2, 3, 3], [attr.string('mode', 'nearest'), attr.floats('scales', [1, 1, 2, 2])]), 13, [1, 2, 3, 3]],
    ['BatchNormalization spatial (7 -> 9)', oneOp(7, 'BatchNormalization', [2, 3, 2, 2], [attr.int('spatial', 1), attr.float('epsilon', 1e-3)], { s: { dims: [3], values: [1.5, 0.5, 2] }, b: { dims: [3], values: [0.1, -0.2, 0.3] }, m: { dims: [3], values: [0.2, 0.1, -0.3] }, v: { dims: [3], values: [1, 2, 0.5] } }), 15, [2, 3, 2, 2]],
    ['Dropout ratio attribute (12)', oneOp(10, 'Dropout', [3, 4], [attr.float('ratio', 0.3)]), 13, [3, 4]],
    ['Softmax over axis 1 of a 3-D input: coerced to 2-D before 13', oneOp(11, 'Softmax', [2, 3, 4], [attr.int('axis', 1)]), 13, [2, 3, 4]],
    ['LogSoftmax default axis of a 3-D input', oneOp(11, 'LogSoftmax', [2, 3, 4]), 13, [2, 3, 4]],
    ['ReduceMean axes attribute -> input (18)', oneOp(13, 'ReduceMean', [2, 3, 4], [attr.ints('axes', [1, 2]), attr.int('keepdims', 0)]), 18, [2, 3, 4]],
    ['Slice attributes -> inputs (10)', oneOp(9, 'Slice', [4, 6], [attr.ints('starts', [1, 0]), attr.ints('ends', [3, 5]), attr.ints('axes', [0, 1])]), 13, [4, 6]],
    ['Split split attribute -> input (13), num_outputs (18)', oneOp(11, 'Split', [6, 2], [attr.int('axis', 0), attr.ints('split', [2, 4])], {}, 2), 13, [6, 2]],
    ['Split into equal parts (18: num_outputs)', oneOp(11, 'Split', [6, 2], [attr.int('axis', 0)], {}, 3), 18, [6, 2]],
    ['Reshape at opset 13 -> 21', oneOp(13, 'Reshape', [2, 6], [], { shape: { dims: [2], values: [3, -1], int64: true } }), 21, [2, 6]],
  ];
  for (const [title, make, to, shape] of RULES) {
    it(`${title}: the same outputs in ONNX Runtime`, async () => {
      await expectSameOutputs(make, to, { x: shape });
    });
  }

  it('an op without a rule is refused, naming it', () => {
    const model = oneOp(9, 'TopK', [2, 5], [attr.int('k', 2)], {}, 2)();
    expect(() => upgradeOpset(model, 13)).toThrow(/no upgrade rules for TopK/);
    expect(() => upgradeOpset(oneOp(13, 'Relu', [2])(), 11)).toThrow(/upgrades only/);
  });

  it('--opset 13 lets an opset-8 model take per-channel int8 QDQ; per-tensor needs only opset 10', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const recipe = (granularity: string) => {
        const path = join(dir, `${granularity}.yaml`);
        writeFileSync(path, `version: 1\npasses:\n  - pass: quantize.rtn\n    targets: ["*"]\n    params: { bits: 8, granularity: ${granularity} }\n`);
        return path;
      };
      const refused = await runCli(['compress', FIXTURES.mnist, '-r', recipe('channel'), '-o', join(dir, 'a.onnx')]);
      expect(refused.code).toBe(2);
      expect(refused.err).toMatch(/opset 8; DequantizeLinear needs opset 10 or newer: add --opset 13/);
      const upgraded = await runCli(['compress', FIXTURES.mnist, '-r', recipe('channel'), '-o', join(dir, 'b.onnx'), '--opset', '13']);
      expect(upgraded.code, upgraded.err).toBe(0);
      expect(readOnnx(join(dir, 'b.onnx')).opset()).toBe(13);
      // a model at opset 10 takes per-tensor scales as it is, and per-channel ones only after an upgrade
      const at10 = join(dir, 'mnist-10.onnx');
      const m = readOnnx(FIXTURES.mnist);
      upgradeOpset(m, 10);
      writeOnnx(m, at10);
      expect((await runCli(['compress', at10, '-r', recipe('tensor'), '-o', join(dir, 'c.onnx')])).code).toBe(0);
      const perChannel = await runCli(['compress', at10, '-r', recipe('channel'), '-o', join(dir, 'd.onnx')]);
      expect(perChannel.err).toMatch(/per-channel DequantizeLinear needs opset 13 or newer/);
    } finally {
      cleanup();
    }
  });
});
