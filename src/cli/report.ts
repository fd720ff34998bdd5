import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { UserError } from '../errors.js';
import { describeFailure, parseBudget, type Budgets } from '../report/budget.js';
import { diffReports, renderDiffMarkdown } from '../report/diff.js';
import { renderHtml } from '../report/html/render.js';
import { readDocument, readReport, writeJsonDocument, writeText } from '../report/io.js';
import { renderReportMarkdown } from '../report/markdown.js';
import type { Report } from '../report/schema.js';
import { diffSweeps, renderSweepDiffMarkdown, sweepDiffFailures } from '../report/sweep-diff.js';
import { renderSweepMarkdown } from '../report/sweep-markdown.js';
import { mergeSweep, type SizeMetric } from '../report/sweep.js';
import type { Io } from './io.js';

interface DiffFlags {
  maxPplIncrease?: string;
  maxPsnrDrop?: string;
  maxRmseIncrease?: string;
  maxAccuracyDrop?: string;
  maxSizeIncrease?: string;
  format: 'md' | 'json';
}

const formatOption = () => new Option('--format <format>', 'md: Markdown for people and pull requests; json: one JSON document').choices(['md', 'json']).default('md');

function budgetsFrom(flags: DiffFlags): Budgets {
  const budgets: Budgets = {};
  if (flags.maxPplIncrease !== undefined) budgets.max_ppl_increase = parseBudget('--max-ppl-increase', flags.maxPplIncrease);
  if (flags.maxAccuracyDrop !== undefined) budgets.max_accuracy_drop = parseBudget('--max-accuracy-drop', flags.maxAccuracyDrop);
  if (flags.maxSizeIncrease !== undefined) budgets.max_size_increase = parseBudget('--max-size-increase', flags.maxSizeIncrease);
  if (flags.maxPsnrDrop !== undefined) budgets.max_psnr_drop = parseBudget('--max-psnr-drop', flags.maxPsnrDrop);
  if (flags.maxRmseIncrease !== undefined) budgets.max_rmse_increase = parseBudget('--max-rmse-increase', flags.maxRmseIncrease);
  return budgets;
}

/**
 * The point reports under each argument: a report .json, a point folder (with report.json), or a
 * sweep folder (each subfolder one point; folders without report.json are unfinished points).
 */
function pointReports(args: readonly string[], warn: (text: string) => void): { path: string; report: Report }[] {
  const found: { path: string; report: Report }[] = [];
  for (const arg of args) {
    if (!existsSync(arg)) throw new UserError(`${arg}: no such file or folder; pass the folders pare sweep -o wrote`);
    if (!statSync(arg).isDirectory()) {
      found.push({ path: arg, report: readReport(arg) });
      continue;
    }
    if (existsSync(join(arg, 'report.json'))) {
      found.push({ path: join(arg, 'report.json'), report: readReport(join(arg, 'report.json')) });
      continue;
    }
    for (const name of readdirSync(arg).sort()) {
      const dir = join(arg, name);
      if (name.startsWith('.') || !statSync(dir).isDirectory()) continue;
      const path = join(dir, 'report.json');
      if (existsSync(path)) found.push({ path, report: readReport(path) });
      else warn(`${dir}: no report.json (an unfinished point); left out`);
    }
  }
  return found;
}

