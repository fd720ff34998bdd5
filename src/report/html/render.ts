import { describeFailure, formatChange } from '../budget.js';
import type { ReportDiff } from '../diff.js';
import { bytes, formatDelta, formatValue } from '../format.js';
import type { Document } from '../io.js';
import { measureRows } from '../rows.js';
import type { BudgetCheck, FileRef, PassReport, Report } from '../schema.js';
import { settingsText, sweepDiffFailures, type SweepDiff } from '../sweep-diff.js';
import { pointLabel, qualityOf, type QualityMetric, type SweepReport } from '../sweep.js';
import { layerChart } from './layer-chart.js';
import { esc, page } from './page.js';
import { scatterChart, type ScatterMark } from './scatter.js';

/**
 * `pare report html`: a report, a merged sweep or a diff as one self-contained HTML page (page.ts).
 * A sweep shows size against quality with the Pareto front, its points, and each point's layers; a
 * run shows its summary, budget verdicts and layers; a diff shows the verdict of every budget.
 */
export function renderHtml(doc: Document): string {
  if (doc.kind === 'report') return reportPage(doc.report);
  if (doc.kind === 'sweep') return sweepPage(doc.sweep);
  return doc.diff.kind === 'sweep' ? sweepDiffPage(doc.diff) : reportDiffPage(doc.diff);
}

const file = (f: FileRef) => `<code>${esc(f.path)}</code> <span class="meta">sha256 ${esc(f.sha256.slice(0, 12))}</span>`;

function table(headers: string[], rows: string[][], rowClass: (i: number) => string = () => ''): string {
  const head = `<tr>${headers.map((h, i) => `<th${i === 1 ? ' class="l"' : ''}>${h}</th>`).join('')}</tr>`;
  const body = rows.map((r, i) => `<tr${rowClass(i) ? ` class="${rowClass(i)}"` : ''}>${r.map((c, k) => `<td${k === 1 ? ' class="l"' : ''}>${c}</td>`).join('')}</tr>`).join('\n');
  return `<table>\n${head}\n${body}\n</table>`;
}

function verdict(ok: boolean | undefined): string {
  return ok === undefined ? '' : ok ? '<span class="ok">✔ pass</span>' : '<span class="bad">✘ fail</span>';
}

function budgetTable(checks: readonly BudgetCheck[]): string {
  const fmt = (c: BudgetCheck, v: number) => (c.metric === 'file_bytes' ? bytes(v) : c.metric === 'top1_percent' ? `${v.toFixed(2)} %` : v.toFixed(3));
  return table(
    ['verdict', 'budget', 'limit', 'base', 'candidate', 'change'],
    checks.map((c) => [verdict(c.ok), `<code>${esc(c.name)}</code>`, esc(c.limit), esc(fmt(c, c.base)), esc(fmt(c, c.candidate)), esc(formatChange(c))]),
  );
}

function layersSection(passes: readonly PassReport[]): string {
  return passes
    .filter((p) => p.layers.length > 0)
    .map((p) => {
      const i = passes.indexOf(p);
      const caption = `passes[${i}] ${p.id}: ${p.layers.length} layers`;
      return `<h3>${esc(caption)}</h3>\n${layerChart(p, caption)}`;
    })
    .join('\n');
}

function reportPage(r: Report): string {
  const parts = [`<h1>pare ${esc(r.kind)} report</h1>`];
  parts.push(`<p class="meta">input ${file(r.input)}</p>`);
  if (r.output) parts.push(`<p class="meta">output ${file(r.output)}</p>`);
  if (r.recipe) parts.push(`<p class="meta">recipe ${file(r.recipe)}</p>`);
  if (r.data) parts.push(`<p class="meta">data ${esc(r.data.description)}</p>`);
  parts.push(`<p class="meta">pare ${esc(r.tool.version)}, onnxruntime ${esc(r.tool.onnxruntime)}, node ${esc(r.tool.node)}, ${esc(r.created)}</p>`);
  const { reference, model } = r.measurements;
  const rows = measureRows(reference, model).map((row) => [esc(row.label), ...(reference ? [esc(formatValue(row.a, row.unit))] : []), esc(formatValue(row.b, row.unit)), ...(reference ? [esc(formatDelta(row.a, row.b, row.unit))] : [])]);
  parts.push('<h2>Summary</h2>', table(reference ? ['metric', 'reference', 'model', 'change'] : ['metric', 'model'], rows));
  if (r.budgets?.length) parts.push('<h2>Budgets</h2>', budgetTable(r.budgets));
  if (r.calibration_cache) parts.push(`<p class="meta">calibration cache: ${r.calibration_cache.hits} hits, ${r.calibration_cache.misses} misses${r.calibration_cache.unreadable ? `, ${r.calibration_cache.unreadable} unreadable entries recomputed` : ''}</p>`);
  if (r.passes.some((p) => p.layers.length)) parts.push('<h2>Layers</h2>', layersSection(r.passes));
  if (r.warnings.length) parts.push('<h2>Warnings</h2>', `<ul>${r.warnings.map((w) => `<li>${esc(w)}</li>`).join('')}</ul>`);
  return page(`pare ${r.kind} report: ${r.output?.path ?? r.input.path}`, parts.join('\n'));
}

