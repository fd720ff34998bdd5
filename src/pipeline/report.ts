import { checkBudgets } from '../report/budget.js';
import { newReport, type Report } from '../report/schema.js';
import type { CompressRun } from './compress-run.js';

/** The compress run as a report; budgets from the recipe are checked reference → compressed. */
export function compressReport(run: CompressRun): Report {
  const ev = run.evaluation;
  const budgets = run.recipe.recipe.eval?.budgets;
  // a model folder: every dtype's file against the budgets
  const candidates = run.variants ? run.variants.map((v) => ({ measure: v.measure, dtype: v.dtype as string | undefined })) : ev ? [{ measure: ev.model, dtype: undefined }] : [];
  const checks =
    ev?.reference && budgets
      ? candidates.flatMap((c) => checkBudgets(ev.reference!, c.measure, budgets, { base: 'reference', candidate: c.dtype ?? 'compressed model' }).map((b) => (c.dtype ? { ...b, dtype: c.dtype } : b)))
      : undefined;
  if (budgets && ev && !ev.reference) run.warnings.push('eval.budgets were not checked: eval.reference is false, so there is no original measurement to compare with');
  return newReport({
    kind: 'compress',
    input: run.input,
    output: run.output,
    recipe: { path: run.recipe.path, sha256: run.recipe.sha256 },
    seed: run.seed,
    data: run.dataDescription,
    passes: run.passes,
    measurements: ev ? { reference: ev.reference, model: ev.model } : run.sizes!,
    fidelity: ev?.fidelity,
    ...(ev?.runtimes ? { runtimes: ev.runtimes } : {}),
    ...(run.variants ? { variants: run.variants } : {}),
    budgets: checks,
    warnings: run.warnings,
    timings: run.timings,
    ...(run.calibrationCache ? { calibration_cache: run.calibrationCache } : {}),
  });
}
