/**
 * Kronecker + distillation in TQCompressed's schedule on stories260K-kv (issue #22): decompose.kronecker
 * at 60 % of the block linears' params, iterative (output-aware ALS, calibrated on the model the
 * earlier stages left), in stages of decoder blocks, each followed by distill.kd on text the teacher
 * samples (data-free: eval stories 11–46 are never trained on); optionally a final distill.kd over
 * all block linears. Perplexity on stories 11–46, file bytes, params kept, the schedule's cost line
 * (wall/CPU of factoring and of distillation), whole-run wall/CPU, and ONNX Runtime latency against
 * the dense model (bench/kronecker-latency.ts's measurement, each model in its own child process).
 * Run: npx tsc -p tsconfig.json && nice -n 5 node dist/bench/kronecker-distill.js [--blocks 1] [--steps 40] [--lr 0.002] [--final 0] [--samples 64] [--max-compute 1] [--final-samples 256] [--runtime factored|dense_at_load] [--no-latency]
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { run } from '../src/cli/main.js';
import type { Report } from '../src/report/schema.js';
import { measureFileInChild, type Measured } from './kronecker-latency.js';

const ROOT = resolve(import.meta.dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K-kv/model.onnx');
const TEXT = join(ROOT, 'fixtures/tinystories/valid-head.txt');
const TOK = join(ROOT, 'fixtures/stories260K/tok512.bin');

export interface ScheduleSettings {
  blocksPerStage: number;
  stepsPerStage: number;
  lr: number;
  /** steps of a last distill.kd over every block linear after the schedule; 0 = none */
  finalSteps: number;
  /** windows the final distill.kd samples from the teacher (each stage samples 256) */
  finalSamples?: number;
  /** calibration windows of 128 tokens (stories 1–10) */
  samples: number;
  /** decompose.kronecker's max_compute: shapes costing at most this fraction of the dense multiply-adds */
  maxCompute: number;
  /** decompose.kronecker's runtime (factored when absent) */
  runtime?: 'factored' | 'dense_at_load';
}

const kd = (steps: number, lr: number, samples = 256) => ({ steps, batch_size: 4, seq_len: 128, lr, warmup: Math.min(20, Math.floor(steps / 5)), schedule: 'cosine', samples, start_token: 1, checkpoint_every: 0 });

export function scheduleRecipe(s: ScheduleSettings): Record<string, unknown> {
  return {
    version: 1,
    calibration: { data: { kind: 'text', path: TEXT, tokenizer: TOK, select: '1-10', segment: 128 }, samples: s.samples },
    passes: [
      {
        pass: 'decompose.kronecker',
        targets: ['layers.*'],
        params: { ratio: 0.6, mode: 'iterative', max_compute: s.maxCompute, runtime: s.runtime ?? 'factored' },
        schedule: { blocks_per_stage: s.blocksPerStage, distill: kd(s.stepsPerStage, s.lr) },
      },
      ...(s.finalSteps > 0 ? [{ pass: 'distill.kd', targets: ['layers.*'], params: kd(s.finalSteps, s.lr, s.finalSamples) }] : []),
    ],
    eval: { data: { kind: 'text', path: TEXT, tokenizer: TOK, select: '11-46' } },
  };
}

export interface ScheduleRun {
  settings: ScheduleSettings;
  report: Report;
  output: string;
  wall_s: number;
  cpu_s: number;
}

export async function runSchedule(dir: string, s: ScheduleSettings): Promise<ScheduleRun> {
  const name = `kron-b${s.blocksPerStage}-s${s.stepsPerStage}-f${s.finalSteps}-w${s.finalSamples ?? 256}-c${s.maxCompute}-${s.runtime ?? 'factored'}`;
  const recipe = join(dir, `${name}.yaml`);
  writeFileSync(recipe, JSON.stringify(scheduleRecipe(s)));
  const output = join(dir, `${name}.onnx`);
  const report = join(dir, `${name}.json`);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const code = await run(['compress', MODEL, '-r', recipe, '-o', output, '--report', report], { out: () => {}, err: (t: string) => process.stderr.write(t), fancy: false });
  const cpu = process.cpuUsage(c0);
  if (code !== 0) throw new Error(`${name}: pare compress exited ${code}`);
  return { settings: s, report: JSON.parse(readFileSync(report, 'utf8')) as Report, output, wall_s: (performance.now() - t0) / 1000, cpu_s: (cpu.user + cpu.system) / 1e6 };
}

