/**
 * Prototype (issue #22, task H3): block-wise output reconstruction after GPTQ. For each decoder
 * block in order, the block's MatMulNBits codes train through straight-through fake quantization
 * (scales and zero points fixed) with Adam to minimise ‖block_q(x_q) − target‖² on the calibration
 * samples, then round back onto their grid. target = the float model's block output on the float
 * input ('float-input', OmniQuant's) or the float block on x_q ('quant-input').
 *
 * node dist/bench/reconstruct-proto.js <quantized.onnx> <out.onnx> [steps] [lr] [target]
 */
import { join, resolve } from 'node:path';
import { loadDataset } from '../src/data/load.js';
import { decoderBlocks } from '../src/model/blocks.js';
import { GraphIndex } from '../src/model/graph.js';
import { lmFeeds, modelIo } from '../src/model/io.js';
import { removeUnused } from '../src/model/linear-weights.js';
import { readOnnx, writeOnnx } from '../src/model/onnx-io.js';
import type { Model } from '../src/model/model.js';
import { sliceFor, subModel } from '../src/model/subgraph.js';
import { MaskedAdam } from '../src/distill/optimizer.js';
import { captureSession } from '../src/runtime/ort.js';
import { OnnxExecutor } from '../src/runtime/tfjs/executor.js';
import type * as tfjs from '@tensorflow/tfjs';

const ROOT = resolve(import.meta.dirname, '../..');

/** MatMulNBits inputs computed by constant sub-graphs (packed 3-bit codes, float16 scales) as stored initializers. */
async function materialize(model: Model): Promise<void> {
  const index = new GraphIndex(model.graph);
  const computed: string[] = [];
  for (const n of model.graph.node ?? []) if (n.op_type === 'MatMulNBits') for (const i of [1, 2, 3]) if (n.input?.[i] && !model.hasInitializer(n.input[i]!)) computed.push(n.input[i]!);
  if (computed.length === 0) return;
  const slice = sliceFor(model, index, computed, () => false);
  const session = await captureSession(subModel(model, slice.nodes, []), computed);
  const out = await session.run({}, computed);
  await session.release();
  for (const name of computed) {
    const t = out[name]!;
    const folded = `${name}/folded`;
    const dataType = t.type === 'uint8' ? 2 : 1;
    const data = t.type === 'uint8' ? new Uint8Array(t.data as Uint8Array) : new Uint8Array(new Float32Array(t.data as Float32Array).buffer);
    model.setInitializer({ name: folded, dataType, dims: [...t.dims], data });
    for (const n of model.graph.node ?? []) if (n.op_type === 'MatMulNBits') n.input = n.input!.map((x) => (x === name ? folded : x));
  }
  removeUnused(model);
}

