import type { Command } from 'commander';
import { UserError } from '../errors.js';
import type { RunHooks } from '../pass/hooks.js';
import { createProgress, wantsFancyProgress } from '../pipeline/progress.js';
import { sweep, type SweepPointRun, type SweepRun } from '../pipeline/sweep.js';
import { parseShard, shardFromEnv, type Shard } from '../util/shard.js';
import type { Io } from './io.js';
import { bytes, table } from './table.js';

interface SweepFlags {
  recipe: string;
  output: string;
  set: string[];
  shard?: string;
  shardFromEnv?: boolean;
  resume?: boolean;
  cache: string | false | undefined;
  seed: string;
  threads?: string;
  dryRun?: boolean;
  json?: boolean;
}

function integer(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UserError(`${flag} expects a non-negative integer, got ${v}`);
  return Number(v);
}

function seconds(ms: number): string {
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1000)}s`;
}

function quality(p: SweepPointRun): string {
  const q = p.report?.measurements.model.quality;
  if (!q) return '–';
  if (q.task === 'causal-lm') return `ppl ${q.perplexity.toFixed(3)}`;
  return q.task === 'classification' ? `top-1 ${(q.top1 * 100).toFixed(2)}%` : q.psnr !== undefined ? `PSNR ${q.psnr.toFixed(2)} dB` : `RMSE ${q.rmse.toPrecision(4)}`;
}

function formatSweep(run: SweepRun, dryRun: boolean): string {
  const shown = run.points.filter((p) => dryRun || p.status !== 'other-shard');
  const head = `sweep of ${run.model.path} with ${run.recipe.path}: ${run.points.length} point${run.points.length === 1 ? '' : 's'}${run.shard ? `, shard ${run.shard.index}/${run.shard.count} has ${shown.length}` : ''}`;
  if (dryRun) {
    const rows = shown.map((p) => [String(p.index), p.id, String(p.shard), p.cost.toFixed(1)]);
    return [`${head} (dry run: nothing written)`, '', table(['#', 'point', 'shard', 'cost'], rows, ['r', 'l', 'r', 'r'])].join('\n');
  }
  const rows = shown.map((p) => {
    const size = p.report?.measurements.model.size;
    const cache = p.report?.calibration_cache;
    return [p.status, p.id, size ? bytes(size.file_bytes) : '–', size ? bytes(size.sparse_bytes) : '–', quality(p), p.report ? seconds(p.report.timings.total_ms) : '–', cache ? `${cache.hits}/${cache.hits + cache.misses}` : '–'];
  });
  const lines = [head, '', table(['status', 'point', 'file size', 'sparse size', 'quality', 'time', 'cache hits'], rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r'])];
  const ran = shown.filter((p) => p.status === 'ran').length;
  lines.push('', `ran ${ran}, already finished ${shown.filter((p) => p.status === 'finished').length}, in ${seconds(run.ms)}; merge with: pare report merge <dirs> -o sweep.json`);
  return lines.join('\n');
}

function sweepJson(run: SweepRun): unknown {
  return {
    model: run.model,
    recipe: run.recipe,
    axes: run.axes,
    shard: run.shard && { index: run.shard.index, count: run.shard.count },
    cache: run.cache,
    ms: run.ms,
    points: run.points.map((p) => ({
      id: p.id,
      index: p.index,
      settings: p.settings,
      cost: p.cost,
      shard: p.shard,
      status: p.status,
      dir: p.dir,
      ...(p.report ? { output: p.report.output, measurements: { model: p.report.measurements.model }, calibration_cache: p.report.calibration_cache, timings: p.report.timings } : {}),
    })),
  };
}

export function registerSweepCommand(program: Command, io: Io, setCode: (c: number) => void, hooks?: RunHooks): void {
  program
    .command('sweep')
    .description('run every point of a recipe sweep (--set values or the recipe\'s sweep: section) as compress + eval into DIR/<point id>/')
    .argument('<model>', '.onnx, or .safetensors with config.json beside it')
    .requiredOption('-r, --recipe <recipe>', 'base recipe .yaml')
    .requiredOption('-o, --output <dir>', 'sweep folder: one folder per point (model.onnx, report.json)')
    .option('--set <path=values>', "an axis: a recipe path and comma-separated values, e.g. 'passes[0].params.sparsity=0.3,0.5' (repeatable; the points are the product)", (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--shard <i/N>', 'run only shard i of N (1-based), balanced by expected cost')
    .option('--shard-from-env', 'take the shard from PARE_SHARD_INDEX/PARE_SHARD_COUNT, JOB_COMPLETION_INDEX/JOB_COMPLETIONS or CI_NODE_INDEX/CI_NODE_TOTAL')
    .option('--resume', 'continue interrupted points from their last completed pass')
    .option('--cache <dir>', 'calibration statistics shared by points and processes (default: DIR/.stats-cache)')
    .option('--no-cache', 'compute every statistic in every point')
    .option('--seed <n>', 'seed for every random choice of every point', '0')
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)')
    .option('--dry-run', 'list the points, their costs and shards; run nothing')
    .option('--json', 'print exactly one JSON document on stdout')
    .action(async (modelPath: string, flags: SweepFlags) => {
      if (flags.shard !== undefined && flags.shardFromEnv) throw new UserError('--shard and --shard-from-env both given; pass one');
      const shard: Shard | undefined = flags.shard !== undefined ? parseShard(flags.shard) : flags.shardFromEnv ? shardFromEnv(process.env) : undefined;
      const fancy = io.fancy ?? wantsFancyProgress();
      const run = await sweep({
        model: modelPath,
        recipe: flags.recipe,
        sets: flags.set,
        output: flags.output,
        shard,
        resume: flags.resume,
        cache: flags.cache === false ? false : (flags.cache ?? `${flags.output}/.stats-cache`),
        seed: integer('--seed', flags.seed),
        threads: integer('--threads', flags.threads),
        dryRun: flags.dryRun,
        hooks,
        progress: {
          point(k, m, label, eta) {
            io.err(`point ${k + 1}/${m} ${label}${eta !== undefined ? ` · ETA ${seconds(eta)}` : ''}`);
            return createProgress((line) => io.err(`  ${line}`), fancy);
          },
          pointDone(k, m, label, ms) {
            io.err(`point ${k + 1}/${m} ${label} done in ${seconds(ms)}`);
          },
          warn(text) {
            io.err(`warning: ${text}`);
          },
        },
      });
      io.out(flags.json ? JSON.stringify(sweepJson(run), null, 2) : formatSweep(run, Boolean(flags.dryRun)));
      setCode(0);
    });
}