function qualityLabel(q: QualityMetric): string | undefined {
  return q === 'perplexity' ? 'perplexity (lower is better)' : q === 'top1' ? 'top-1 accuracy (higher is better)' : undefined;
}

function qualityText(q: QualityMetric, v: number | undefined): string {
  return q === 'top1' ? formatValue(v, 'fraction') : formatValue(v, 'ppl');
}

function sweepPage(s: SweepReport): string {
  const q = s.front.quality;
  const sizeName = s.front.size === 'file_bytes' ? 'file size' : 'sparse size (bitmask + nonzeros)';
  const parts = ['<h1>pare sweep</h1>', `<p class="meta">model ${file(s.model)}</p>`];
  if (s.data) parts.push(`<p class="meta">data ${esc(s.data.description)}</p>`);
  parts.push(`<p class="meta">${s.points.length} points varying ${s.axes.map((a) => `<code>${esc(a)}</code>`).join(', ') || 'nothing'}; ${s.front.ids.length} on the Pareto front${s.calibration_cache.hits + s.calibration_cache.misses ? `; calibration cache ${s.calibration_cache.hits} hits, ${s.calibration_cache.misses} misses` : ''}</p>`);

  const marks: ScatterMark[] = s.points.map((p) => {
    const v = qualityOf(p.model, q);
    const failed = p.budgets?.some((b) => !b.ok);
    return {
      id: p.id,
      label: p.settings.map(([, val]) => (typeof val === 'string' ? val : JSON.stringify(val))).join(', ') || 'base',
      size: p.model.size[s.front.size],
      quality: v,
      classes: [...(p.pareto ? ['pareto'] : []), ...(failed ? ['fails'] : [])],
      title: `${settingsText(p.settings)}\n${sizeName} ${bytes(p.model.size[s.front.size])}${v !== undefined ? `, ${q} ${qualityText(q, v)}` : ''}${p.pareto ? '\non the Pareto front' : ''}`,
    };
  });
  const front = s.front.ids.map((id) => marks.find((m) => m.id === id)!).sort((a, b) => a.size - b.size);
  const ref = s.reference;
  parts.push(`<h2>${esc(sizeName)} against ${esc(q === 'none' ? 'size' : q)}</h2>`);
  parts.push(
    scatterChart(marks, {
      sizeLabel: sizeName,
      qualityLabel: qualityLabel(q),
      front,
      reference: ref && { size: ref.size[s.front.size], quality: qualityOf(ref, q), title: `reference ${ref.path}: ${bytes(ref.size[s.front.size])}${qualityOf(ref, q) !== undefined ? `, ${q} ${qualityText(q, qualityOf(ref, q))}` : ''}` },
    }),
  );
  parts.push(`<p class="legend"><i style="background:var(--front)"></i>Pareto front<i style="background:var(--accent)"></i>other points<i style="border:1.5px solid var(--ink);background:#fff"></i>original model<i style="border:2.5px solid var(--bad);background:#fff"></i>a budget failed</p>`);

  const refQ = ref ? qualityOf(ref, q) : undefined;
  const hasBudgets = s.points.some((p) => p.budgets?.length);
  const rows = s.points.map((p) => {
    const v = qualityOf(p.model, q);
    const cache = p.calibration_cache;
    return [
      p.pareto ? '★' : '',
      `<span title="${esc(settingsText(p.settings))}">${esc(pointLabel(p.id))}</span> <code class="meta">${esc(p.id.slice(-8))}</code>`,
      esc(bytes(p.model.size.file_bytes)),
      esc(bytes(p.model.size.sparse_bytes)),
      esc(p.model.size.bits_per_weight.toFixed(2)),
      ...(q !== 'none' ? [esc(qualityText(q, v)), esc(formatDelta(refQ, v, q === 'top1' ? 'fraction' : 'ppl'))] : []),
      esc(`${(p.timings.total_ms / 1000).toFixed(1)} s`),
      cache ? `${cache.hits}/${cache.hits + cache.misses}` : '–',
      ...(hasBudgets ? [p.budgets?.length ? verdict(p.budgets.every((b) => b.ok)) : ''] : []),
    ];
  });
  parts.push('<h2>Points</h2>');
  parts.push(table(['', 'point', 'file size', 'sparse size', 'bits/weight', ...(q !== 'none' ? [esc(q), 'vs reference'] : []), 'time', 'cache hits', ...(hasBudgets ? ['budgets'] : [])], rows, (i) => (s.points[i]!.pareto ? 'pareto' : '')));
  if (hasBudgets) {
    const failures = s.points.flatMap((p) => (p.budgets ?? []).filter((b) => !b.ok).map((b) => `${pointLabel(p.id)}: ${describeFailure(b)}`));
    parts.push('<h2>Budgets</h2>', failures.length ? `<ul>${failures.map((f) => `<li class="bad">${esc(f)}</li>`).join('')}</ul>` : '<p class="ok">Every budget holds on every point.</p>');
  }
  parts.push('<h2>Layers</h2>');
  for (const p of s.points) {
    parts.push(`<details${p.pareto && p.id === s.front.ids[0] ? ' open' : ''}><summary>${p.pareto ? '★ ' : ''}${esc(pointLabel(p.id))} <code class="meta">${esc(p.id.slice(-8))}</code>: ${esc(settingsText(p.settings))}</summary>\n${layersSection(p.passes)}\n</details>`);
  }
  if (s.warnings.length) parts.push('<h2>Warnings</h2>', `<ul>${s.warnings.map((w) => `<li>${esc(w)}</li>`).join('')}</ul>`);
  return page(`pare sweep: ${s.model.path}`, parts.join('\n'));
}

