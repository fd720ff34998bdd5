import type * as tfjs from '@tensorflow/tfjs';
import { z } from 'zod';
import { UserError } from '../errors.js';
import { DataType } from '../model/dtype.js';
import type { Feeds } from '../calibrate/feeds.js';
import { MaskedAdam } from '../runtime/tfjs/optimizer.js';
import { decoderBlocks, layerBlockIndex, type DecoderBlock } from '../model/blocks.js';
import { GraphIndex } from '../model/graph.js';
import type { HostFeeds } from '../model/io.js';
import type { Model } from '../model/model.js';
import { readOnnx } from '../model/onnx-io.js';
import { sliceFor, subModel } from '../model/subgraph.js';
import { matMulNBitsLayers } from '../model/nbits-layers.js';
import { definePass, type LayerStat } from '../pass/pass.js';
import { OnnxExecutor } from '../runtime/tfjs/executor.js';
import { foldNBitsInputs, writeNBitsCodes } from './nbits-fold.js';

/**
 * Block-wise output reconstruction after quantization (post-training; in the spirit of BRECQ, Li et
 * al. 2021, and OmniQuant, Shao et al. 2024): for each decoder block in order, the block's
 * MatMulNBits codes train through straight-through fake quantization on their fixed grid (scales and
 * zero points unchanged) with Adam to minimise Σ_s ‖block_q(x_q,s) − y_s‖², x_q the block's input in
 * the model as reconstructed so far and y the float model's block output on the float model's own
 * input (OmniQuant's target), over the calibration samples only: no logits, no teacher sampling, no
 * end-to-end training. The codes are then rounded back onto their grid; a block whose loss did not
 * fall keeps its codes.
 */

export const ReconstructParams = z.strictObject({
  epochs: z.number().int().min(1).max(1000).default(5).describe('passes over the calibration samples per block (one sample a step)'),
  lr: z.number().positive().max(1).default(1e-3).describe("Adam's peak learning rate on the fake-quantized weights (cosine decay over the block's steps)"),
});
export type ReconstructParams = z.output<typeof ReconstructParams>;

/** One block's loss Σ‖y_q − y‖² / Σ‖y‖² on the calibration samples, before and after training. */
export interface BlockLoss {
  block: number;
  before: number;
  after: number;
  /** the trained codes were kept (after < before) */
  kept: boolean;
  ms: number;
}

export const reconstruct = definePass({
  id: 'quantize.reconstruct',
  summary: "block-wise output reconstruction after quantize.gptq/rtn/mixed: each block's MatMulNBits codes trained on their grid to match the float model's block outputs on the calibration samples (post-training, no distillation)",
  params: ReconstructParams,
  needsCalibration: () => ({ need: 'required' }),
  // the input model's float linears are MatMulNBits by the time the pass runs (a quantize pass before it)
  eligible: (layer) => layer.kind === 'matmul' || layer.kind === 'gemm',
  selectsNBits: true,
  async apply(model, params: ReconstructParams, ctx) {
    const targets = ctx.layers.filter((l) => l.node.op_type === 'MatMulNBits');
    if (targets.length === 0) throw new UserError(`${ctx.where}: quantize.reconstruct's targets matched no MatMulNBits layer; put it after a quantize pass with format: matmulnbits on the same targets`);
    const floats = ctx.layers.filter((l) => l.node.op_type !== 'MatMulNBits');
    const warnings = floats.length > 0 ? [`${floats.length} targeted layers are not MatMulNBits (not quantized, or another format) and were left as they are: ${floats.map((l) => l.name).join(', ')}`] : [];
    const originalPath = ctx.original?.();
    if (!originalPath) throw new UserError(`${ctx.where}: quantize.reconstruct needs the float model its targets come from; run it inside \`pare compress\``);
    const float = readOnnx(originalPath);
    try {
      const feeds = ctx.calibration!.feedsFor(model).map(hostFeeds);
      const losses = await reconstructBlocks(model, float, feeds, targets.map((l) => l.name), params, (i, n, name) => ctx.progress.layer(i, n, name));
      const byBlock = new Map(losses.map((b) => [b.block, b]));
      const layers: LayerStat[] = targets.map((l) => {
        const b = byBlock.get(layerBlockIndex(l.name) ?? -1);
        const bytes = storedBytes(model, l.weight);
        return { name: l.name, kind: l.kind, shape: [l.outFeatures, l.inFeatures], ms: 0, bytes_before: bytes, bytes_after: bytes, ...(b ? { extra: { block: b.block, block_loss_before: b.before, block_loss_after: b.after, kept: String(b.kept) } } : {}) };
      });
      return {
        layers,
        warnings,
        summary: Object.fromEntries(losses.flatMap((b) => [[`block_${b.block}_loss`, `${b.before.toExponential(3)} -> ${b.after.toExponential(3)}${b.kept ? '' : ' (not kept)'} in ${(b.ms / 1000).toFixed(1)} s`]])),
      };
    } finally {
      float.close();
    }
  },
});

