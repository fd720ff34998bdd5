import { describe, expect, it } from 'vitest';
import { activityCnn, kwsMlp, smallResNet, superResolution } from '../../fixtures/generate-vision.js';
import { UserError } from '../../src/errors.js';
import { readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { linears, type LinearLayer } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { int64ToNumber } from '../../src/model/onnx-schema.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { modelSize } from '../../src/model/size.js';
import { channels } from '../../src/prune/channels.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeOnnx } from '../../src/model/onnx-io.js';
import { assertWrittenLoads } from '../../src/runtime/load-check.js';
import { runCli } from '../cli/run-cli.js';
import { allClose, FIXTURES, tempDir } from '../helpers.js';

/**
 * prune.channels on CNN and MLP graphs, the channels found by graph structure. The closed form: a
 * model without channel c computes what the original computes with channel c's reader columns set
 * to zero (every consumer's weight columns that read it), whatever elementwise ops (BatchNorm, bias
 * Adds, Relu, pooling, Squeeze, Flatten, Reshape) lie between. The dropped channels are the
 * producer's lowest-L2-norm output rows of the original weight, recomputed here.
 */

const byName = (m: Model, name: string): LinearLayer => {
  const l = linears(m).find((x) => x.name === name);
  if (!l) throw new Error(`no layer '${name}' in ${linears(m).map((x) => x.name).join(', ')}`);
  return l;
};

const ctx = (layers: LinearLayer[]) => ({ layers, seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' });

const PARAMS = { sparsity: 0.5, importance: 'weight' as const, multiple_of: 1 };

function droppedChannels(model: Model, producer: LinearLayer, sparsity: number): number[] {
  const W = readWeight(model, producer);
  const per = producer.inFeatures;
  const norms = Array.from({ length: producer.outFeatures }, (_, o) => Math.hypot(...W.subarray(o * per, (o + 1) * per)));
  const keep = Math.round(producer.outFeatures * (1 - sparsity));
  return Array.from(norms.keys())
    .sort((a, b) => norms[a]! - norms[b]! || b - a)
    .slice(0, producer.outFeatures - keep);
}

function seededFeeds(shapes: Record<string, number[]>): Record<string, ort.Tensor> {
  const r = seededRandom(11);
  return Object.fromEntries(Object.entries(shapes).map(([name, dims]) => [name, new ort.Tensor('float32', Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => 2 * r() - 1), dims)]));
}

async function run(model: Model, feeds: Record<string, ort.Tensor>): Promise<Float32Array> {
  const s = await sessionFromModel(model, { threads: 1 });
  try {
    return (await s.run(feeds))[s.outputNames[0]!]!.data as Float32Array;
  } finally {
    await s.release();
  }
}

/** Every declaration of an initializer (graph input, value_info) states its stored shape. */
function declarationsAgree(model: Model): void {
  for (const v of [...(model.graph.input ?? []), ...(model.graph.value_info ?? [])]) {
    if (!model.hasInitializer(v.name!)) continue;
    const declared = (v.type?.tensor_type?.shape?.dim ?? []).map((d) => int64ToNumber(d.dim_value ?? 0));
    expect(declared, v.name!).toEqual(model.tensor(v.name!).dims);
  }
}

interface Case {
  title: string;
  model: () => Model;
  producer: string;
  /** each consumer's weight columns ([out, in] layout) that read producer channel c */
  readers: Record<string, (c: number) => number[]>;
  inputs: Record<string, number[]>;
}

const block = (size: number) => (c: number) => Array.from({ length: size }, (_, i) => c * size + i);

const CASES: Case[] = [
  { title: 'mnist-8 first conv (bias Add [8,1,1], Relu, MaxPool)', model: () => readOnnx(FIXTURES.mnist), producer: 'Convolution28', readers: { Convolution110: block(25) }, inputs: { Input3: [1, 1, 28, 28] } },
  { title: 'mnist-8 second conv into MatMul through Reshape [1, 256]', model: () => readOnnx(FIXTURES.mnist), producer: 'Convolution110', readers: { Times212: block(16) }, inputs: { Input3: [1, 1, 28, 28] } },
  { title: 'super-resolution (IR 3, weights as graph inputs, unnamed nodes) conv1', model: () => superResolution(), producer: 'conv1', readers: { conv2: block(9) }, inputs: { input: [1, 1, 12, 12] } },
  { title: 'super-resolution conv3 into the pixel-shuffle conv', model: () => superResolution(), producer: 'conv3', readers: { conv4: block(9) }, inputs: { input: [1, 1, 12, 12] } },
  { title: 'activity CNN conv2 through BatchNorm, Squeeze and Flatten into a Gemm', model: () => activityCnn(), producer: 'conv2', readers: { fc1: block(16) }, inputs: { input: [3, 3, 1, 32] } },
  { title: 'KWS MLP fc1 (Gemm → Relu → Gemm without transB)', model: () => kwsMlp(), producer: 'fc1', readers: { fc2: (c) => [c] }, inputs: { features: [4, 250] } },
  { title: 'KWS MLP fc2 (Gemm without transB → Relu → Gemm)', model: () => kwsMlp(), producer: 'fc2', readers: { fc3: (c) => [c] }, inputs: { features: [4, 250] } },
  { title: 'ResNet-like conv through GlobalAveragePool and Flatten into a Gemm', model: () => smallResNet(), producer: 'down', readers: { fc: (c) => [c] }, inputs: { input: [2, 1, 28, 28] } },
];

describe('prune.channels by graph structure', () => {
  for (const k of CASES) {
    it(`50 % of ${k.title}: equals the original with the dropped channels' reader columns zeroed, and loads`, async () => {
      const pruned = k.model();
      const reference = k.model();
      const producer = byName(pruned, k.producer);
      const width = producer.outFeatures;
      const dropped = droppedChannels(reference, byName(reference, k.producer), PARAMS.sparsity);
      const before = modelSize(pruned).params;
      const result = await channels.apply(pruned, PARAMS, ctx([producer]));
      expect(result.layers.map((l) => l.name)).toEqual([k.producer]);
      expect(byName(pruned, k.producer).outFeatures).toBe(width - dropped.length);
      expect(modelSize(pruned).params).toBeLessThan(before);
      declarationsAgree(pruned);

      for (const [name, columns] of Object.entries(k.readers)) {
        const l = byName(reference, name);
        const W = readWeight(reference, l);
        const gone = dropped.flatMap(columns);
        expect(byName(pruned, name).inFeatures, name).toBe(l.inFeatures - gone.length);
        for (let o = 0; o < l.outFeatures; o++) for (const c of gone) W[o * l.inFeatures + c] = 0;
        writeWeight(reference, l, W);
      }
      const feeds = seededFeeds(k.inputs);
      const cmp = allClose(await run(pruned, feeds), await run(reference, feeds), 1e-4, 1e-5);
      expect(cmp.ok, cmp.worst).toBe(true);
      expect(cmp.relFro).toBeLessThanOrEqual(1e-5); // measured ≤ 1e-7
    });
  }

  it('every layer of the super-resolution CNN: each conv found again after the one before it was rewritten; the pixel-shuffle conv kept whole', async () => {
    const model = superResolution();
    const result = await channels.apply(model, PARAMS, ctx(linears(model)));
    expect(result.layers.map((l) => [l.name, ...(l.shape ?? [])])).toEqual([
      ['conv1', 16, 8],
      ['conv2', 16, 8],
      ['conv3', 8, 4],
    ]);
    expect(result.warnings.join()).toMatch(/'conv4' \(Reshape.* reshapes the channel axis\)/);
    declarationsAgree(model);
    const out = await run(model, seededFeeds({ input: [1, 1, 12, 12] }));
    expect(out.length).toBe(36 * 36);
  });

  it('a Squeeze (opset 9 axes attribute) no longer stops a trace: the activity CNN loses channels of both convs and fc1', async () => {
    const model = activityCnn();
    const result = await channels.apply(model, PARAMS, ctx(linears(model)));
    expect(result.layers.map((l) => l.name)).toEqual(['conv1', 'conv2', 'fc1']);
    expect(result.warnings.join()).toMatch(/'fc2' \(Softmax.* normalises over the channels\)/);
    expect((await run(model, seededFeeds({ input: [2, 3, 1, 32] }))).length).toBe(12);
  });

  it('a target whose channels reach a graph output is a user error naming it and the output', async () => {
    const model = kwsMlp();
    await expect(channels.apply(model, PARAMS, ctx([byName(model, 'fc3')]))).rejects.toThrow(UserError);
    await expect(channels.apply(model, PARAMS, ctx([byName(model, 'fc3')]))).rejects.toThrow(/'fc3' \(its channels reach the graph output 'logits'\)/);
  });
});

describe('a pruned model is loaded in ONNX Runtime before it is written', () => {
  it('compress with targets ["conv1"] on a model listing its weights as graph inputs writes a model ONNX Runtime loads', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const model = join(dir, 'sr.onnx');
      writeOnnx(superResolution(), model);
      const recipe = join(dir, 'recipe.yaml');
      writeFileSync(recipe, 'version: 1\npasses:\n  - pass: prune.channels\n    targets: ["conv1"]\n    params: { sparsity: 0.25, importance: weight }\n');
      const r = await runCli(['compress', model, '-r', recipe, '-o', join(dir, 'out.onnx')]);
      expect(r.code, r.err).toBe(0);
      const out = readOnnx(join(dir, 'out.onnx'));
      expect(byName(out, 'conv1').outFeatures).toBe(12);
      declarationsAgree(out);
      expect((await run(out, seededFeeds({ input: [1, 1, 12, 12] }))).length).toBe(36 * 36);
    } finally {
      cleanup();
    }
  });

  it('a written model whose graph input still declares an initializer\'s old shape is a bug (exit 1) naming the initializer', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const model = superResolution();
      const bias = model.initializer('conv1.bias')!;
      // what pare wrote before every declaration followed a resized initializer: the graph input says [16]
      model.graph.initializer![model.graph.initializer!.indexOf(bias)] = { ...bias, dims: [8], raw_data: bias.raw_data!.subarray(0, 32) };
      const path = join(dir, 'broken.onnx');
      writeOnnx(model, path);
      const err = await assertWrittenLoads(readOnnx(path), 'out.onnx').then(() => undefined, (e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(UserError);
      expect(err!.message).toMatch(/out\.onnx.*conv1\.bias/);
    } finally {
      cleanup();
    }
  });
});
