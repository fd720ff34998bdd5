/**
 * One distill.kd training step on stories260K (KV-cache form) after 50 % magnitude pruning, timed
 * by phase: teacher (ONNX Runtime), student forward + backward (tfjs variableGrads), Adam. Wall and
 * CPU per step (CPU of the whole process: with threads > 1 it includes the workers'), averaged over
 * the steps after the first (which builds the static caches). threads as distill.kd's param.
 * Run: npx tsc -p tsconfig.json && node dist/bench/distill-step.js [steps] [batch] [seq] [threads]
 */
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { KdParams, studentLoss } from '../src/distill/kd.js';
import { MaskedAdam } from '../src/distill/optimizer.js';
import { BatchGradients } from '../src/distill/parallel.js';
import { encodeInline } from '../src/model/onnx-io.js';
import { Teacher } from '../src/distill/teacher.js';
import { pruningMasks, trainableInitializers } from '../src/distill/trainable.js';
import { linears } from '../src/model/linears.js';
import { modelIo } from '../src/model/io.js';
import { readOnnx } from '../src/model/onnx-io.js';
import { magnitude } from '../src/prune/magnitude.js';
import { resolveKvShapes } from '../src/runtime/kv-shapes.js';
import { OnnxExecutor } from '../src/runtime/tfjs/executor.js';
import { seededRandom } from '../src/util/random.js';

const ROOT = resolve(import.meta.dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K-kv/model.onnx');

export async function benchDistillStep(steps = 20, batch = 4, seqLen = 128, threads = 1): Promise<string> {
  const model = readOnnx(MODEL);
  const layers = linears(model).filter((l) => l.name.startsWith('layers.'));
  const random = seededRandom(1);
  await magnitude.apply(model, magnitude.params.parse({ sparsity: 0.5 }), { layers, seed: 0, random, progress: { layer() {} }, where: 'bench' });
  const io = await resolveKvShapes(model, modelIo(model));
  const p = KdParams.parse({ steps, batch_size: batch, seq_len: seqLen });
  const names = trainableInitializers(model, layers);
  const exec = await OnnxExecutor.create(model, { trainable: (n) => names.has(n) });
  const tf = exec.tf;
  const teacher = await Teacher.open(MODEL, {});
  const adam = new MaskedAdam(tf, exec.variables, pruningMasks(exec, model), { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, clip: 1, warmup: 5, schedule: 'cosine', steps });
  const gradients = BatchGradients.start(exec, (rows, ids, target) => studentLoss(exec, { ...p, batch_size: rows }, io, ids, target, [], []), threads, () => ({
    model: encodeInline(model),
    path: model.path,
    trainable: [...names],
    params: p,
    io,
    hidden: [],
    attention: [],
  }));
  const sum = { teacher: 0, grad: 0, adam: 0, wall: 0, cpu: 0 };
  for (let step = 0; step < steps; step++) {
    const ids = Int32Array.from({ length: batch * seqLen }, () => Math.floor(random() * 512));
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const target = await teacher.run(ids, batch, seqLen);
    const t1 = performance.now();
    const { grads } = await gradients.compute(ids, batch, seqLen, target);
    const t2 = performance.now();
    adam.apply(grads);
    const t3 = performance.now();
    const cpu = process.cpuUsage(c0);
    if (step === 0) continue;
    sum.teacher += t1 - t0;
    sum.grad += t2 - t1;
    sum.adam += t3 - t2;
    sum.wall += t3 - t0;
    sum.cpu += (cpu.user + cpu.system) / 1000;
  }
  const n = steps - 1;
  const ms = (x: number) => (x / n).toFixed(1);
  await gradients.close();
  exec.dispose();
  await teacher.close();
  return `${batch} × ${seqLen}, ${threads} thread(s), ${n} steps after the first: per step teacher ${ms(sum.teacher)} ms, forward+backward ${ms(sum.grad)} ms, adam ${ms(sum.adam)} ms; wall ${ms(sum.wall)} ms, CPU ${ms(sum.cpu)} ms (tensors alive ${tf.memory().numTensors})`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [steps, batch, seq, threads] = process.argv.slice(2).map(Number);
  console.log(await benchDistillStep(steps || 20, batch || 4, seq || 128, threads || 1));
}
