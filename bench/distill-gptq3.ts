/**
 * GPTQ 3-bit per-channel on stories260K's block linears, then distill.kd with early stopping on
 * held-out teacher-sampled windows (the "GPTQ 3-bit + distillation ≤ 4.0 in ≤ 10 minutes"
 * row). Calibration stories 1–10, eval stories 11–46 (never trained on: the training text is
 * sampled from the teacher). Steps from the command line (default 600, the run).
 * Run: npx tsc -p tsconfig.json && node dist/bench/distill-gptq3.js [steps] [lr]
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { run } from '../src/cli/main.js';

const ROOT = resolve(import.meta.dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');
const TEXT = join(ROOT, 'fixtures/tinystories/valid-head.txt');
const TOK = join(ROOT, 'fixtures/stories260K/tok512.bin');

export function kdParams(steps: number, lr = 1e-3): Record<string, unknown> {
  return { steps, batch_size: 4, seq_len: 128, lr, warmup: 20, schedule: 'cosine', samples: 528, start_token: 1, checkpoint_every: 0, held_out: 16, eval_every: 50 };
}

export async function benchDistillGptq3(steps = 600, lr = 1e-3): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'pare-bench-kd3-'));
  try {
    const recipe = join(dir, 'r.yaml');
    writeFileSync(recipe, JSON.stringify({
      version: 1,
      calibration: { data: { kind: 'text', path: TEXT, tokenizer: TOK, select: '1-10', segment: 128 }, samples: 128 },
      passes: [
        { pass: 'quantize.gptq', targets: ['layers.*'], params: { bits: 3, granularity: 'channel', symmetric: false } },
        { pass: 'distill.kd', targets: ['layers.*'], params: kdParams(steps, lr) },
      ],
      eval: { data: { kind: 'text', path: TEXT, tokenizer: TOK, select: '11-46' } },
    }));
    const report = join(dir, 'r.json');
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const code = await run(['compress', MODEL, '-r', recipe, '-o', join(dir, 'm.onnx'), '--report', report], { out: () => {}, err: () => {}, fancy: false });
    const cpu = process.cpuUsage(c0);
    const wall = (performance.now() - t0) / 1000;
    if (code !== 0) return `failed (exit ${code})`;
    const r = JSON.parse(readFileSync(report, 'utf8'));
    const m = r.measurements;
    const kd = r.passes[1].summary;
    return [
      `distill.kd params: \`${JSON.stringify(kdParams(steps, lr))}\``,
      '',
      '| method | dense ppl | perplexity | file bytes | bits/weight | held-out KL first → best (step) | stopped at | KD wall (s) | run wall / CPU (s) |',
      '| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |',
      `| GPTQ 3-bit per-channel + distill.kd ${steps} steps, early stopping | ${m.reference.quality.perplexity.toFixed(3)} | ${m.model.quality.perplexity.toFixed(3)} | ${m.model.size.file_bytes} | ${m.model.size.bits_per_weight.toFixed(2)} | ${Number(kd.held_out_kl_first).toFixed(4)} → ${Number(kd.held_out_kl_best).toFixed(4)} (${kd.best_step}) | ${kd.stopped_at_step} | ${kd.wall_s} | ${wall.toFixed(0)} / ${((cpu.user + cpu.system) / 1e6).toFixed(0)} |`,
      '',
      `held-out KL by step: ${kd.held_out_kl}`,
    ].join('\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(await benchDistillGptq3(Number(process.argv[2] ?? 600), Number(process.argv[3] ?? 1e-3)));
}
