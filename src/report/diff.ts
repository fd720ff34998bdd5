import { UserError } from '../errors.js';
import { checkBudgets, describeFailure, type Budgets } from './budget.js';
import { formatDelta, formatValue, mdTable, type Unit } from './format.js';
import { fidelityRows, measureRows } from './rows.js';
import type { BudgetCheck, FileRef, Report } from './schema.js';

/** One metric of the base report's model against the new report's model; `change` is next − base. */
export interface DiffRow {
  metric: string;
  key: string;
  unit: Unit;
  base: number | null;
  next: number | null;
  change: number | null;
  /** set on rows a budget checks */
  ok?: boolean;
  /** the budget's limit as written, on rows a budget checks */
  limit?: string;
}

export interface ReportDiff {
  schema: 'pare.diff';
  version: 1;
  kind: 'report';
  base: { report: string; model: FileRef };
  next: { report: string; model: FileRef };
  data?: string;
  rows: DiffRow[];
  checks: BudgetCheck[];
  failed: boolean;
}

/** Which row each budget's metric lands on. */
const BUDGET_ROW: Record<BudgetCheck['metric'], string> = { perplexity: 'perplexity', top1_percent: 'top1', file_bytes: 'file_bytes', psnr_db: 'psnr', rmse: 'rmse' };

/**
 * Compare the model measured in `base` with the one in `next`, checking `budgets` (base as the
 * baseline). Both reports must have measured the same data; `paths` name them in errors.
 */
export function diffReports(base: Report, next: Report, budgets: Budgets = {}, paths = { base: 'base report', next: 'new report' }): ReportDiff {
  const a = base.measurements.model;
  const b = next.measurements.model;
  checkSameData(base.data, next.data, a.quality !== undefined && b.quality !== undefined, paths);
  const checks = checkBudgets(a, b, budgets, { base: `${paths.base} (model ${a.path})`, candidate: `${paths.next} (model ${b.path})` });
  const byRow = new Map(checks.map((c) => [BUDGET_ROW[c.metric], c]));
  const rows = [...measureRows(a, b), ...fidelityRows(base.fidelity, next.fidelity)].map((r): DiffRow => {
    const check = byRow.get(r.key);
    const row: DiffRow = { metric: r.label, key: r.key, unit: r.unit, base: r.a ?? null, next: r.b ?? null, change: r.a !== undefined && r.b !== undefined ? r.b - r.a : null };
    if (check) Object.assign(row, { ok: check.ok, limit: check.limit });
    return row;
  });
  return {
    schema: 'pare.diff',
    version: 1,
    kind: 'report',
    base: { report: paths.base, model: { path: a.path, sha256: a.sha256 } },
    next: { report: paths.next, model: { path: b.path, sha256: b.sha256 } },
    data: next.data?.description,
    rows,
    checks,
    failed: checks.some((c) => !c.ok),
  };
}

/** Two documents' evaluation data must be the same (description and file hashes) when both measured quality. */
export function checkSameData(a: Report['data'], b: Report['data'], measuredQuality: boolean, paths: { base: string; next: string }): void {
  if (!a || !b) {
    if (!measuredQuality) return;
    const missing = [!a ? paths.base : '', !b ? paths.next : ''].filter(Boolean).join(' and ');
    throw new UserError(`${missing}: no "data" record, so ${paths.base} and ${paths.next} cannot be shown to have measured the same data; compare reports written by pare eval or pare compress`);
  }
  const hashes = (d: NonNullable<typeof a>) => d.files.map((f) => f.sha256).sort().join(',');
  if (a.description === b.description && hashes(a) === hashes(b)) return;
  const show = (d: NonNullable<typeof a>) => `"${d.description}" (${d.files.map((f) => `${f.path} sha256 ${f.sha256.slice(0, 12)}`).join(', ')})`;
  throw new UserError(
    `${paths.base} and ${paths.next} measured different data: ${show(a)} vs ${show(b)}; evaluate both models on the same eval data before diffing`,
  );
}

/** The diff as a Markdown table for a pull-request comment; failing budgets are marked ❌ and listed again below. */
export function renderDiffMarkdown(diff: ReportDiff): string {
  const lines = ['## pare report diff', ''];
  const model = (m: FileRef) => `model \`${m.path}\` (sha256 ${m.sha256.slice(0, 12)})`;
  lines.push(`- **base:** \`${diff.base.report}\`: ${model(diff.base.model)}`);
  lines.push(`- **new:** \`${diff.next.report}\`: ${model(diff.next.model)}`);
  if (diff.data) lines.push(`- **data:** ${diff.data}`);
  lines.push('');
  const budgeted = diff.checks.length > 0;
  const headers = ['metric', 'base', 'new', 'change', ...(budgeted ? ['budget'] : [])];
  const rows = diff.rows.map((r) => {
    const mark = r.ok === undefined ? '' : r.ok ? '✅' : '❌';
    const cells = [mark ? `${mark} ${r.metric}` : r.metric, formatValue(r.base, r.unit), formatValue(r.next, r.unit), formatDelta(r.base, r.next, r.unit)];
    if (budgeted) cells.push(r.limit ?? '');
    return cells;
  });
  lines.push(mdTable(headers, rows, ['l', 'r', 'r', 'r', 'r']));
  const failed = diff.checks.filter((c) => !c.ok);
  if (failed.length) {
    lines.push('', '### Budget failures', '', ...failed.map((c) => `- ❌ ${describeFailure(c)}`));
  } else if (budgeted) {
    lines.push('', `✅ ${diff.checks.length === 1 ? 'the budget holds' : `all ${diff.checks.length} budgets hold`} (${diff.checks.map((c) => `${c.name} ${c.limit}`).join(', ')})`);
  }
  return `${lines.join('\n')}\n`;
}