async function main() {
  const [qPath, outPath, stepsArg, lrArg, targetArg] = process.argv.slice(2);
  const epochs = Number(stepsArg ?? 20);
  const lr = Number(lrArg ?? 1e-3);
  const target = targetArg ?? 'float-input';
  const dense = readOnnx(join(ROOT, 'fixtures/stories260K/model.onnx'));
  const quant = readOnnx(resolve(qPath!));
  await materialize(quant);
  const data = await loadDataset({ kind: 'text', path: 'tinystories/valid-head.txt', tokenizer: 'stories260K/tok512.bin', separator: '<|endoftext|>', bos: true, max_length: 512, select: '1-10', segment: 128 }, join(ROOT, 'fixtures'));
  if (data.kind !== 'tokens') throw new Error('tokens expected');
  const io = modelIo(dense);
  const hostFeeds = data.sequences.slice(0, 128).map((ids) => lmFeeds(io, ids, 1, ids.length));
  const blocksQ = decoderBlocks(quant);
  const blocksD = decoderBlocks(dense);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const execD = await OnnxExecutor.create(dense);
  const tf = execD.tf;
  // float model's block outputs on the float inputs
  const floatOut = hostFeeds.map((h) => {
    const f = execD.feeds(h);
    const r = execD.run(f, blocksD.map((b) => b.output));
    for (const t of Object.values(f)) t.dispose();
    return blocksD.map((b) => tf.keep(r[b.output]!));
  });
  process.stderr.write(`backend ${execD.backend}; ${hostFeeds.length} samples, ${hostFeeds.reduce((a, h) => a + (h.input_ids!.dims[1] ?? 0), 0)} tokens\n`);
  for (const [bi, block] of blocksQ.entries()) {
    const names = new Set(block.nodes.filter((n) => n.op_type === 'MatMulNBits').map((n) => n.input![1]!));
    const exec = await OnnxExecutor.create(quant, { trainable: (n) => names.has(n) });
    // targets
    let targets: tfjs.Tensor[];
    if (target === 'float-input') targets = floatOut.map((o) => o[bi]!);
    else {
      // float block on x_q: the dense graph's slice from block input to output, fed x_q
      const d = blocksD[bi]!;
      const idx = new GraphIndex(dense.graph);
      const graphInputs = new Set((dense.graph.input ?? []).map((v) => v.name));
      const slice = sliceFor(dense, idx, [d.output], (n) => n === d.input || graphInputs.has(n));
      const sub = subModel(dense, slice.nodes, slice.reads.map((r) => (dense.graph.input ?? []).find((v) => v.name === r) ?? { name: r, type: { tensor_type: { elem_type: 1 } } }));
      sub.graph.output = [{ name: d.output }];
      const execB = await OnnxExecutor.create(sub);
      targets = hostFeeds.map((h) => {
        const f = exec.feeds(h);
        const xq = exec.run(f, [block.input])[block.input]!;
        const fb: Record<string, tfjs.Tensor> = { [d.input]: xq };
        for (const r of slice.reads) if (r !== d.input) fb[r] = f[r]!;
        const y = tf.keep(execB.run(fb, [d.output])[d.output]!);
        for (const t of [...Object.values(f), xq]) t.dispose();
        return y;
      });
      execB.dispose();
    }
    const feeds = hostFeeds.map((h) => exec.feeds(h));
    const lossOf = (s: number) => tf.tidy(() => tf.mean(tf.square(tf.sub(exec.run(feeds[s]!, [block.output])[block.output]!, targets[s]!))) as tfjs.Scalar);
    const evalLoss = () => feeds.reduce((a, _, s) => a + lossOf(s).dataSync()[0]!, 0) / feeds.length;
    const before = evalLoss();
    const steps = epochs * feeds.length;
    const adam = new MaskedAdam(tf, exec.variables, new Map(), { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, clip: 0, warmup: 0, schedule: 'cosine', steps });
    const vars = [...exec.variables.values()];
    for (let step = 0; step < steps; step++) {
      const s = step % feeds.length;
      const { value, grads } = tf.variableGrads(() => lossOf(s), vars);
      value.dispose();
      const named: Record<string, tfjs.Tensor> = {};
      for (const [name, v] of exec.variables) named[name] = grads[v.name]!;
      adam.apply(named);
    }
    const afterFq = evalLoss();
    exec.writeBack(quant);
    adam.dispose();
    for (const f of feeds) for (const t of Object.values(f)) t.dispose();
    if (target !== 'float-input') for (const t of targets) t.dispose();
    exec.dispose();
    process.stderr.write(`block ${bi}: loss ${before.toExponential(4)} -> ${afterFq.toExponential(4)} (${((afterFq / before) * 100).toFixed(1)} %), ${names.size} tensors\n`);
  }
  const cpu = process.cpuUsage(c0);
  process.stderr.write(`reconstruction: wall ${((performance.now() - t0) / 1000).toFixed(1)} s, CPU ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s\n`);
  writeOnnx(quant, resolve(outPath!));
}

await main();
