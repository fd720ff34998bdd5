/**
 * src/report — layer 9 (above eval): the versioned report, its Markdown, diffs and budgets.
 */
import type { Measure, RuntimeEvaluation } from '../eval/evaluate.js';
import type { Fidelity } from '../eval/fidelity.js';
import { ortVersion } from '../runtime/ort.js';
import { VERSION } from '../version.js';

/**
 * The report: one versioned JSON document per `pare eval` or `pare compress` run. Writers build it
 * with `newReport`; readers validate it with `ReportSchema` (report-reader-schema.ts), which is strict about `schema` and
 * `version` and keeps fields it does not know, so a report from a newer pare of the same version
 * still reads. docs/report.md describes every field.
 */

export const REPORT_SCHEMA = 'pare.report';
export const REPORT_VERSION = 1;

/** What one pass did to one layer. */
export interface LayerStat {
  name: string;
  kind?: string;
  /** weight as [out, in] before the pass */
  shape?: number[];
  ms: number;
  bytes_before: number;
  bytes_after: number;
  /** the pass's own objective for this layer, e.g. the layer reconstruction error */
  objective?: number;
  /** fraction of zeros in the weight after the pass */
  sparsity?: number;
  extra?: Record<string, number | string>;
}

/** A stage of a recipe schedule (pipeline/schedule.ts): the pass on a run of decoder blocks, or the distillation after it. */
export interface PassStage {
  /** index of the scheduled entry in the recipe file's passes */
  entry: number;
  /** 1-based stage number and the stage count */
  index: number;
  count: number;
  /** the decoder blocks it acts on: the pass, its stage's; the distillation, every block of the schedule */
  blocks: number[];
  role: 'pass' | 'distill';
}

/** What one recipe schedule cost: its pass stages and its distillation stages, wall and CPU. */
export interface ScheduleCost {
  entry: number;
  pass: string;
  stages: number;
  pass_ms: number;
  pass_cpu_ms: number;
  distill_ms: number;
  distill_cpu_ms: number;
}

export interface PassReport {
  /** registered pass id, e.g. `prune.magnitude` */
  id: string;
  targets: string[];
  ignore?: string[];
  /** params as the pass ran them (defaults filled) */
  params: Record<string, unknown>;
  ms: number;
  /** CPU time of the process over the pass (every thread: ONNX Runtime's, tfjs's) */
  cpu_ms?: number;
  stage?: PassStage;
  layers: LayerStat[];
  warnings?: string[];
  /** pass-level numbers, e.g. a distillation run's steps, tokens seen, losses and wall time */
  summary?: Record<string, number | string>;
}

export type BudgetName = 'max_ppl_increase' | 'max_accuracy_drop' | 'max_size_increase' | 'max_psnr_drop' | 'max_rmse_increase';

/** One budget checked: `base` and `candidate` are in `metric`'s units; `change` and `allowed` in the limit's (a fraction for "2%", else metric units). */
export interface BudgetCheck {
  name: BudgetName;
  /** as written: "2%" or "0.5" */
  limit: string;
  metric: 'perplexity' | 'top1_percent' | 'file_bytes' | 'psnr_db' | 'rmse';
  base: number;
  candidate: number;
  /** the increase (or, for accuracy, the drop) from base to candidate */
  change: number;
  allowed: number;
  ok: boolean;
  /** a model folder output: the dtype file checked (every one is) */
  dtype?: string;
}

export interface FileRef {
  path: string;
  sha256: string;
}

/** Calibration statistics a run found in (hits) or added to (misses) a shared cache; `unreadable` entries were recomputed. */
export interface CalibrationCacheCounts {
  dir: string;
  hits: number;
  misses: number;
  unreadable: number;
}

/** What makes a compress report one point of a `pare sweep`. */
export interface SweepPointRecord {
  /** `sparsity=0.5,bits=4-1a2b3c4d`: the settings and a hash of model, recipe as run, data files, seed and pare version */
  id: string;
  /** position in the sweep's product (first axis outermost) and the number of points */
  index: number;
  count: number;
  /** one [recipe path, value] per axis */
  settings: [string, unknown][];
  /** the recipe file the settings were applied to */
  base: FileRef;
}

/** One dtype's file of a model folder output (compress -o DIR/): how it was made and what it measures. */
export interface VariantReport {
  /** the transformers.js dtype: fp32, fp16, q8, q4, q4f16 */
  dtype: string;
  /** the variant's .onnx */
  path: string;
  /** the .onnx and its external data */
  files: string[];
  /** the passes that made it from the recipe's result (none for the result itself) */
  passes: PassReport[];
  warnings: string[];
  /** its size (and quality and latency when the recipe has eval) */
  measure: Measure;
  fidelity?: Fidelity;
}

export interface Report {
  schema: typeof REPORT_SCHEMA;
  version: typeof REPORT_VERSION;
  kind: 'eval' | 'compress';
  tool: { name: 'pare'; version: string; onnxruntime: string; node: string };
  /** ISO 8601 */
  created: string;
  input: FileRef & { format: string };
  output?: FileRef & { format: string; files?: string[] };
  recipe?: FileRef;
  seed?: number;
  /** the evaluation data, pinned by hash: two reports compare only when these match; `classes`: class names by index when the data names them */
  data?: { description: string; files: FileRef[]; classes?: string[] };
  passes: PassReport[];
  measurements: { reference?: Measure; model: Measure };
  fidelity?: Fidelity;
  /** quality and latency per runtime (onnxruntime-node, onnxruntime-web) when more than node was asked for */
  runtimes?: RuntimeEvaluation[];
  /** compress into a model folder: every dtype's file; measurements.model is the first */
  variants?: VariantReport[];
  budgets?: BudgetCheck[];
  warnings: string[];
  timings: { total_ms: number; passes_ms?: number; eval_ms?: number };
  /** each recipe schedule's cost (a compress run with schedules) */
  schedules?: ScheduleCost[];
  calibration_cache?: CalibrationCacheCounts;
  sweep?: SweepPointRecord;
}

/** A report with `schema`, `version`, `tool` and `created` filled in for this process. */
export function newReport(fields: Omit<Report, 'schema' | 'version' | 'tool' | 'created'> & { created?: string }): Report {
  const { created, ...rest } = fields;
  return {
    schema: REPORT_SCHEMA,
    version: REPORT_VERSION,
    tool: { name: 'pare', version: VERSION, onnxruntime: ortVersion(), node: process.version },
    created: created ?? new Date().toISOString(),
    ...rest,
  };
}