/** Bytes of the initializers that hold a MatMulNBits code blob: itself, or what its unpacking chain reads. */
function storedBytes(model: Model, name: string): number {
  if (model.hasInitializer(name)) return model.tensor(name).data.byteLength;
  const slice = sliceFor(model, new GraphIndex(model.graph), [name], () => false);
  const inits = new Set(slice.nodes.flatMap((n) => n.input ?? []).filter((x) => model.initializer(x)?.data_type === DataType.UINT8));
  return [...inits].reduce((a, x) => a + model.tensor(x).data.byteLength, 0);
}

/** ONNX Runtime feeds as the executor's host feeds. */
export function hostFeeds(f: Feeds): HostFeeds {
  return Object.fromEntries(Object.entries(f).map(([name, t]) => [name, { type: t.type as HostFeeds[string]['type'], dims: [...t.dims], data: t.data as HostFeeds[string]['data'] }]));
}

/**
 * Reconstructs, in order, each decoder block of `model` holding one of `layerNames` (MatMulNBits
 * layers) against `float`'s block outputs, and writes the trained codes into `model`.
 */
export async function reconstructBlocks(model: Model, float: Model, feeds: HostFeeds[], layerNames: string[], p: ReconstructParams, progress?: (i: number, n: number, name: string) => void): Promise<BlockLoss[]> {
  const { work, folded } = await foldNBitsInputs(model);
  const floatBlocks = new Map(decoderBlocks(float).map((b) => [b.index, b]));
  const wanted = new Set(layerNames.map(layerBlockIndex));
  const blocks = decoderBlocks(work).filter((b) => wanted.has(b.index));
  if (blocks.length === 0) throw new UserError(`${model.path}: quantize.reconstruct found no decoder block (nodes named /layers.N/… with one residual output) holding its targets; it reconstructs transformer blocks only`);
  const losses: BlockLoss[] = [];
  const selected = new Set(layerNames);
  const weights = new Set(matMulNBitsLayers(work).filter((l) => selected.has(l.name)).map((l) => l.weight));
  const trained = new Set<string>();
  for (const n of work.graph.node ?? []) {
    if (n.op_type !== 'MatMulNBits' || !weights.has(n.input![1]!) || !n.input![3]) continue;
    if (work.tensor(n.input![3]).dataType !== DataType.UINT8) throw new UserError(`${model.path}: MatMulNBits '${n.name ?? ''}' stores float zero points (float_zero_points); quantize.reconstruct trains codes on integer grids only: quantize without float_zero_points`);
  }
  const fexec = await OnnxExecutor.create(float);
  try {
    if (blocks[0]) await checkSameStream(fexec, work, blocks[0].input, feeds[0]);
    for (const [i, block] of blocks.entries()) {
      const fb = floatBlocks.get(block.index);
      if (!fb) throw new UserError(`${model.path}: decoder block ${block.index} has no counterpart in the float model ${float.path}`);
      progress?.(i, blocks.length, `layers.${block.index}`);
      const codes = new Set(block.nodes.filter((n) => n.op_type === 'MatMulNBits' && weights.has(n.input![1]!)).map((n) => n.input![1]!));
      const loss = await reconstructBlock(work, block, codes, fexec, fb.output, feeds, p);
      losses.push(loss);
      if (loss.kept) for (const c of codes) trained.add(c);
    }
  } finally {
    fexec.dispose();
  }
  // the trained codes, into the model's own storage
  for (const n of (model.graph.node ?? []).filter((x) => x.op_type === 'MatMulNBits')) {
    const name = n.input![1]!;
    const stored = folded.get(name) ?? name;
    if (trained.has(stored)) await writeNBitsCodes(model, name, work.tensor(stored));
  }
  return losses;
}

/** Relative difference above which the float model's block inputs are not the quantized model's stream (a rotation ran between them). */
const STREAM_TOLERANCE = 0.1;

/**
 * The float model's targets are block outputs on its own inputs, which only make sense when the
 * passes before left the residual stream as it was: the first block's inputs must agree.
 */
export async function checkSameStream(fexec: OnnxExecutor, work: Model, input: string, feed: HostFeeds | undefined, pass = 'quantize.reconstruct'): Promise<void> {
  if (!feed) return;
  const tf = fexec.tf;
  const qexec = await OnnxExecutor.create(work);
  try {
    const [f, g] = [fexec.feeds(feed), qexec.feeds(feed)];
    const a = tf.tidy(() => fexec.run(f, [input])[input]!);
    const b = tf.tidy(() => qexec.run(g, [input])[input]!);
    const rel = tf.tidy(() => Math.sqrt(tf.sum(tf.square(tf.sub(a, b))).dataSync()[0]! / tf.sum(tf.square(a)).dataSync()[0]!));
    for (const t of [...Object.values(f), ...Object.values(g), a, b]) t.dispose();
    if (!(rel <= STREAM_TOLERANCE)) {
      throw new UserError(`${work.path}: ${pass}'s targets are the recipe input model's block outputs, but the first reconstructed block's input '${input}' differs from that model's by ${(rel * 100).toFixed(1)} % (a pass before it changed the residual stream, e.g. quantize.rotate); run those passes on the input model first`);
    }
  } finally {
    qexec.dispose();
  }
}

