/**
 * One distill.kd training step on stories260K (KV-cache form) after 50 % magnitude pruning, timed
 * by phase: teacher (ONNX Runtime; the next step's run is issued before this step's student work, as
 * distill.kd does), student forward + backward (tfjs variableGrads), Adam. Wall and CPU per step
 * (CPU of the whole process: it includes worker threads'), and how long the JS thread was busy
 * (event-loop utilization, which counts time waiting for a core on a loaded machine; and the
 * thread's own CPU time: what predicts the step's wall on an idle machine), averaged over the
 * steps after the first (which builds the static caches). threads as distill.kd's param; the
 * teacher in a worker thread (teacher_thread: true, the default) or on this thread.
 * Run: npx tsc -p tsconfig.json && node dist/bench/distill-step.js [steps] [batch] [seq] [threads] [worker|thread]
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { KdParams, studentLoss } from '../src/distill/kd.js';
import { MaskedAdam } from '../src/runtime/tfjs/optimizer.js';
import { BatchGradients } from '../src/distill/parallel.js';
import { encodeInline } from '../src/model/onnx-io.js';
import { Teacher, teacherSpec, type TeacherTargetSource } from '../src/distill/teacher.js';
import { TeacherThread } from '../src/distill/teacher-thread.js';
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

export async function benchDistillStep(steps = 20, batch = 4, seqLen = 128, threads = 1, where: 'worker' | 'thread' = 'worker'): Promise<string> {
  const model = readOnnx(MODEL);
  const layers = linears(model).filter((l) => l.name.startsWith('layers.'));
  const random = seededRandom(1);
  await magnitude.apply(model, magnitude.params.parse({ sparsity: 0.5 }), { layers, seed: 0, random, progress: { layer() {} }, where: 'bench' });
  const io = await resolveKvShapes(model, modelIo(model));
  const p = KdParams.parse({ steps, batch_size: batch, seq_len: seqLen });
  const names = trainableInitializers(model, layers);
  const exec = await OnnxExecutor.create(model, { trainable: (n) => names.has(n) });
  const tf = exec.tf;
  const spec = await teacherSpec(MODEL, {});
  const teacher: TeacherTargetSource = where === 'worker' ? new TeacherThread(spec) : await Teacher.fromSpec(spec);
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
  const batches = Array.from({ length: steps }, () => Int32Array.from({ length: batch * seqLen }, () => Math.floor(random() * 512)));
  // as distill.kd does: step n + 1's targets are asked for before step n's student work
  const teach = (step: number) => (step < steps ? teacher.run(batches[step]!, batch, seqLen) : undefined);
  let prefetched = teach(0);
  const sum = { teacher: 0, teacherJsCpu: 0, grad: 0, adam: 0, wall: 0, cpu: 0, busy: 0, jsCpu: 0, queued: 0 };
  for (let step = 0; step < steps; step++) {
    const c0 = process.cpuUsage();
    const e0 = performance.eventLoopUtilization();
    const s0 = thisThreadSchedule();
    const t0 = performance.now();
    const target = await prefetched!;
    prefetched = teach(step + 1);
    const t1 = performance.now();
    const s1Teacher = thisThreadSchedule();
    const { grads } = await gradients.compute(batches[step]!, batch, seqLen, target);
    const t2 = performance.now();
    adam.apply(grads);
    const t3 = performance.now();
    const cpu = process.cpuUsage(c0);
    const elu = performance.eventLoopUtilization(e0);
    const s1 = thisThreadSchedule();
    if (step === 0) continue;
    sum.teacher += t1 - t0;
    sum.teacherJsCpu += s1Teacher.cpu - s0.cpu;
    sum.grad += t2 - t1;
    sum.adam += t3 - t2;
    sum.wall += t3 - t0;
    sum.cpu += (cpu.user + cpu.system) / 1000;
    sum.busy += elu.active;
    sum.jsCpu += s1.cpu - s0.cpu;
    sum.queued += s1.queued - s0.queued;
  }
  const n = steps - 1;
  const ms = (x: number) => (x / n).toFixed(1);
  await gradients.close();
  exec.dispose();
  await teacher.close();
  return `${batch} × ${seqLen}, ${threads} thread(s), teacher ${where}, ${n} steps after the first: per step teacher ${ms(sum.teacher)} ms (${where === 'worker' ? 'waiting for it' : 'running it'}; JS thread CPU ${ms(sum.teacherJsCpu)} ms), forward+backward ${ms(sum.grad)} ms, adam ${ms(sum.adam)} ms; wall ${ms(sum.wall)} ms, CPU ${ms(sum.cpu)} ms, JS thread: busy ${ms(sum.busy)} ms (event loop), CPU ${ms(sum.jsCpu)} ms, waiting for a core ${ms(sum.queued)} ms (tensors alive ${tf.memory().numTensors})`;
}

/** This thread's CPU time and time runnable but waiting for a core, in ms (Linux schedstat; NaN elsewhere). */
function thisThreadSchedule(): { cpu: number; queued: number } {
  try {
    const [cpu, queued] = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ').map(Number);
    return { cpu: cpu! / 1e6, queued: queued! / 1e6 };
  } catch {
    return { cpu: NaN, queued: NaN };
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [steps, batch, seq, threads] = process.argv.slice(2, 6).map(Number);
  const where = process.argv[6] ?? 'worker';
  if (where !== 'worker' && where !== 'thread') throw new Error(`teacher: worker or thread, not ${where}`);
  console.log(await benchDistillStep(steps || 20, batch || 4, seq || 128, threads || 1, where));
}
