import { z } from 'zod';
import { UserError } from '../errors.js';
import type { Measure } from '../eval/evaluate.js';
import type { Fidelity } from '../eval/fidelity.js';
import { ortVersion } from '../runtime/ort.js';
import { canonicalJson } from '../util/canonical-json.js';
import { VERSION } from '../version.js';
import { paretoFront } from './pareto.js';
import { BudgetCheckSchema, CacheCountsSchema, FidelitySchema, FileRefSchema, MeasureSchema, PassReportSchema } from './report-reader-schema.js';
import type { BudgetCheck, FileRef, PassReport, Report } from './schema.js';

/**
 * A merged sweep (`pare report merge`): every point's numbers in one document, with the Pareto
 * front of size against quality marked. docs/report.md describes the fields.
 */

export const SWEEP_SCHEMA = 'pare.sweep';
export const SWEEP_VERSION = 1;

/** The size a front is drawn on: the file as stored, or weights as a bitmask plus nonzeros (unstructured sparsity shrinks only that). */
export type SizeMetric = 'file_bytes' | 'sparse_bytes';
export type QualityMetric = 'perplexity' | 'top1' | 'none';

export interface SweepPoint {
  id: string;
  index: number;
  settings: [string, unknown][];
  /** the point's report.json, as merge was given it */
  report: string;
  input: FileRef;
  output?: FileRef;
  recipe?: FileRef;
  seed?: number;
  /** the compressed model as measured */
  model: Measure;
  fidelity?: Fidelity;
  budgets?: BudgetCheck[];
  /** per pass, its layers (sparsity, objective, bytes before/after) */
  passes: PassReport[];
  calibration_cache?: { hits: number; misses: number; unreadable: number };
  timings: { total_ms: number; passes_ms?: number; eval_ms?: number };
  /** on the Pareto front of `front.size` against `front.quality` */
  pareto: boolean;
}

export interface SweepReport {
  schema: typeof SWEEP_SCHEMA;
  version: typeof SWEEP_VERSION;
  tool: { name: 'pare'; version: string; onnxruntime: string; node: string };
  created: string;
  /** the model every point compressed (the first point's, with --allow-mixed) */
  model: FileRef;
  /** the evaluation data every point measured */
  data?: { description: string; files: FileRef[] };
  /** the original model, as the first point measured it */
  reference?: Measure;
  /** the recipe paths the points vary */
  axes: string[];
  front: { size: SizeMetric; quality: QualityMetric; ids: string[] };
  points: SweepPoint[];
  calibration_cache: { hits: number; misses: number; unreadable: number };
  /** present when --allow-mixed merged points of different models or data */
  mixed?: { models: FileRef[]; data: string[] };
  warnings: string[];
}

const num = z.number();
const SweepPointSchema = z.looseObject({
  id: z.string(),
  index: num,
  settings: z.array(z.tuple([z.string(), z.unknown()])),
  report: z.string(),
  input: FileRefSchema,
  output: FileRefSchema.optional(),
  recipe: FileRefSchema.optional(),
  seed: num.optional(),
  model: MeasureSchema,
  fidelity: FidelitySchema.optional(),
  budgets: z.array(BudgetCheckSchema).optional(),
  passes: z.array(PassReportSchema),
  calibration_cache: z.looseObject({ hits: num, misses: num, unreadable: num }).optional(),
  timings: z.looseObject({ total_ms: num, passes_ms: num.optional(), eval_ms: num.optional() }),
  pareto: z.boolean(),
});

export const SweepReportSchema = z.looseObject({
  schema: z.literal(SWEEP_SCHEMA),
  version: z.literal(SWEEP_VERSION),
  tool: z.looseObject({ name: z.literal('pare'), version: z.string(), onnxruntime: z.string(), node: z.string() }),
  created: z.string(),
  model: FileRefSchema,
  data: z.looseObject({ description: z.string(), files: z.array(FileRefSchema) }).optional(),
  reference: MeasureSchema.optional(),
  axes: z.array(z.string()),
  front: z.looseObject({ size: z.enum(['file_bytes', 'sparse_bytes']), quality: z.enum(['perplexity', 'top1', 'none']), ids: z.array(z.string()) }),
  points: z.array(SweepPointSchema),
  calibration_cache: CacheCountsSchema.omit({ dir: true }),
  mixed: z.looseObject({ models: z.array(FileRefSchema), data: z.array(z.string()) }).optional(),
  warnings: z.array(z.string()),
});

/** Compile-time check that what the schema accepts is a SweepReport. */
export const asSweep = (parsed: z.output<typeof SweepReportSchema>): SweepReport => parsed;

/** A point's quality on the sweep's metric. */
export function qualityOf(m: Measure, metric: QualityMetric): number | undefined {
  if (metric === 'perplexity') return m.quality?.task === 'causal-lm' ? m.quality.perplexity : undefined;
  if (metric === 'top1') return m.quality?.task === 'classification' ? m.quality.top1 : undefined;
  return undefined;
}

/** `sparsity=0.5,bits=4` from the id `sparsity=0.5,bits=4-1a2b3c4d`. */
export function pointLabel(id: string): string {
  return id.replace(/-[0-9a-f]{8}$/, '');
}

