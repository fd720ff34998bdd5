import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../../src/data/load.js';
import { DatasetSpec } from '../../src/data/spec.js';
import { distillKd } from '../../src/distill/kd.js';
import { readWeight } from '../../src/model/linear-weights.js';
import { decoderBlocks } from '../../src/model/blocks.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { type PassContext } from '../../src/pass/pass.js';
import { seededRandom } from '../../src/util/random.js';
import { magnitude } from '../../src/prune/magnitude.js';
import { rtn } from '../../src/quantize/rtn.js';
import { ort, sessionFromFile, sessionFromModel } from '../../src/runtime/ort.js';
import { runCli } from '../cli/run-cli.js';
import { FIXTURES, tempDir } from '../helpers.js';
import { firstWindows, meanMse, outputsOf } from './reference-outputs.js';

const ROOT = resolve(__dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');
/** the built CLI with a hold point (test/cli/hold-entry.ts) */
const HOLD_ENTRY = join(ROOT, 'dist/test/cli/hold-entry.js');
const tmp = tempDir('pare-distill-');
afterAll(() => tmp.cleanup());

function context(model: Model, workDir?: string): PassContext {
  return {
    layers: linears(model).filter((l) => l.name.startsWith('layers.')),
    seed: 0,
    random: seededRandom(1),
    progress: { layer() {} },
    where: 'passes[1]',
    original: () => MODEL,
    recipeDir: ROOT,
    ...(workDir ? { workFile: (name: string) => join(workDir, name) } : {}),
  };
}

/** Mean KL(teacher ‖ student) per token on the first 48 tokens of eval stories 11–14 (training uses sampled text). */
async function heldOutKl(student: Model): Promise<number> {
  const teacher = await sessionFromFile(MODEL, { threads: 1 });
  const s = await sessionFromModel(student, { threads: 1 });
  const data = await loadDataset(DatasetSpec.parse({ kind: 'text', path: 'fixtures/tinystories/valid-head.txt', tokenizer: 'fixtures/stories260K/tok512.bin', select: '11-14' }), ROOT);
  if (data.kind !== 'tokens') throw new Error('expected tokens');
  const ids = BigInt64Array.from(data.sequences.flatMap((s) => Array.from(s.subarray(0, 48))), BigInt);
  const feed = { input_ids: new ort.Tensor('int64', ids, [4, 48]) };
  const zt = (await teacher.run(feed)).logits!.data as Float32Array;
  const zs = (await s.run(feed)).logits!.data as Float32Array;
  let kl = 0;
  const rows = zt.length / 512;
  for (let row = 0; row < rows; row++) {
    const lse = (z: Float32Array) => {
      let m = -Infinity;
      for (let v = 0; v < 512; v++) m = Math.max(m, z[row * 512 + v]!);
      let sum = 0;
      for (let v = 0; v < 512; v++) sum += Math.exp(z[row * 512 + v]! - m);
      return m + Math.log(sum);
    };
    const lt = lse(zt);
    const ls = lse(zs);
    for (let v = 0; v < 512; v++) {
      const logpt = zt[row * 512 + v]! - lt;
      kl += Math.exp(logpt) * (logpt - (zs[row * 512 + v]! - ls));
    }
  }
  await teacher.release();
  await s.release();
  return kl / rows;
}

const SMALL = { steps: 24, batch_size: 4, seq_len: 32, lr: 2e-3, warmup: 4, samples: 24, start_token: 1, checkpoint_every: 0 };

describe('distill.kd', () => {
  it('after 50 % magnitude pruning: lowers held-out KL to the teacher, keeps every pruned zero, keeps shapes', async () => {
    const model = readOnnx(MODEL);
    const ctx = context(model);
    await magnitude.apply(model, magnitude.params.parse({ sparsity: 0.5 }), ctx);
    const before = ctx.layers.map((l) => readWeight(model, l));
    const klBefore = await heldOutKl(model);
    const result = await distillKd.apply(model, distillKd.params.parse(SMALL), context(model));
    const klAfter = await heldOutKl(model);
    expect(klAfter).toBeLessThan(0.9 * klBefore);
    expect(result.summary?.tokens_seen).toBe(24 * 4 * 32);
    expect(Number(result.summary?.last_loss)).toBeLessThan(Number(result.summary?.first_loss));
    let changed = 0;
    for (const [j, l] of linears(model).filter((x) => x.name.startsWith('layers.')).entries()) {
      const W = readWeight(model, l);
      expect(W.length).toBe(before[j]!.length);
      for (let i = 0; i < W.length; i++) {
        if (before[j]![i] === 0) expect(W[i]).toBe(0);
        else if (W[i] !== before[j]![i]) changed++;
      }
    }
    expect(changed).toBeGreaterThan(1000);
  }, 120_000);

  it('after int8 RTN: the weights are re-quantized onto their own grid (same scales, int8 codes) and the model still runs', async () => {
    const model = readOnnx(MODEL);
    const ctx = context(model);
    await rtn.apply(model, rtn.params.parse({ bits: 8, granularity: 'channel', format: 'qdq' }), ctx);
    const q = context(model).layers;
    const scalesBefore = q.map((l) => Buffer.from(model.tensor(l.weightChain[0]!.input![1]!).data));
    const codesBefore = q.map((l) => Buffer.from(model.tensor(l.weight).data));
    await distillKd.apply(model, distillKd.params.parse({ ...SMALL, steps: 12, lr: 5e-3 }), context(model));
    let moved = 0;
    for (const [j, l] of context(model).layers.entries()) {
      expect(model.tensor(l.weight).dataType).toBe(3); // still int8
      expect(Buffer.from(model.tensor(l.weightChain[0]!.input![1]!).data).equals(scalesBefore[j]!)).toBe(true);
      if (!Buffer.from(model.tensor(l.weight).data).equals(codesBefore[j]!)) moved++;
    }
    expect(moved).toBeGreaterThan(0);
    expect(await heldOutKl(model)).toBeLessThan(1);
  }, 120_000);

  it('hidden-state MSE and cross-entropy terms equal the same quantities computed from ONNX Runtime', async () => {
    const student = readOnnx(MODEL);
    await magnitude.apply(student, magnitude.params.parse({ sparsity: 0.5 }), context(student));
    const text = { kind: 'text', path: 'fixtures/tinystories/valid-head.txt', tokenizer: 'fixtures/stories260K/tok512.bin', select: '1-2' };
    const data = await loadDataset(DatasetSpec.parse(text), ROOT);
    if (data.kind !== 'tokens') throw new Error('expected tokens');
    const { windows, feed } = firstWindows(data.sequences);
    const blocks = decoderBlocks(student).map((b) => b.output);
    const s = await outputsOf(student, ['logits', ...blocks], feed);
    const mse = meanMse(s, await outputsOf(readOnnx(MODEL), blocks, feed), blocks);
    const logits = s.logits!.data as Float32Array;
    let nll = 0;
    for (let w = 0; w < 4; w++) {
      for (let i = 0; i < 31; i++) {
        const row = logits.subarray((w * 32 + i) * 512, (w * 32 + i + 1) * 512);
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((acc, z) => acc + Math.exp(z - max), 0));
        nll += lse - row[windows[w]![i + 1]!]!;
      }
    }
    nll /= 4 * 31;
    const firstLoss = async (weights: object) => {
      const m = readOnnx(MODEL);
      await magnitude.apply(m, magnitude.params.parse({ sparsity: 0.5 }), context(m));
      const params = { steps: 1, batch_size: 4, seq_len: 32, samples: 4, data: text, lr: 1e-9, warmup: 0, checkpoint_every: 0, loss_weights: weights };
      return Number((await distillKd.apply(m, distillKd.params.parse(params), context(m))).summary!.first_loss);
    };
    expect(Math.abs((await firstLoss({ kl: 0, hidden: 1, ce: 0 })) - mse) / mse).toBeLessThan(1e-4);
    expect(Math.abs((await firstLoss({ kl: 0, hidden: 0, ce: 1 })) - nll) / nll).toBeLessThan(1e-4);
  }, 120_000);

  it('a classifier (float input) cannot learn from text sampled from the teacher: it names the data it needs', async () => {
    const mnist = readOnnx(FIXTURES.mnist);
    await expect(distillKd.apply(mnist, distillKd.params.parse({}), { ...context(mnist), layers: linears(mnist), original: () => FIXTURES.mnist })).rejects.toThrow(
      /data: teacher samples token text; a classifier learns from images: set params.data to calibration or a dataset/,
    );
  });
});

