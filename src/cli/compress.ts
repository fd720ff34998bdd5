import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { compress, type CompressRun } from '../pipeline/compress.js';
import { describeFailure } from '../report/budget.js';
import { renderHtml } from '../report/html/render.js';
import type { Report } from '../report/schema.js';
import { reportJson } from '../report/io.js';
import { renderReportMarkdown } from '../report/markdown.js';
import type { RunHooks } from '../pass/hooks.js';
import { progressFor, type Io } from './io.js';
import { bytes, table } from './table.js';

interface CompressFlags {
  kvCache: boolean;
  recipe: string;
  output: string;
  report?: string;
  reportHtml?: boolean;
  dryRun?: boolean;
  resume?: boolean;
  stream?: boolean;
  json?: boolean;
  seed?: string;
  threads?: string;
  mkdir?: boolean;
  progress?: boolean;
  dtypes?: string;
  opset?: string;
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
  const selecting = run.plan.filter((p) => !p.graph_wide);
  for (const p of run.plan) {
    if (p.graph_wide) {
      lines.push('', `passes[${p.index}] ${p.pass}${p.needs_calibration ? ' (calibration)' : ''}: the whole graph (no layer selection)`);
      continue;
    }
    lines.push('', `passes[${p.index}] ${p.pass}${p.needs_calibration ? ' (calibration)' : ''}: ${p.layers.length} layers`);
    lines.push(table(['layer', 'kind', 'shape', 'bytes', 'expected'], p.layers.map((l) => [l.name, l.kind, `${l.shape[0]}×${l.shape[1]}`, bytes(l.bytes_before), bytes(l.bytes_after)])));
    if (p === selecting[0]) for (const l of p.layers) before += l.bytes_before;
    if (p === selecting.at(-1)) for (const l of p.layers) after += l.bytes_after;
  }
  const wide = run.plan.filter((p) => p.graph_wide).map((p) => p.pass);
  lines.push('', `targeted weights: ${bytes(before)} before, about ${bytes(after)} after the last pass that selects layers${wide.length ? ` (then ${wide.join(', ')} on the whole graph)` : ''}`);
  if (run.folder) {
    lines.push('', `model folder ${run.folder.dir}:`);
    for (const v of run.folder.variants) lines.push(`  ${v.file}  ${v.dtype}${v.steps.length ? `: ${v.steps.map((s) => s.pass).join(' then ')}` : ''}`);
    lines.push(`  ${run.folder.files.filter((f) => !f.startsWith('onnx/')).join(', ')}`);
  }
  return lines.join('\n');
}

/** report.json -> report.html beside it */
function htmlBeside(reportPath: string): string {
  return reportPath.toLowerCase().endsWith('.json') ? `${reportPath.slice(0, -5)}.html` : `${reportPath}.html`;
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
    .option('--report <report.json>', 'write the JSON report here (moved into place with the model)')
    .option('--report-html', 'also write the report as a self-contained HTML page beside the JSON (report.html), moved into place with it')
    .option('--opset <n>', "upgrade the model's default-domain ONNX opset to n before the first pass (overrides output.opset)")
    .option('--mkdir', 'create the missing folders of -o and --report')
    .option('--dry-run', 'print which layers each pass touches and the expected size; write nothing')
    .option('--resume', 'continue from the last completed pass of an interrupted run')
    .option('--stream', 'keep rewritten weights in a spill file in the work folder instead of in memory')
    .option('--no-kv-cache', 'build a safetensors input as the single-input graph input_ids → logits instead of with the KV cache')
    .option('--json', 'print exactly one JSON document (the report, or the plan with --dry-run) on stdout')
    .option('--progress', 'print progress lines on stderr even when it is not a terminal')
    .option('--seed <n>', 'seed for every random choice (same input, recipe and seed give identical bytes)', '0')
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)')
    .action(async (modelPath: string, flags: CompressFlags) => {
      if (flags.reportHtml && !flags.report) throw new UserError('--report-html writes the page beside the JSON report; add --report <report.json>');
      const progress = progressFor(io, flags.progress);
      let run: CompressRun;
      try {
        run = await compress({
          model: modelPath,
          recipe: flags.recipe,
          output: flags.output,
          reports: [
            ...(flags.report ? [{ path: flags.report, what: 'the report (--report)', render: reportJson }] : []),
            ...(flags.report && flags.reportHtml ? [{ path: htmlBeside(flags.report), what: 'the HTML report (--report-html)', render: (report: Report) => renderHtml({ kind: 'report', report }) }] : []),
          ],
          mkdir: flags.mkdir,
          dryRun: flags.dryRun,
          resume: flags.resume,
          stream: flags.stream,
          build: { kvCache: flags.kvCache },
          dtypes: flags.dtypes?.split(','),
          opset: integer('--opset', flags.opset),
          folder: { tokenizer: flags.tokenizer, config: flags.config },
          seed: integer('--seed', flags.seed),
          threads: integer('--threads', flags.threads),
          progress,
          hooks,
        });
      } finally {
        // a spinner is cleared before the result, or before the error line the CLI prints next
        progress.stop();
      }
      if (flags.dryRun) {
        io.out(flags.json ? JSON.stringify({ input: run.input, recipe: run.recipe.path, passes: run.plan, ...(run.folder ? { folder: { dir: run.folder.dir, files: run.folder.files, variants: run.folder.variants } } : {}) }, null, 2) : formatPlan(run));
        setCode(0);
        return;
      }
      const report = run.report!;
      io.out(flags.json ? JSON.stringify(report, null, 2) : renderReportMarkdown(report));
      const failed = (report.budgets ?? []).filter((b) => !b.ok);
      for (const b of failed) io.err(`budget failed: ${describeFailure(b)}`);
      setCode(failed.length ? 3 : 0);
    });
}