/** A block's training data: its inputs in the model as reconstructed so far, and the float model's block outputs. */
export interface BlockData {
  inputs: tfjs.Tensor[];
  targets: tfjs.Tensor[];
  dispose(): void;
}

export async function blockData(work: Model, block: DecoderBlock, fexec: OnnxExecutor, floatOutput: string, feeds: HostFeeds[]): Promise<BlockData> {
  const tf = fexec.tf;
  const prefix = await OnnxExecutor.create(work);
  const inputs: tfjs.Tensor[] = [];
  const targets: tfjs.Tensor[] = [];
  try {
    for (const h of feeds) {
      const f = prefix.feeds(h);
      // tidy: a run leaves its intermediate values to the caller
      inputs.push(tf.tidy(() => prefix.run(f, [block.input])[block.input]!));
      for (const t of Object.values(f)) t.dispose();
      const g = fexec.feeds(h);
      targets.push(tf.tidy(() => fexec.run(g, [floatOutput])[floatOutput]!));
      for (const t of Object.values(g)) t.dispose();
    }
  } finally {
    prefix.dispose();
  }
  return { inputs, targets, dispose: () => [...inputs, ...targets].forEach((t) => t.dispose()) };
}

async function reconstructBlock(work: Model, block: DecoderBlock, codes: Set<string>, fexec: OnnxExecutor, floatOutput: string, feeds: HostFeeds[], p: ReconstructParams): Promise<BlockLoss> {
  const t0 = performance.now();
  const data = await blockData(work, block, fexec, floatOutput, feeds);
  try {
    return await trainBlock(work, block, codes, data, feeds, p, t0);
  } finally {
    data.dispose();
  }
}

/**
 * Trains the initializers `trainable` of `block` in `work` (MatMulNBits codes on their grid, float
 * weights as they are) with Adam to minimise Σ‖block(x_s) − y_s‖² over `data`, and writes them back
 * into `work`; keeps the start values when the loss did not fall.
 */
export async function trainBlock(work: Model, block: DecoderBlock, trainable: Set<string>, data: BlockData, feeds: HostFeeds[], p: { epochs: number; lr: number }, t0 = performance.now()): Promise<BlockLoss> {
  const { inputs, targets } = data;
  // the block alone: its input hidden state and the graph inputs it reads (masks, positions) are fed
  const graphInputs = new Map((work.graph.input ?? []).map((v) => [v.name ?? '', v]));
  const slice = sliceFor(work, new GraphIndex(work.graph), [block.output], (n) => n === block.input || graphInputs.has(n));
  const sub = subModel(work, slice.nodes, slice.reads.map((r) => graphInputs.get(r) ?? { name: r, type: { tensor_type: { elem_type: 1 } } }));
  sub.graph.output = [{ name: block.output }];
  const exec = await OnnxExecutor.create(sub, { trainable: (n) => trainable.has(n) });
  const tf = exec.tf;
  const subFeeds = feeds.map((h, s) => {
    const f = exec.feeds(Object.fromEntries(Object.entries(h).filter(([name]) => slice.reads.includes(name))));
    f[block.input] = inputs[s]!;
    return f;
  });
  const norm = targets.reduce((a, y) => a + tf.tidy(() => tf.sum(tf.square(y)).dataSync()[0]!), 0);
  const sampleLoss = (s: number) => tf.tidy(() => tf.sum(tf.square(tf.sub(exec.run(subFeeds[s]!, [block.output])[block.output]!, targets[s]!))) as tfjs.Scalar);
  const loss = () => subFeeds.reduce((a, _, s) => a + tf.tidy(() => sampleLoss(s).dataSync()[0]!), 0) / norm;
  try {
    const before = loss();
    const start = new Map([...exec.variables].map(([n, v]) => [n, tf.keep(tf.clone(v))]));
    const steps = p.epochs * subFeeds.length;
    const adam = new MaskedAdam(tf, exec.variables, new Map(), { lr: p.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, clip: 0, warmup: 0, schedule: 'cosine', steps });
    const vars = [...exec.variables.values()];
    for (let step = 0; step < steps; step++) {
      const s = step % subFeeds.length;
      const { value, grads } = tf.variableGrads(() => sampleLoss(s), vars);
      value.dispose();
      adam.apply(Object.fromEntries([...exec.variables].map(([name, v]) => [name, grads[v.name]!])));
    }
    adam.dispose();
    const after = loss();
    const kept = after < before;
    if (!kept) for (const [n, v] of exec.variables) v.assign(start.get(n)!);
    for (const t of start.values()) t.dispose();
    exec.writeBack(sub);
    for (const name of trainable) work.setInitializer(sub.tensor(name));
    return { block: block.index, before, after, kept, ms: performance.now() - t0 };
  } finally {
    exec.dispose();
    // the block input is the caller's (data), not the feeds'
    for (const f of subFeeds) for (const [name, t] of Object.entries(f)) if (name !== block.input) t.dispose();
  }
}