export function registerReportCommands(program: Command, io: Io, setCode: (c: number) => void): void {
  const report = program.command('report').description('show, merge, compare and render reports');
  report
    .command('diff')
    .description('compare two reports (or two merged sweeps, point by point) measured on the same data; exit 3 when a budget fails')
    .argument('<base>', 'the baseline report or sweep .json')
    .argument('<new>', 'the report or sweep to check against it')
    .option('--max-ppl-increase <budget>', 'perplexity may rise at most this much: "2%" of base, or an absolute amount like 0.5')
    .option('--max-accuracy-drop <budget>', 'top-1 may fall at most this much: percentage points like 0.5, or "1%" of base')
    .option('--max-size-increase <budget>', 'file size may grow at most this much: "0%" of base, or bytes')
    .option('--max-psnr-drop <budget>', 'regression / image-to-image PSNR may fall at most this much: dB like 0.5, or "2%" of base')
    .option('--max-rmse-increase <budget>', 'regression / image-to-image RMSE may rise at most this much: an amount, or "10%" of base')
    .addOption(formatOption())
    .action((basePath: string, nextPath: string, flags: DiffFlags) => {
      const budgets = budgetsFrom(flags);
      const base = readDocument(basePath, ['report', 'sweep']);
      const next = readDocument(nextPath, ['report', 'sweep']);
      const paths = { base: basePath, next: nextPath };
      if (base.kind === 'report' && next.kind === 'report') {
        const diff = diffReports(base.report, next.report, budgets, paths);
        io.out(flags.format === 'json' ? JSON.stringify(diff, null, 2) : renderDiffMarkdown(diff));
        for (const c of diff.checks) if (!c.ok) io.err(`budget failed: ${describeFailure(c)}`);
        setCode(diff.failed ? 3 : 0);
        return;
      }
      if (base.kind === 'sweep' && next.kind === 'sweep') {
        const diff = diffSweeps(base.sweep, next.sweep, budgets, paths);
        io.out(flags.format === 'json' ? JSON.stringify(diff, null, 2) : renderSweepDiffMarkdown(diff));
        for (const f of sweepDiffFailures(diff)) io.err(`budget failed: ${f}`);
        setCode(diff.failed ? 3 : 0);
        return;
      }
      throw new UserError(`${basePath} is a ${base.kind} and ${nextPath} a ${next.kind}; diff two reports, or two sweeps merged by pare report merge`);
    });
  report
    .command('show')
    .description('print a report or a merged sweep as Markdown (or the validated JSON)')
    .argument('<report>', 'report or sweep .json')
    .addOption(formatOption())
    .action((path: string, flags: { format: 'md' | 'json' }) => {
      const doc = readDocument(path, ['report', 'sweep']);
      const json = flags.format === 'json';
      if (doc.kind === 'report') io.out(json ? JSON.stringify(doc.report, null, 2) : renderReportMarkdown(doc.report));
      else if (doc.kind === 'sweep') io.out(json ? JSON.stringify(doc.sweep, null, 2) : renderSweepMarkdown(doc.sweep));
      setCode(0);
    });
  report
    .command('merge')
    .description('merge the point reports of a sweep (its shards\' folders) into one table with the Pareto front marked')
    .argument('<dirs...>', 'folders pare sweep -o wrote (or point folders, or point report.json files)')
    .requiredOption('-o, --output <sweep.json>', 'where to write the merged sweep')
    .option('--allow-mixed', 'merge points of different models or evaluation data')
    .addOption(new Option('--size <metric>', 'the size axis of the Pareto front: file (bytes on disk) or sparse (bitmask + nonzeros)').choices(['file', 'sparse']).default('file'))
    .addOption(formatOption())
    .action((dirs: string[], flags: { output: string; allowMixed?: boolean; size: 'file' | 'sparse'; format: 'md' | 'json' }) => {
      const size: SizeMetric = flags.size === 'sparse' ? 'sparse_bytes' : 'file_bytes';
      const sweep = mergeSweep(pointReports(dirs, (w) => io.err(`warning: ${w}`)), { allowMixed: flags.allowMixed, size });
      writeJsonDocument(flags.output, sweep, 'sweep');
      for (const w of sweep.warnings) io.err(`warning: ${w}`);
      io.out(flags.format === 'json' ? JSON.stringify(sweep, null, 2) : renderSweepMarkdown(sweep));
      setCode(0);
    });
  report
    .command('html')
    .description('render a report, a merged sweep or a diff (--format json) as one self-contained HTML page with inline SVG charts')
    .argument('<input>', 'report .json, sweep .json, or diff .json')
    .requiredOption('-o, --output <report.html>', 'where to write the page')
    .action((path: string, flags: { output: string }) => {
      writeText(flags.output, renderHtml(readDocument(path)), 'HTML report');
      io.out(`wrote ${flags.output}`);
      setCode(0);
    });
}