describe('distill.kd checkpoints', () => {
  const recipePath = join(tmp.dir, 'distill.yaml');
  writeFileSync(
    recipePath,
    `version: 1
passes:
  - pass: prune.magnitude
    targets: ["layers.*"]
    params: { sparsity: 0.5 }
  - pass: distill.kd
    targets: ["layers.*"]
    params: { steps: 8, batch_size: 2, seq_len: 16, samples: 8, start_token: 1, checkpoint_every: 4, warmup: 2, threads: 2 }
`,
  );

  it('kill -9 mid-training, then --resume continues from the saved step and writes what a clean run writes', async () => {
    const clean = join(tmp.dir, 'clean.onnx');
    const r0 = await runCli(['compress', MODEL, '-r', recipePath, '-o', clean, '--report', join(tmp.dir, 'clean.json')]);
    expect(r0.code, r0.err).toBe(0);
    const out = join(tmp.dir, 'killed.onnx');
    await new Promise<void>((done, fail) => {
      const child = spawn(process.execPath, [HOLD_ENTRY, 'step', '4', 'compress', MODEL, '-r', recipePath, '-o', out], { stdio: ['ignore', 'ignore', 'pipe'] });
      // the child holds after saving step 4's training state; kill it once the state file is there
      const timer = setInterval(() => {
        const work = join(tmp.dir, '.pare-work');
        const saved = existsSync(work) && readdirSync(work).some((d) => existsSync(join(work, d, 'pass-1-distill.state')));
        if (saved) {
          clearInterval(timer);
          setTimeout(() => child.kill('SIGKILL'), 300);
        }
      }, 100);
      child.stderr.resume();
      // never leave a held child behind, even when the state file does not appear
      const guard = setTimeout(() => child.kill('SIGKILL'), 150_000);
      child.on('exit', () => clearTimeout(guard));
      child.on('exit', () => (clearInterval(timer), done()));
      child.on('error', fail);
    });
    expect(existsSync(out)).toBe(false);
    const r = await runCli(['compress', MODEL, '-r', recipePath, '-o', out, '--resume', '--report', join(tmp.dir, 'resumed.json')]);
    expect(r.code, r.err).toBe(0);
    const report = JSON.parse(readFileSync(join(tmp.dir, 'resumed.json'), 'utf8'));
    expect(report.passes[1].summary.resumed_at_step).toBe(4);
    expect(readFileSync(out).equals(readFileSync(clean))).toBe(true);
  }, 180_000);
});
