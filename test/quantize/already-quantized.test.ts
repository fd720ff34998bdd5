import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { QCONVNET, quantizedConvNet } from '../../fixtures/generate-quantized.js';
import { inspectOnnx } from '../../src/model/inspect.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx, writeOnnx } from '../../src/model/onnx-io.js';
import { dequantizePass } from '../../src/quantize/dequantize.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { runCli } from '../cli/run-cli.js';
import { allClose, tempDir } from '../helpers.js';

/**
 * A QOperator int8 model (fixtures/generate-quantized.ts: QLinearConv, MaxPool on uint8,
 * QLinearMatMul) is recognised by inspect, refused by passes that need float weights, and turned back
 * into float by quantize.dequantize. Closed form: the dequantized model is the generator's float twin
 * (the same layers on (q − z)·s weights, each activation QuantizeLinear → DequantizeLinear as the
 * Clip to its range), so their outputs agree to float32 rounding. Against the int8 model itself the
 * difference is the rounding of activations only, which the test bounds in units of the output scale.
 */

const ctx = { layers: [], seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' };

function images(n: number): ort.Tensor {
  const r = seededRandom(21);
  return new ort.Tensor('float32', Float32Array.from({ length: n * QCONVNET.size * QCONVNET.size }, () => r()), [n, 1, QCONVNET.size, QCONVNET.size]);
}

async function logits(model: Model, x: ort.Tensor): Promise<Float32Array> {
  const s = await sessionFromModel(model, { threads: 1 });
  try {
    return (await s.run({ [QCONVNET.input]: x }))[QCONVNET.output]!.data as Float32Array;
  } finally {
    await s.release();
  }
}

describe('already-quantized models', () => {
  it('inspect lists the QLinearConv/QLinearMatMul layers and counts weights and int32 biases, not scales and zero points', () => {
    const { quantized } = quantizedConvNet();
    const r = inspectOnnx(quantized);
    expect(r.quantized_layers).toEqual([
      { name: 'conv1', op: 'QLinearConv', shape: [8, 9], dtype: 'int8', granularity: 'channel' },
      { name: 'conv2', op: 'QLinearConv', shape: [16, 72], dtype: 'int8', granularity: 'channel' },
      { name: 'fc', op: 'QLinearMatMul', shape: [10, 16], dtype: 'int8', granularity: 'tensor' },
    ]);
    // weights 8·9 + 16·72 + 16·10, biases 8 + 16
    expect(r.size.params).toBe(72 + 1152 + 160 + 8 + 16);
  });

  it('a pass that needs float weights refuses, saying the model is already quantized and naming quantize.dequantize', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const model = join(dir, 'int8.onnx');
      writeOnnx(quantizedConvNet().quantized, model);
      const recipe = join(dir, 'r.yaml');
      writeFileSync(recipe, 'version: 1\npasses:\n  - pass: prune.magnitude\n    targets: ["*"]\n    params: { sparsity: 0.5 }\n');
      const r = await runCli(['compress', model, '-r', recipe, '-o', join(dir, 'out.onnx')]);
      expect(r.code).toBe(2);
      expect(r.err.trim().split('\n')).toHaveLength(1);
      expect(r.err).toMatch(/already quantized \(QLinearConv\); use `quantize\.dequantize` first/);
      // with quantize.dequantize first the same pass runs on the float layers
      writeFileSync(recipe, 'version: 1\npasses:\n  - pass: quantize.dequantize\n  - pass: prune.magnitude\n    targets: ["*"]\n    params: { sparsity: 0.5 }\n');
      const ok = await runCli(['compress', model, '-r', recipe, '-o', join(dir, 'out.onnx')]);
      expect(ok.code, ok.err).toBe(0);
      expect(linears(readOnnx(join(dir, 'out.onnx'))).map((l) => l.name)).toEqual(['conv1', 'conv2', 'fc']);
    } finally {
      cleanup();
    }
  });

  it('quantize.dequantize gives the float twin (within 1e-5) and the int8 model within its activation rounding', async () => {
    const { quantized, float } = quantizedConvNet();
    const x = images(8);
    const q = await logits(quantized, x);
    const result = await dequantizePass.apply(quantized, {}, ctx);
    expect(result.layers.map((l) => l.name)).toEqual(['conv1', 'conv2', 'fc']);
    expect(result.warnings).toEqual([]);
    const ops = (quantized.graph.node ?? []).map((n) => n.op_type);
    expect(ops.filter((o) => /Quantize|QLinear/.test(o ?? ''))).toEqual([]);
    expect(linears(quantized).map((l) => [l.name, l.kind, quantized.initializer(l.weight)!.data_type])).toEqual([
      ['conv1', 'conv', 1],
      ['conv2', 'conv', 1],
      ['fc', 'matmul', 1],
    ]);
    const d = await logits(quantized, x);
    const twin = allClose(d, await logits(float, x), 1e-5, 1e-6);
    expect(twin.ok, twin.worst).toBe(true);
    // activation rounding: each layer's output moves by ≤ s/2 per element before the next layer
    const step = 3 / 127; // the logits' scale
    const noise = allClose(q, d, 0, 2 * step); // measured max 0.65 steps
    expect(noise.ok, noise.worst).toBe(true);
    expect(noise.relFro).toBeLessThan(0.05); // measured 1.3e-2
  });

  it('a model with nothing quantized is left as it is, with a warning', async () => {
    const { float } = quantizedConvNet();
    const before = JSON.stringify(float.graph.node);
    const r = await dequantizePass.apply(float, {}, ctx);
    expect(r.layers).toEqual([]);
    expect(r.warnings.join()).toMatch(/no quantized layers/);
    expect(JSON.stringify(float.graph.node)).toBe(before);
  });
});
