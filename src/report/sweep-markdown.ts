import { bytes, count, formatDelta, formatValue, mdTable } from './format.js';
import { qualityOf, type SweepReport } from './sweep.js';

/** A merged sweep as Markdown: one row per point, ★ on the Pareto front. */
export function renderSweepMarkdown(sweep: SweepReport): string {
  const lines = ['## pare sweep', ''];
  lines.push(`- **model:** \`${sweep.model.path}\` (sha256 ${sweep.model.sha256.slice(0, 12)})`);
  if (sweep.data) lines.push(`- **data:** ${sweep.data.description}`);
  lines.push(`- **points:** ${sweep.points.length}, varying ${sweep.axes.length ? sweep.axes.map((a) => `\`${a}\``).join(', ') : 'nothing'}`);
  const front = sweep.front;
  lines.push(`- **Pareto front (★):** ${front.ids.length} point${front.ids.length === 1 ? '' : 's'}, ${front.size === 'file_bytes' ? 'file size' : 'sparse size'} against ${front.quality === 'none' ? 'size alone (no quality was measured)' : front.quality}`);
  const c = sweep.calibration_cache;
  if (c.hits + c.misses > 0) lines.push(`- **calibration cache:** ${count(c.hits)} hits, ${count(c.misses)} misses${c.unreadable ? `, ${count(c.unreadable)} unreadable entries recomputed` : ''}`);
  if (sweep.mixed) lines.push(`- **mixed:** ${sweep.mixed.models.length} models, ${sweep.mixed.data.length} evaluation data sets (--allow-mixed)`);
  lines.push('');

  const q = front.quality;
  const qUnit = q === 'top1' ? 'fraction' : 'ppl';
  const refQuality = sweep.reference && q !== 'none' ? qualityOf(sweep.reference, q) : undefined;
  const hasLatency = sweep.points.some((p) => p.model.latency);
  const hasBudgets = sweep.points.some((p) => p.budgets?.length);
  const headers = ['', 'point', 'file size', 'sparse size', 'bits/weight', ...(q !== 'none' ? [q, 'vs reference'] : []), ...(hasLatency ? ['latency'] : []), 'time', 'cache hits', ...(hasBudgets ? ['budgets'] : [])];
  const rows = sweep.points.map((p) => {
    const m = p.model;
    const cells: string[] = [p.pareto ? '★' : '', `\`${p.id}\``, bytes(m.size.file_bytes), bytes(m.size.sparse_bytes), m.size.bits_per_weight.toFixed(2)];
    if (q !== 'none') {
      const v = qualityOf(m, q);
      cells.push(formatValue(v, qUnit), formatDelta(refQuality, v, qUnit));
    }
    if (hasLatency) cells.push(formatValue(m.latency?.median_ms, 'ms'));
    cells.push(`${(p.timings.total_ms / 1000).toFixed(1)} s`, p.calibration_cache ? `${p.calibration_cache.hits}/${p.calibration_cache.hits + p.calibration_cache.misses}` : '–');
    if (hasBudgets) cells.push(p.budgets?.length ? (p.budgets.every((b) => b.ok) ? '✅' : '❌') : '');
    return cells;
  });
  lines.push(mdTable(headers, rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l']));
  if (sweep.reference) {
    const r = sweep.reference;
    const rq = q !== 'none' ? qualityOf(r, q) : undefined;
    lines.push('', `Reference \`${r.path}\`: ${bytes(r.size.file_bytes)}, ${r.size.bits_per_weight.toFixed(2)} bits/weight${rq !== undefined ? `, ${q} ${formatValue(rq, qUnit)}` : ''}.`);
  }
  if (sweep.warnings.length) lines.push('', '### Warnings', '', ...sweep.warnings.map((w) => `- ${w}`));
  return `${lines.join('\n')}\n`;
}
