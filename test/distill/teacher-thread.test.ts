import { join, resolve } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { distillKd } from '../../src/distill/kd.js';
import { Teacher, teacherSpec, type TeacherTargets } from '../../src/distill/teacher.js';
import { TeacherThread } from '../../src/distill/teacher-thread.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { encodeInline, readOnnx } from '../../src/model/onnx-io.js';
import { RunInterrupted } from '../../src/pass/hooks.js';
import type { PassContext } from '../../src/pass/pass.js';
import { magnitude } from '../../src/prune/magnitude.js';
import { seededRandom } from '../../src/util/random.js';
import { tempDir } from '../helpers.js';

/** Needs the built worker entry: npx tsc -p tsconfig.json (dist/src/distill/teacher-worker.js). */

const ROOT = resolve(__dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');
const KV_MODEL = join(ROOT, 'fixtures/stories260K-kv/model.onnx');
const tmp = tempDir('pare-teacher-thread-');
afterAll(() => tmp.cleanup());

const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function expectSameTargets(got: TeacherTargets, want: TeacherTargets) {
  expect(bytesOf(got.logits).equals(bytesOf(want.logits))).toBe(true);
  for (const [which, map] of [['hidden', want.hidden], ['attention', want.attention]] as const) {
    expect([...got[which].keys()]).toEqual([...map.keys()]);
    for (const [i, a] of map) expect(bytesOf(got[which].get(i)!).equals(bytesOf(a)), `${which} ${i}`).toBe(true);
  }
}

function context(model: Model, extra: Partial<PassContext> = {}): PassContext {
  return { layers: linears(model).filter((l) => l.name.startsWith('layers.')), seed: 0, random: seededRandom(1), progress: { layer() {} }, where: 'passes[1]', original: () => MODEL, recipeDir: ROOT, ...extra };
}

async function prunedStudent(): Promise<Model> {
  const model = readOnnx(MODEL);
  await magnitude.apply(model, magnitude.params.parse({ sparsity: 0.5 }), context(model));
  return model;
}

/** A short run that exercises every teacher output: sampled windows, held-out logits, hidden and attention targets. */
const SHORT = { steps: 6, batch_size: 2, seq_len: 32, lr: 2e-3, warmup: 2, samples: 12, start_token: 1, checkpoint_every: 0, held_out: 4, eval_every: 3, loss_weights: { kl: 1, hidden: 0.5, attention: 0.5 } };

describe('the teacher in a worker thread', () => {
  it.each([
    ['stories260K', MODEL],
    ['stories260K-kv', KV_MODEL],
  ])('%s: the worker returns the in-thread session\'s logits, hidden states and attention outputs bit for bit, with several requests in flight', async (_, path) => {
    const spec = await teacherSpec(path, { hidden: [0, 2], attention: [1, 3] });
    const here = await Teacher.fromSpec(spec);
    const thread = new TeacherThread(spec);
    try {
      const r = seededRandom(3);
      const batches = [4, 1, 3].map((rows) => ({ rows, ids: Int32Array.from({ length: rows * 32 }, () => Math.floor(r() * 512)) }));
      const fromThread = await Promise.all(batches.map((b) => thread.run(b.ids, b.rows, 32)));
      for (const [k, b] of batches.entries()) {
        const want = await here.run(b.ids, b.rows, 32);
        expect(want.hidden.size + want.attention.size).toBe(4);
        expectSameTargets(fromThread[k]!, want);
      }
    } finally {
      await thread.close();
      await here.close();
    }
    expect(TeacherThread.running).toBe(0);
  }, 60_000);

  it('a run ONNX Runtime refuses rejects that request with its message; the next request still runs', async () => {
    const thread = new TeacherThread(await teacherSpec(MODEL));
    try {
      await expect(thread.run(Int32Array.from({ length: 8 }, () => 100_000), 1, 8)).rejects.toThrow(/teacher thread: .*indices element out of data bounds, idx=100000/);
      expect((await thread.run(new Int32Array(8), 1, 8)).logits.length).toBe(8 * 512);
    } finally {
      await thread.close();
    }
  }, 30_000);

  it('a session that cannot be built rejects every request with the reason, naming the teacher', async () => {
    const spec = await teacherSpec(MODEL);
    const thread = new TeacherThread({ ...spec, bytes: Uint8Array.of(1, 2, 3) });
    try {
      const runs = [thread.run(new Int32Array(8), 1, 8), thread.run(new Int32Array(8), 1, 8)];
      for (const run of runs) await expect(run).rejects.toThrow(/ONNX Runtime cannot build the distillation teacher's session for .*stories260K\/model\.onnx: .*protobuf parsing failed/);
    } finally {
      await thread.close();
    }
  }, 30_000);

  it('a worker that exits rejects what is outstanding and what comes after, instead of leaving it waiting', async () => {
    const thread = new TeacherThread(await teacherSpec(MODEL));
    const run = thread.run(new Int32Array(4 * 32), 4, 32);
    // stands for a crash: the worker ends while a request is outstanding
    await (thread as unknown as { worker: Worker }).worker.terminate();
    await expect(run).rejects.toThrow(/teacher thread \(.*stories260K\/model\.onnx\) exited \(code \d+\)/);
    await expect(thread.run(new Int32Array(8), 1, 8)).rejects.toThrow(/exited/);
    await thread.close();
    expect(TeacherThread.running).toBe(0);
  }, 30_000);
});

describe('distill.kd with the teacher thread', () => {
  it('trains the same student, byte for byte, as with the teacher on this thread (sampled data, held-out KL, hidden and attention targets)', async () => {
    const train = async (teacherThread: boolean) => {
      const model = await prunedStudent();
      const result = await distillKd.apply(model, distillKd.params.parse({ ...SHORT, teacher_thread: teacherThread }), context(model));
      return { bytes: Buffer.from(encodeInline(model)), summary: result.summary! };
    };
    const here = await train(false);
    const thread = await train(true);
    expect(TeacherThread.running).toBe(0);
    expect(thread.summary.first_loss).toBe(here.summary.first_loss);
    expect(thread.summary.last_loss).toBe(here.summary.last_loss);
    expect(thread.summary.held_out_kl).toBe(here.summary.held_out_kl);
    expect(thread.bytes.equals(here.bytes)).toBe(true);
    // the run trained something (the comparison would also pass if neither had)
    expect(thread.bytes.equals(Buffer.from(encodeInline(await prunedStudent())))).toBe(false);
  }, 120_000);

  it('ends its worker on every way out: early stop, an error mid-run, and an interrupted run continued with --resume (which writes what a clean run writes)', async () => {
    const earlyStop = await prunedStudent();
    const stopped = await distillKd.apply(earlyStop, distillKd.params.parse({ ...SHORT, lr: 0.1, clip: 0, warmup: 0, eval_every: 2, patience: 1 }), context(earlyStop));
    expect(stopped.summary!.stopped_at_step).toBeLessThan(SHORT.steps);
    expect(TeacherThread.running).toBe(0);

    const withCheckpoints = { ...SHORT, checkpoint_every: 2 };
    const clean = await prunedStudent();
    await distillKd.apply(clean, distillKd.params.parse(withCheckpoints), context(clean, { workFile: (n) => join(tmp.dir, `clean-${n}`) }));

    const work = (n: string) => join(tmp.dir, `resumed-${n}`);
    const interrupted = await prunedStudent();
    const hooks = {
      afterTrainingStep: async (done: number) => {
        if (done === 4) throw new RunInterrupted();
      },
    };
    await expect(distillKd.apply(interrupted, distillKd.params.parse(withCheckpoints), context(interrupted, { workFile: work, hooks }))).rejects.toThrow(RunInterrupted);
    expect(TeacherThread.running).toBe(0);

    const resumed = await prunedStudent();
    const result = await distillKd.apply(resumed, distillKd.params.parse(withCheckpoints), context(resumed, { workFile: work, resume: true }));
    expect(result.summary!.resumed_at_step).toBe(4);
    expect(TeacherThread.running).toBe(0);
    expect(Buffer.from(encodeInline(resumed)).equals(Buffer.from(encodeInline(clean)))).toBe(true);
  }, 180_000);
});
