import { checkBudgets } from '../report/budget.js';
import { newReport, type PassReport, type Report, type ScheduleCost } from '../report/schema.js';
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
    ...(run.passes.some((p) => p.stage) ? { schedules: scheduleCosts(run.passes) } : {}),
    ...(run.calibrationCache ? { calibration_cache: run.calibrationCache } : {}),
  });
}

/** Each schedule's pass stages and distillation stages, summed: the cost line of the report. */
export function scheduleCosts(passes: readonly PassReport[]): ScheduleCost[] {
  const byEntry = new Map<number, ScheduleCost>();
  for (const p of passes) {
    if (!p.stage) continue;
    const c = byEntry.get(p.stage.entry) ?? { entry: p.stage.entry, pass: '', stages: p.stage.count, pass_ms: 0, pass_cpu_ms: 0, distill_ms: 0, distill_cpu_ms: 0 };
    if (p.stage.role === 'pass') {
      c.pass = p.id;
      c.pass_ms += p.ms;
      c.pass_cpu_ms += p.cpu_ms ?? 0;
    } else {
      c.distill_ms += p.ms;
      c.distill_cpu_ms += p.cpu_ms ?? 0;
    }
    byEntry.set(p.stage.entry, c);
  }
  return [...byEntry.values()];
}
