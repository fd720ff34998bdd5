import { Option, type Command } from 'commander';
import { describeFailure, parseBudget, type Budgets } from '../report/budget.js';
import { diffReports, renderDiffMarkdown } from '../report/diff.js';
import { readReport } from '../report/io.js';
import { renderReportMarkdown } from '../report/markdown.js';
import type { Io } from './io.js';

interface DiffFlags {
  maxPplIncrease?: string;
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
  return budgets;
}

export function registerReportCommands(program: Command, io: Io, setCode: (c: number) => void): void {
  const report = program.command('report').description('show a report, or compare two against quality budgets');
  report
    .command('diff')
    .description('compare the models of two reports measured on the same data; exit 3 when a budget fails')
    .argument('<base>', 'the baseline report .json')
    .argument('<new>', 'the report to check against it')
    .option('--max-ppl-increase <budget>', 'perplexity may rise at most this much: "2%" of base, or an absolute amount like 0.5')
    .option('--max-accuracy-drop <budget>', 'top-1 may fall at most this much: percentage points like 0.5, or "1%" of base')
    .option('--max-size-increase <budget>', 'file size may grow at most this much: "0%" of base, or bytes')
    .addOption(formatOption())
    .action((basePath: string, nextPath: string, flags: DiffFlags) => {
      const budgets = budgetsFrom(flags);
      const diff = diffReports(readReport(basePath), readReport(nextPath), budgets, { base: basePath, next: nextPath });
      io.out(flags.format === 'json' ? JSON.stringify(diff, null, 2) : renderDiffMarkdown(diff));
      for (const c of diff.checks) if (!c.ok) io.err(`budget failed: ${describeFailure(c)}`);
      setCode(diff.failed ? 3 : 0);
    });
  report
    .command('show')
    .description('print a report as Markdown (or the validated JSON)')
    .argument('<report>', 'report .json')
    .addOption(formatOption())
    .action((path: string, flags: { format: 'md' | 'json' }) => {
      const r = readReport(path);
      io.out(flags.format === 'json' ? JSON.stringify(r, null, 2) : renderReportMarkdown(r));
      setCode(0);
    });
}