function diffHeader(d: ReportDiff | SweepDiff, title: string): string[] {
  const parts = [`<h1>${esc(title)}</h1>`, `<p class="meta">base <code>${esc(d.base.report)}</code>: model ${file(d.base.model)}</p>`, `<p class="meta">new <code>${esc(d.next.report)}</code>: model ${file(d.next.model)}</p>`];
  if (d.data) parts.push(`<p class="meta">data ${esc(d.data)}</p>`);
  return parts;
}

function reportDiffPage(d: ReportDiff): string {
  const parts = diffHeader(d, 'pare report diff');
  parts.push(`<h2>Verdict: ${d.checks.length === 0 ? 'no budgets checked' : d.failed ? '<span class="bad">a budget failed</span>' : '<span class="ok">every budget holds</span>'}</h2>`);
  if (d.checks.length) parts.push(budgetTable(d.checks));
  parts.push('<h2>Metrics</h2>');
  parts.push(table(['metric', 'base', 'new', 'change', 'budget'], d.rows.map((r) => [esc(r.metric), esc(formatValue(r.base, r.unit)), esc(formatValue(r.next, r.unit)), esc(formatDelta(r.base, r.next, r.unit)), r.ok === undefined ? '' : `${verdict(r.ok)} ${esc(r.limit ?? '')}`])));
  return page('pare report diff', parts.join('\n'));
}

function sweepDiffPage(d: SweepDiff): string {
  const parts = diffHeader(d, 'pare sweep diff');
  const q = d.quality;
  const checked = d.points.filter((p) => p.ok !== undefined);
  parts.push(`<h2>Verdict: ${checked.every((p) => p.checks.length === 0) ? 'no budgets checked' : d.failed ? `<span class="bad">budgets fail on ${checked.filter((p) => !p.ok).length} of ${checked.length} points</span>` : `<span class="ok">every budget holds on all ${checked.length} points</span>`}</h2>`);
  const marks: ScatterMark[] = d.points.flatMap((p) => {
    const out: ScatterMark[] = [];
    const label = settingsText(p.settings);
    if (p.base) out.push({ id: `base:${p.base.id}`, label, size: p.base.model.size[d.size], quality: qualityOf(p.base.model, q), classes: ['base'], title: `base ${label}` });
    if (p.next) out.push({ id: p.next.id, label, size: p.next.model.size[d.size], quality: qualityOf(p.next.model, q), classes: p.ok === false ? ['fails'] : [], title: `new ${label}` });
    return out;
  });
  parts.push(scatterChart(marks, { sizeLabel: d.size === 'file_bytes' ? 'file size' : 'sparse size', qualityLabel: qualityLabel(q), front: [] }));
  parts.push(`<p class="legend"><i style="border:1.5px solid var(--muted);background:#fff"></i>base sweep<i style="background:var(--accent)"></i>new sweep<i style="border:2.5px solid var(--bad);background:#fff"></i>a budget failed</p>`);
  const rows = d.points.map((p) => {
    const qa = p.base && qualityOf(p.base.model, q);
    const qb = p.next && qualityOf(p.next.model, q);
    const status = p.ok === undefined ? (p.base ? 'only in base' : 'only in new') : verdict(p.ok);
    return [status, esc(settingsText(p.settings)), esc(formatValue(p.base?.model.size[d.size], 'bytes')), esc(formatValue(p.next?.model.size[d.size], 'bytes')), esc(qualityText(q, qa)), esc(qualityText(q, qb)), esc(p.checks.map((c) => `${c.ok ? '✔' : '✘'} ${c.name} ${c.limit} (${formatChange(c)})`).join('; '))];
  });
  parts.push('<h2>Points</h2>', table(['verdict', 'point', 'size base', 'size new', `${esc(q)} base`, `${esc(q)} new`, 'budgets'], rows));
  const failures = sweepDiffFailures(d);
  if (failures.length) parts.push('<h2>Budget failures</h2>', `<ul>${failures.map((f) => `<li class="bad">${esc(f)}</li>`).join('')}</ul>`);
  return page('pare sweep diff', parts.join('\n'));
}
