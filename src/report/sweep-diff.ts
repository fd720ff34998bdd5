import { checkBudgets, describeFailure, type Budgets } from './budget.js';
import { checkSameData } from './diff.js';
import { formatDelta, formatValue, mdTable } from './format.js';
import type { BudgetCheck, FileRef } from './schema.js';
import { qualityOf, settingsKey, type QualityMetric, type SizeMetric, type SweepPoint, type SweepReport } from './sweep.js';

/**
 * Two merged sweeps point by point: points with the same settings are the same recipe choice, and
 * every budget is checked on each such pair (base sweep's model as the baseline). Points only one
 * side has are listed, never checked.
 */

export interface SweepDiffPoint {
  settings: [string, unknown][];
  base?: { id: string; model: SweepPoint['model'] };
  next?: { id: string; model: SweepPoint['model'] };
  checks: BudgetCheck[];
  /** every check holds; absent for a point only one side has */
  ok?: boolean;
}

export interface SweepDiff {
  schema: 'pare.diff';
  version: 1;
  kind: 'sweep';
  base: { report: string; model: FileRef };
  next: { report: string; model: FileRef };
  data?: string;
  size: SizeMetric;
  quality: QualityMetric;
  points: SweepDiffPoint[];
  failed: boolean;
}

export function settingsText(settings: readonly [string, unknown][]): string {
  return settings.length ? settings.map(([p, v]) => `${p}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(', ') : '(base recipe)';
}

export function diffSweeps(base: SweepReport, next: SweepReport, budgets: Budgets = {}, paths = { base: 'base sweep', next: 'new sweep' }): SweepDiff {
  const measured = base.front.quality !== 'none' && next.front.quality !== 'none';
  checkSameData(base.data, next.data, measured, paths);
  const byKey = new Map<string, SweepDiffPoint>();
  for (const p of base.points) byKey.set(settingsKey(p.settings), { settings: p.settings, base: { id: p.id, model: p.model }, checks: [] });
  for (const p of next.points) {
    const key = settingsKey(p.settings);
    const entry = byKey.get(key) ?? { settings: p.settings, checks: [] };
    entry.next = { id: p.id, model: p.model };
    byKey.set(key, entry);
  }
  const points = [...byKey.values()];
  for (const p of points) {
    if (!p.base || !p.next) continue;
    const where = settingsText(p.settings);
    p.checks = checkBudgets(p.base.model, p.next.model, budgets, { base: `${paths.base} point ${where}`, candidate: `${paths.next} point ${where}` });
    p.ok = p.checks.every((c) => c.ok);
  }
  return {
    schema: 'pare.diff',
    version: 1,
    kind: 'sweep',
    base: { report: paths.base, model: base.model },
    next: { report: paths.next, model: next.model },
    data: next.data?.description,
    size: next.front.size,
    quality: next.front.quality,
    points,
    failed: points.some((p) => p.ok === false),
  };
}

/** Each failed check of a sweep diff, one line: `point passes[0].params.sparsity=0.5: max_ppl_increase 2%: ...`. */
export function sweepDiffFailures(diff: SweepDiff): string[] {
  return diff.points.flatMap((p) => p.checks.filter((c) => !c.ok).map((c) => `point ${settingsText(p.settings)}: ${describeFailure(c)}`));
}

/** The sweep diff as Markdown: one row per point (size and quality, base → new, and its budget verdict). */
export function renderSweepDiffMarkdown(diff: SweepDiff): string {
  const lines = ['## pare sweep diff', ''];
  const model = (m: FileRef) => `model \`${m.path}\` (sha256 ${m.sha256.slice(0, 12)})`;
  lines.push(`- **base:** \`${diff.base.report}\`: ${model(diff.base.model)}`);
  lines.push(`- **new:** \`${diff.next.report}\`: ${model(diff.next.model)}`);
  if (diff.data) lines.push(`- **data:** ${diff.data}`);
  lines.push('');
  const q = diff.quality;
  const qUnit = q === 'top1' ? 'fraction' : 'ppl';
  const budgeted = diff.points.some((p) => p.checks.length > 0);
  const headers = ['', 'point', `${diff.size === 'file_bytes' ? 'file size' : 'sparse size'} base`, 'new', ...(q !== 'none' ? [`${q} base`, 'new', 'change'] : []), ...(budgeted ? ['budgets'] : [])];
  const rows = diff.points.map((p) => {
    const mark = p.ok === undefined ? (p.base ? 'removed' : 'added') : p.ok ? '✅' : '❌';
    const sa = p.base?.model.size[diff.size];
    const sb = p.next?.model.size[diff.size];
    const cells = [mark, settingsText(p.settings), formatValue(sa, 'bytes'), formatValue(sb, 'bytes')];
    if (q !== 'none') {
      const qa = p.base && qualityOf(p.base.model, q);
      const qb = p.next && qualityOf(p.next.model, q);
      cells.push(formatValue(qa, qUnit), formatValue(qb, qUnit), formatDelta(qa, qb, qUnit));
    }
    if (budgeted) cells.push(p.checks.map((c) => `${c.ok ? '✅' : '❌'} ${c.name} ${c.limit}`).join('<br>'));
    return cells;
  });
  lines.push(mdTable(headers, rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'l']));
  const failures = sweepDiffFailures(diff);
  if (failures.length) lines.push('', '### Budget failures', '', ...failures.map((f) => `- ❌ ${f}`));
  else if (budgeted) lines.push('', `✅ every budget holds on all ${diff.points.filter((p) => p.ok !== undefined).length} points both sweeps have`);
  return `${lines.join('\n')}\n`;
}
