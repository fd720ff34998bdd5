import type { CacheCounts } from '../calibrate/stats-cache.js';
import type { Evaluation, Measure } from '../eval/evaluate.js';
import type { Fidelity } from '../eval/fidelity.js';
import type { WebDtype } from '../model/hf-folder.js';
import type { FolderPlan } from './folder-plan.js';
import type { PassReport, Report } from '../report/schema.js';
import type { PlannedPass, RunnableRecipe } from './plan.js';

/** One pass as it ran, for the report and the work dir's state. */
export type PassRecord = PassReport;

/** One dtype's file of a model folder output, as written and measured. */
export interface VariantRecord {
  dtype: WebDtype;
  path: string;
  files: string[];
  passes: PassRecord[];
  warnings: string[];
  measure: Measure;
  fidelity?: Fidelity;
}

export interface CompressRun {
  input: { path: string; sha256: string; format: string };
  output?: { path: string; sha256: string; format: string; files: string[] };
  recipe: RunnableRecipe;
  seed: number;
  plan: PlannedPass[];
  passes: PassRecord[];
  evaluation?: Evaluation;
  /** a model folder output: what it holds, planned before the passes */
  folder?: FolderPlan;
  /** a model folder output: each dtype's file as written and measured (evaluated when the recipe has eval) */
  variants?: VariantRecord[];
  /** sizes of input and output, measured from the files when the recipe has no eval */
  sizes?: { reference: Measure; model: Measure };
  dataDescription?: { description: string; files: { path: string; sha256: string }[]; classes?: string[] };
  resumedAfter?: number;
  /** statistics this run found in (hits) or added to (misses) the shared cache */
  calibrationCache?: CacheCounts & { dir: string };
  warnings: string[];
  timings: { total_ms: number; passes_ms: number; eval_ms?: number };
  /** the report written with the model (absent for --dry-run) */
  report?: Report;
}

