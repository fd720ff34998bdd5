import { checkBudgets } from '../report/budget.js';
import { newReport, type Report } from '../report/schema.js';
import type { CompressRun } from './compress.js';

/** The compress run as a report; budgets from the recipe are checked reference → compressed. */
export function compressReport(run: CompressRun): Report {
  const ev = run.evaluation;
  const budgets = run.recipe.recipe.eval?.budgets;
  const checks = ev?.reference && budgets ? checkBudgets(ev.reference, ev.model, budgets, { base: 'reference', candidate: 'compressed model' }) : undefined;
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
    ...(run.variants ? { variants: run.variants } : {}),
    budgets: checks,
    warnings: run.warnings,
    timings: run.timings,
  });
}