/** The settings as one key: points of two sweeps with the same key are the same recipe choice. */
export function settingsKey(settings: readonly [string, unknown][]): string {
  return canonicalJson(settings);
}

function dataKey(d: Report['data']): string {
  return d ? `${d.description} [${d.files.map((f) => f.sha256).sort().join(',')}]` : '(no evaluation data)';
}

/**
 * Merge the reports of sweep points (each `{ path, report }`) into one sweep. They must share a
 * model and evaluation data unless `allowMixed`; a point found twice (the same id in two folders)
 * counts once.
 */
export function mergeSweep(entries: readonly { path: string; report: Report }[], opts: { allowMixed?: boolean; size?: SizeMetric } = {}): SweepReport {
  if (entries.length === 0) throw new UserError('report merge: no sweep point reports found; pass the folders pare sweep -o wrote (each point is a folder with report.json)');
  const warnings: string[] = [];
  const byId = new Map<string, { path: string; report: Report }>();
  for (const e of entries) {
    const sweep = e.report.sweep;
    if (!sweep) throw new UserError(`${e.path}: not a sweep point's report (no "sweep" record); merge reads the report.json files pare sweep writes`);
    const seen = byId.get(sweep.id);
    if (!seen) byId.set(sweep.id, e);
    else if (seen.report.output?.sha256 !== e.report.output?.sha256) warnings.push(`point ${sweep.id} is in ${seen.path} and ${e.path} with different output hashes; kept ${seen.path}`);
  }
  const expected = Math.max(...[...byId.values()].map((e) => e.report.sweep!.count));
  if (byId.size < expected) warnings.push(`merged ${byId.size} of the sweep's ${expected} points; the others were not run yet or their folders were not given`);
  const points = [...byId.values()].sort((a, b) => a.report.sweep!.index - b.report.sweep!.index || (a.report.sweep!.id < b.report.sweep!.id ? -1 : 1));
  const first = points[0]!;

  const models = new Map(points.map((p) => [p.report.input.sha256, { path: p.report.input.path, sha256: p.report.input.sha256 }]));
  const data = new Map(points.map((p) => [dataKey(p.report.data), p]));
  if (!opts.allowMixed) {
    const other = points.find((p) => p.report.input.sha256 !== first.report.input.sha256);
    if (other) throw new UserError(`${first.path} and ${other.path} are sweeps of different models (${first.report.input.path} sha256 ${first.report.input.sha256.slice(0, 12)} vs ${other.report.input.path} sha256 ${other.report.input.sha256.slice(0, 12)}); merge one model's points, or pass --allow-mixed`);
    const otherData = points.find((p) => dataKey(p.report.data) !== dataKey(first.report.data));
    if (otherData) throw new UserError(`${first.path} and ${otherData.path} measured different data (${dataKey(first.report.data)} vs ${dataKey(otherData.report.data)}); merge points evaluated on the same data, or pass --allow-mixed`);
  }

  const tasks = new Set(points.map((p) => p.report.measurements.model.quality?.task));
  const quality: QualityMetric = tasks.size === 1 && tasks.has('causal-lm') ? 'perplexity' : tasks.size === 1 && tasks.has('classification') ? 'top1' : 'none';
  const size = opts.size ?? 'file_bytes';
  const front = paretoFront(
    points.map((p) => ({ id: p.report.sweep!.id, size: p.report.measurements.model.size[size], quality: qualityOf(p.report.measurements.model, quality) })),
    quality === 'top1' ? 'higher' : 'lower',
  );
  const cache = { hits: 0, misses: 0, unreadable: 0 };
  for (const p of points) {
    const c = p.report.calibration_cache;
    if (!c) continue;
    cache.hits += c.hits;
    cache.misses += c.misses;
    cache.unreadable += c.unreadable;
  }
  const axes = [...new Set(points.flatMap((p) => p.report.sweep!.settings.map(([path]) => path)))];
  return {
    schema: SWEEP_SCHEMA,
    version: SWEEP_VERSION,
    tool: { name: 'pare', version: VERSION, onnxruntime: ortVersion(), node: process.version },
    created: new Date().toISOString(),
    model: { path: first.report.input.path, sha256: first.report.input.sha256 },
    data: first.report.data,
    reference: points.find((p) => p.report.measurements.reference)?.report.measurements.reference,
    axes,
    front: { size, quality, ids: points.map((p) => p.report.sweep!.id).filter((id) => front.has(id)) },
    points: points.map(({ path, report: r }) => ({
      id: r.sweep!.id,
      index: r.sweep!.index,
      settings: r.sweep!.settings,
      report: path,
      input: { path: r.input.path, sha256: r.input.sha256 },
      output: r.output && { path: r.output.path, sha256: r.output.sha256 },
      recipe: r.recipe,
      seed: r.seed,
      model: r.measurements.model,
      fidelity: r.fidelity,
      budgets: r.budgets,
      passes: r.passes,
      calibration_cache: r.calibration_cache && { hits: r.calibration_cache.hits, misses: r.calibration_cache.misses, unreadable: r.calibration_cache.unreadable },
      timings: r.timings,
      pareto: front.has(r.sweep!.id),
    })),
    calibration_cache: cache,
    ...(models.size > 1 || data.size > 1 ? { mixed: { models: [...models.values()], data: [...data.keys()] } } : {}),
    warnings,
  };
}
