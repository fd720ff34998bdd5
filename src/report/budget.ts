import { UserError } from '../errors.js';
import type { Measure } from '../eval/evaluate.js';
import { BudgetSpec, type Budget } from './budget-spec.js';
import type { BudgetCheck, BudgetName } from './schema.js';

/**
 * Quality budgets, checked between a base and a candidate measurement (reference vs compressed in
 * `pare compress`, base report's model vs new report's model in `pare report diff`):
 *
 *   max_ppl_increase    "2%": cand ≤ base·1.02        0.5: cand ≤ base + 0.5      (perplexity)
 *   max_accuracy_drop   "2%": cand ≥ base·0.98        0.5: cand ≥ base − 0.5      (top-1, in percent)
 *   max_size_increase   "0%": cand ≤ base             1e6: cand ≤ base + 1e6      (file bytes)
 *   max_psnr_drop       "5%": cand ≥ base·0.95        1:   cand ≥ base − 1 dB     (PSNR against targets)
 *   max_rmse_increase   "10%": cand ≤ base·1.1        0.01: cand ≤ base + 0.01    (RMSE against targets)
 */

export type Budgets = Partial<Record<BudgetName, Budget>>;

export const BUDGET_NAMES: readonly BudgetName[] = ['max_ppl_increase', 'max_accuracy_drop', 'max_size_increase', 'max_psnr_drop', 'max_rmse_increase'];

/** The budget as a person writes it: "2%" or "0.5". */
export function formatBudget(b: Budget): string {
  return b.kind === 'relative' ? `${+(b.fraction * 100).toPrecision(12)}%` : `${b.value}`;
}

/** A command-line budget ("2%" or "0.5") through the recipe's own parser. */
export function parseBudget(flag: string, text: string): Budget {
  const t = text.trim();
  const parsed = BudgetSpec.safeParse(/^\d+(\.\d+)?([eE][+-]?\d+)?$/.test(t) ? Number(t) : t);
  if (!parsed.success) throw new UserError(`${flag}: expected a percentage like "2%" or a number >= 0, got '${text}'`);
  return parsed.data;
}

interface Metric {
  metric: BudgetCheck['metric'];
  /** the budget limits an increase (ppl, size) or a drop (accuracy) */
  direction: 'increase' | 'drop';
  value(m: Measure): number | undefined;
  missing(m: Measure): string;
}

const METRICS: Record<BudgetName, Metric> = {
  max_ppl_increase: {
    metric: 'perplexity',
    direction: 'increase',
    value: (m) => (m.quality?.task === 'causal-lm' ? m.quality.perplexity : undefined),
    missing: (m) => (m.quality?.task === 'classification' ? 'top-1 accuracy (a classifier), not perplexity; use max_accuracy_drop' : 'no perplexity (it was not evaluated on text data)'),
  },
  max_accuracy_drop: {
    metric: 'top1_percent',
    direction: 'drop',
    value: (m) => (m.quality?.task === 'classification' ? m.quality.top1 * 100 : undefined),
    missing: (m) => (m.quality?.task === 'causal-lm' ? 'perplexity (a language model), not top-1 accuracy; use max_ppl_increase' : 'no top-1 accuracy (it was not evaluated on labelled data)'),
  },
  max_psnr_drop: {
    metric: 'psnr_db',
    direction: 'drop',
    value: (m) => regression(m)?.psnr,
    missing: (m) => regressionMissing(m, 'PSNR'),
  },
  max_rmse_increase: {
    metric: 'rmse',
    direction: 'increase',
    value: (m) => regression(m)?.rmse,
    missing: (m) => regressionMissing(m, 'RMSE'),
  },
  max_size_increase: {
    metric: 'file_bytes',
    direction: 'increase',
    value: (m) => (typeof m.size?.file_bytes === 'number' ? m.size.file_bytes : undefined),
    missing: () => 'no file size',
  },
};

const regression = (m: Measure) => (m.quality?.task === 'regression' || m.quality?.task === 'image-to-image' ? m.quality : undefined);

function regressionMissing(m: Measure, what: string): string {
  if (m.quality?.task === 'regression' || m.quality?.task === 'image-to-image') return `no ${what} (its outputs equal the ${m.quality.against})`;
  if (m.quality) return `${m.quality.task === 'causal-lm' ? 'perplexity' : 'top-1 accuracy'}, not ${what}; use ${m.quality.task === 'causal-lm' ? 'max_ppl_increase' : 'max_accuracy_drop'}`;
  return `no ${what}: an original model has one only against targets (give the dataset targets), or compare two reports of models measured against the same reference`;
}

/** Check every budget that is set; a budget whose metric either side lacks is a UserError naming the side. */
export function checkBudgets(
  base: Measure,
  candidate: Measure,
  budgets: Budgets | undefined,
  labels: { base: string; candidate: string } = { base: base.path, candidate: candidate.path },
): BudgetCheck[] {
  const checks: BudgetCheck[] = [];
  for (const name of BUDGET_NAMES) {
    const budget = budgets?.[name];
    if (!budget) continue;
    const m = METRICS[name];
    const b = m.value(base);
    const c = m.value(candidate);
    if (b === undefined) throw new UserError(`${name}: ${labels.base} has ${m.missing(base)}`);
    if (c === undefined) throw new UserError(`${name}: ${labels.candidate} has ${m.missing(candidate)}`);
    checks.push(check(name, m, budget, b, c));
  }
  return checks;
}

function check(name: BudgetName, m: Metric, budget: Budget, base: number, candidate: number): BudgetCheck {
  // signed move in the direction the budget limits
  const delta = m.direction === 'increase' ? candidate - base : base - candidate;
  const relative = budget.kind === 'relative';
  const allowed = relative ? budget.fraction : budget.value;
  const change = relative ? (base !== 0 ? delta / Math.abs(base) : delta > 0 ? Number.MAX_VALUE : 0) : delta;
  // compare in metric units, with a float tolerance so "0.5 points" passes at exactly 0.5
  const allowedDelta = relative ? allowed * Math.abs(base) : allowed;
  const ok = delta - allowedDelta <= 1e-12 * Math.max(1, Math.abs(base));
  return { name, limit: formatBudget(budget), metric: m.metric, base, candidate, change, allowed, ok };
}

/** "+1.80%" or "+0.41": a check's change in its limit's units. */
export function formatChange(c: BudgetCheck): string {
  const sign = c.change > 0 ? '+' : c.change < 0 ? '-' : '±';
  const v = Math.abs(c.change);
  if (c.limit.endsWith('%')) return `${sign}${(v * 100).toFixed(2)}%`;
  return `${sign}${c.metric === 'file_bytes' ? v.toFixed(0) : +v.toPrecision(4)}`;
}

/** One line per failed check: `max_ppl_increase 2%: perplexity 8.12 -> 8.41 (+3.57%)`. */
export function describeFailure(c: BudgetCheck): string {
  const unit = { top1_percent: 'top-1 %', file_bytes: 'file bytes', perplexity: 'perplexity', psnr_db: 'PSNR dB', rmse: 'RMSE' }[c.metric];
  const fmt = (v: number) => (c.metric === 'file_bytes' ? v.toFixed(0) : +v.toPrecision(6));
  const what = c.metric === 'top1_percent' || c.metric === 'psnr_db' ? 'drop' : 'increase';
  return `${c.dtype ? `${c.dtype}: ` : ''}${c.name} ${c.limit}: ${unit} ${fmt(c.base)} -> ${fmt(c.candidate)} (${what} ${formatChange(c)})`;
}
