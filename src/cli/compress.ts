import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { compress, type CompressRun } from '../pipeline/compress.js';
import { createProgress, wantsFancyProgress } from '../pipeline/progress.js';
import { compressReport } from '../pipeline/report.js';
import { describeFailure } from '../report/budget.js';
import { writeReport } from '../report/io.js';
import { renderReportMarkdown } from '../report/markdown.js';
import type { RunHooks } from '../pass/hooks.js';
import type { Io } from './io.js';
import { bytes, table } from './table.js';

interface CompressFlags {
  kvCache: boolean;
  recipe: string;
  output: string;
  report?: string;
  dryRun?: boolean;
  resume?: boolean;
  stream?: boolean;
  json?: boolean;
  seed?: string;
  threads?: string;
  dtypes?: string;
  tokenizer?: string;
  config?: string;
}

function integer(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UserError(`${flag} expects a non-negative integer, got ${v}`);
  return Number(v);
}

function formatPlan(run: CompressRun): string {
  const lines = [`plan for ${run.input.path} with ${run.recipe.path} (dry run: nothing written)`];
  let before = 0;
  let after = 0;
  for (const p of run.plan) {
    lines.push('', `passes[${p.index}] ${p.pass}${p.needs_calibration ? ' (calibration)' : ''}: ${p.layers.length} layers`);
    lines.push(table(['layer', 'kind', 'shape', 'bytes', 'expected'], p.layers.map((l) => [l.name, l.kind, `${l.shape[0]}×${l.shape[1]}`, bytes(l.bytes_before), bytes(l.bytes_after)])));
    if (p.index === 0) for (const l of p.layers) before += l.bytes_before;
    if (p.index === run.plan.length - 1) for (const l of p.layers) after += l.bytes_after;
  }
  lines.push('', `targeted weights: ${bytes(before)} before, about ${bytes(after)} after the last pass`);
  if (run.folder) {
    lines.push('', `model folder ${run.folder.dir}:`);
    for (const v of run.folder.variants) lines.push(`  ${v.file}  ${v.dtype}${v.steps.length ? `: ${v.steps.map((s) => s.pass).join(' then ')}` : ''}`);
    lines.push(`  ${run.folder.files.filter((f) => !f.startsWith('onnx/')).join(', ')}`);
  }
  return lines.join('\n');
}

export function registerCompressCommand(program: Command, io: Io, setCode: (c: number) => void, hooks?: RunHooks): void {
  program
    .command('compress')
    .description('run a recipe of compression passes on a model and write the compressed checkpoint')
    .argument('<model>', '.onnx, .safetensors with config.json beside it, or a transformers.js model folder')
    .requiredOption('-r, --recipe <recipe>', 'recipe .yaml')
    .requiredOption('-o, --output <out>', 'output .onnx (or .safetensors for a safetensors input), or DIR/ for a transformers.js model folder; never the input')
    .option('--dtypes <list>', 'model folder: one file per dtype, e.g. fp32,q4,q4f16 (fp32, fp16, q8, q4, q4f16); default: the dtype the recipe makes')
    .option('--tokenizer <file>', 'model folder: the tokenizer to ship, a llama2.c tokenizer.bin (written as tokenizer.json) or a tokenizer.json')
    .option('--config <config.json>', "model folder: the model's config.json, for an input with none beside it")
    .option('--report <report.json>', 'write the JSON report here')
    .option('--dry-run', 'print which layers each pass touches and the expected size; write nothing')
    .option('--resume', 'continue from the last completed pass of an interrupted run')
    .option('--stream', 'keep rewritten weights in a spill file in the work folder instead of in memory')
    .option('--no-kv-cache', 'build a safetensors input as the single-input graph input_ids → logits instead of with the KV cache')
    .option('--json', 'print exactly one JSON document (the report, or the plan with --dry-run) on stdout')
    .option('--seed <n>', 'seed for every random choice (same input, recipe and seed give identical bytes)', '0')
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)')
    .action(async (modelPath: string, flags: CompressFlags) => {
      const progress = createProgress((line) => io.err(line), io.fancy ?? wantsFancyProgress());
      const run = await compress({
        model: modelPath,
        recipe: flags.recipe,
        output: flags.output,
        dryRun: flags.dryRun,
        resume: flags.resume,
        stream: flags.stream,
        build: { kvCache: flags.kvCache },
        dtypes: flags.dtypes?.split(','),
        folder: { tokenizer: flags.tokenizer, config: flags.config },
        seed: integer('--seed', flags.seed),
        threads: integer('--threads', flags.threads),
        progress,
        hooks,
      });
      progress.stop();
      if (flags.dryRun) {
        io.out(flags.json ? JSON.stringify({ input: run.input, recipe: run.recipe.path, passes: run.plan, ...(run.folder ? { folder: { dir: run.folder.dir, files: run.folder.files, variants: run.folder.variants } } : {}) }, null, 2) : formatPlan(run));
        setCode(0);
        return;
      }
      const report = compressReport(run);
      if (flags.report) writeReport(flags.report, report);
      io.out(flags.json ? JSON.stringify(report, null, 2) : renderReportMarkdown(report));
      const failed = (report.budgets ?? []).filter((b) => !b.ok);
      for (const b of failed) io.err(`budget failed: ${describeFailure(b)}`);
      setCode(failed.length ? 3 : 0);
    });
}