/** Fraction of the block linears' params the factored model keeps (from the Kronecker stages' per-layer params). */
function keptFraction(report: Report): number {
  const layers = report.passes.filter((p) => p.id === 'decompose.kronecker').flatMap((p) => p.layers);
  const sum = (key: string) => layers.reduce((a, l) => a + Number(l.extra?.[key] ?? 0), 0);
  // a layer kept dense has no extra: it keeps all of its params
  return sum('params_after') / sum('params_before');
}

export function scheduleRow(r: ScheduleRun): string {
  const rep = r.report;
  const cost = rep.schedules![0]!;
  const ppl = (rep.measurements.model.quality as { perplexity: number }).perplexity;
  const s = r.settings;
  const stages = cost.stages;
  const finalPass = s.finalSteps > 0 ? rep.passes.at(-1)! : undefined;
  const distillS = (cost.distill_ms + (finalPass?.ms ?? 0)) / 1000;
  const distillCpuS = (cost.distill_cpu_ms + (finalPass?.cpu_ms ?? 0)) / 1000;
  return `| ${s.blocksPerStage} | ${stages} | ${s.stepsPerStage} | ${s.finalSteps}${s.finalSamples && s.finalSamples !== 256 ? ` (${s.finalSamples} windows)` : ''} | ${s.lr} | ${s.maxCompute} | ${(keptFraction(rep) * 100).toFixed(1)} % | ${ppl.toFixed(3)} | ${rep.measurements.model.size.file_bytes} | ${(cost.pass_ms / 1000).toFixed(1)} / ${(cost.pass_cpu_ms / 1000).toFixed(1)} | ${distillS.toFixed(0)} / ${distillCpuS.toFixed(0)} | ${r.wall_s.toFixed(0)} / ${r.cpu_s.toFixed(0)} |`;
}

export const SCHEDULE_HEADER = [
  '| blocks / stage | stages | KD steps / stage | final KD steps | lr | max_compute | block-linear params kept | perplexity | file bytes | factoring wall / CPU (s) | distillation wall / CPU (s) | run wall / CPU (s) |',
  '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
];

export function latencyRows(rows: Measured[]): string[] {
  const cell = ([wall, cpu]: [number, number], digits: number) => `${wall.toFixed(digits)} / ${cpu.toFixed(digits)}`;
  return [
    '| stories260K-kv | batch 1 × 1: wall / CPU (ms) | 8 × 128: wall / CPU (ms) | 1 × 512: wall / CPU (ms) | RSS growth (MiB) |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...rows.map((m) => `| ${m.label} | ${cell(m.b1, 3)} | ${cell(m.b8x128, 1)} | ${cell(m.b1x512, 1)} | ${m.rssMiB.toFixed(0)} |`),
  ];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: { blocks: { type: 'string', default: '1' }, steps: { type: 'string', default: '40' }, lr: { type: 'string', default: '0.002' }, final: { type: 'string', default: '0' }, samples: { type: 'string', default: '64' }, 'max-compute': { type: 'string', default: '1' }, 'final-samples': { type: 'string', default: '256' }, runtime: { type: 'string', default: 'factored' }, 'no-latency': { type: 'boolean' } },
  });
  const settings: ScheduleSettings = { blocksPerStage: Number(values.blocks), stepsPerStage: Number(values.steps), lr: Number(values.lr), finalSteps: Number(values.final), samples: Number(values.samples), maxCompute: Number(values['max-compute']), finalSamples: Number(values['final-samples']), runtime: values.runtime as ScheduleSettings['runtime'] };
  const dir = mkdtempSync(join(tmpdir(), 'pare-bench-kron-distill-'));
  try {
    const r = await runSchedule(dir, settings);
    const dense = r.report.measurements.reference!;
    console.log(`dense: perplexity ${(dense.quality as { perplexity: number }).perplexity.toFixed(3)}, ${dense.size.file_bytes} bytes`);
    console.log([...SCHEDULE_HEADER, scheduleRow(r)].join('\n'));
    console.log(`per stage: ${r.report.passes.map((p) => `${p.id}${p.stage ? `#${p.stage.index}` : ''} ${(p.ms / 1000).toFixed(1)}/${((p.cpu_ms ?? 0) / 1000).toFixed(1)} s${p.summary?.last_loss !== undefined ? ` loss ${Number(p.summary.first_loss).toFixed(3)}→${Number(p.summary.smoothed_last_loss).toFixed(3)}` : ''}`).join('; ')}`);
    if (!values['no-latency']) {
      console.log('');
      console.log(latencyRows([measureFileInChild(MODEL, 'dense fp32 (KV)'), measureFileInChild(r.output, `Kronecker 60 % + distillation schedule (KV), runtime ${settings.runtime}`)]).join('\n'));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
