import { describeFailure, formatChange } from './budget.js';
import { bytes, collapsible, count, formatDelta, formatValue, mdTable, percent } from './format.js';
import { fidelityRows, measureRows } from './rows.js';
import type { RuntimeMeasure } from '../eval/evaluate.js';
import type { LayerStat, PassReport, Report } from './schema.js';

/** Layer tables longer than this fold into <details>. */
const FOLD_ROWS = 12;

/** The report as Markdown: what ran, reference vs model, fidelity, budgets, passes, layers, warnings. */
export function renderReportMarkdown(report: Report): string {
  const parts = [header(report), summary(report)];
  const fid = fidelity(report);
  if (fid) parts.push(fid);
  if (report.runtimes?.length) parts.push(runtimes(report));
  if (report.variants?.length) parts.push(variants(report));
  if (report.budgets?.length) parts.push(budgets(report));
  if (report.passes.length) parts.push(passes(report.passes));
  for (const [i, p] of report.passes.entries()) if (p.layers.length) parts.push(layers(i, p));
  // the run's warnings already repeat its passes' (compress collects them); a report from elsewhere may not
  const warnings = [...new Set([...report.warnings, ...report.passes.flatMap((p) => (p.warnings ?? []).map((w) => `${p.id}: ${w}`))])];
  if (warnings.length) parts.push(['### Warnings', '', ...warnings.map((w) => `- ${w}`)].join('\n'));
  return `${parts.join('\n\n')}\n`;
}

function header(r: Report): string {
  const lines = [`## pare ${r.kind} report`, ''];
  const item = (k: string, v: string) => lines.push(`- **${k}:** ${v}`);
  item('input', `\`${r.input.path}\` (${r.input.format}, sha256 ${r.input.sha256.slice(0, 12)})`);
  if (r.output) item('output', `\`${r.output.path}\` (${r.output.format}, sha256 ${r.output.sha256.slice(0, 12)})`);
  if (r.recipe) item('recipe', `\`${r.recipe.path}\` (sha256 ${r.recipe.sha256.slice(0, 12)})`);
  if (r.seed !== undefined) item('seed', String(r.seed));
  if (r.data) item('data', `${r.data.description}${r.data.files.length ? ` (${r.data.files.map((f) => `${f.path} ${f.sha256.slice(0, 12)}`).join(', ')})` : ''}`);
  const t = r.timings;
  const split = [t.passes_ms !== undefined ? `passes ${seconds(t.passes_ms)}` : '', t.eval_ms !== undefined ? `eval ${seconds(t.eval_ms)}` : ''].filter(Boolean);
  item('time', `${seconds(t.total_ms)}${split.length ? ` (${split.join(', ')})` : ''}`);
  for (const c of r.schedules ?? []) {
    item('schedule', `passes[${c.entry}] ${c.pass} in ${c.stages} stage${c.stages === 1 ? '' : 's'}: the pass ${seconds(c.pass_ms)} (CPU ${seconds(c.pass_cpu_ms)}), distillation ${seconds(c.distill_ms)} (CPU ${seconds(c.distill_cpu_ms)})`);
  }
  item('tool', `pare ${r.tool.version}, onnxruntime ${r.tool.onnxruntime}, node ${r.tool.node}, ${r.created}`);
  return lines.join('\n');
}

function summary(r: Report): string {
  const { reference, model } = r.measurements;
  const rows = measureRows(reference, model);
  const ci = model.quality?.task === 'causal-lm' ? model.quality : undefined;
  const refCi = reference?.quality?.task === 'causal-lm' ? reference.quality : undefined;
  const cell = (row: (typeof rows)[number], v: number | undefined, q: typeof ci) =>
    row.key === 'perplexity' && q && v !== undefined ? `${formatValue(v, 'ppl')} [${q.ppl_ci95[0].toFixed(3)}, ${q.ppl_ci95[1].toFixed(3)}]` : formatValue(v, row.unit);
  const body = rows.map((row) => {
    const base = [row.label];
    if (reference) base.push(cell(row, row.a, refCi));
    base.push(cell(row, row.b, ci));
    if (reference) base.push(formatDelta(row.a, row.b, row.unit));
    return base;
  });
  const extra = qualityNote(r);
  const headers = reference ? ['metric', 'reference', 'model', 'change'] : ['metric', 'model'];
  return [`### Summary`, '', mdTable(headers, body, ['l', 'r', 'r', 'r']), ...(extra ? ['', extra] : [])].join('\n');
}

function qualityNote(r: Report): string | undefined {
  const q = r.measurements.model.quality;
  if (!q) return undefined;
  if (q.task === 'causal-lm') return `Perplexity over ${count(q.tokens)} predicted tokens in ${count(q.sequences)} sequences, with its 95% interval.`;
  if (q.task === 'classification') return `Accuracy over ${count(q.samples)} labelled samples.`;
  return `${q.task === 'image-to-image' ? 'Image-to-image' : 'Regression'} error over ${count(q.samples)} samples (${count(q.values)} output values) against the ${q.against === 'targets' ? 'targets' : "reference model's outputs"}; PSNR with data range ${q.data_range}.`;
}

function fidelity(r: Report): string | undefined {
  if (!r.fidelity) return undefined;
  const rows = fidelityRows(undefined, r.fidelity).map((row) => [row.label, formatValue(row.b, row.unit)]);
  return [`### Fidelity to the reference`, '', mdTable(['metric', 'model'], rows, ['l', 'r']), '', `Over ${count(r.fidelity.positions)} output positions.`].join('\n');
}

/** Each runtime's numbers side by side: quality and latency of the model (and the reference), or the operator it could not run. */
function runtimes(r: Report): string {
  const list = r.runtimes ?? [];
  const hasRef = list.some((x) => x.reference);
  const quality = (m: RuntimeMeasure | undefined) => {
    const q = m?.quality;
    if (!q) return '';
    if (q.task === 'regression' || q.task === 'image-to-image') return formatValue(q.psnr, 'db');
    return q.task === 'causal-lm' ? formatValue(q.perplexity, 'ppl') : q.task === 'classification' ? formatValue(q.top1, 'fraction') : '';
  };
  const latency = (m: RuntimeMeasure | undefined) => (m?.latency ? `${formatValue(m.latency.median_ms, 'ms')} (${m.latency.threads} thread${m.latency.threads === 1 ? '' : 's'})` : '');
  const task = list.find((x) => x.model?.quality)?.model?.quality?.task;
  const metric = task === 'classification' ? 'top-1' : task === 'regression' || task === 'image-to-image' ? 'PSNR' : 'perplexity';
  const rows = list.map((x) => {
    if (x.error) {
      const cannot = `cannot run \`${x.error.path}\`${x.error.op ? `: operator ${x.error.op}${x.error.node ? ` (node \`${x.error.node}\`)` : ''}` : ''}`;
      return [`${x.runtime} ${x.version}`, cannot, '', ...(hasRef ? ['', ''] : [])];
    }
    return [`${x.runtime} ${x.version}`, quality(x.model), latency(x.model), ...(hasRef ? [quality(x.reference), latency(x.reference)] : [])];
  });
  const headers = ['runtime', `model ${metric}`, 'model latency', ...(hasRef ? [`reference ${metric}`, 'reference latency'] : [])];
  return ['### Runtimes', '', mdTable(headers, rows, ['l', 'r', 'r', 'r', 'r'])].join('\n');
}

/** A model folder's files side by side: size against the first, and quality when measured. */
function variants(r: Report): string {
  const list = r.variants ?? [];
  const first = list[0]!.measure.size.file_bytes;
  const measured = list.some((v) => v.measure.quality);
  const lm = list.some((v) => v.measure.quality?.task === 'causal-lm');
  const rows = list.map((v) => {
    const q = v.measure.quality;
    const quality = q === undefined ? '' : q.task === 'causal-lm' ? formatValue(q.perplexity, 'ppl') : q.task === 'classification' ? percent(q.top1, 2) : formatValue(q.psnr, 'db');
    const row = [v.dtype, `\`${v.path}\``, bytes(v.measure.size.file_bytes), `${(v.measure.size.file_bytes / first).toFixed(3)}×`, v.passes.map((p) => p.id).join(', ') || '(as the passes left it)'];
    return measured ? [...row, quality] : row;
  });
  const headers = ['dtype', 'file', 'bytes', `vs ${list[0]!.dtype}`, 'made by', ...(measured ? [lm ? 'perplexity' : 'top-1'] : [])];
  return ['### Model folder', '', mdTable(headers, rows, ['l', 'l', 'r', 'r', 'l', 'r'])].join('\n');
}

function budgets(r: Report): string {
  const checks = r.budgets ?? [];
  const rows = checks.map((c) => [c.ok ? '✅' : '❌', c.dtype ? `${c.name} (${c.dtype})` : c.name, c.limit, formatChange(c)]);
  const failed = checks.filter((c) => !c.ok);
  return [
    '### Budgets',
    '',
    mdTable(['', 'budget', 'limit', 'change'], rows, ['l', 'l', 'r', 'r']),
    ...(failed.length ? ['', ...failed.map((c) => `- ❌ ${describeFailure(c)}`)] : []),
  ].join('\n');
}

function passes(list: PassReport[]): string {
  const rows = list.map((p, i) => {
    const before = p.layers.reduce((s, l) => s + l.bytes_before, 0);
    const after = p.layers.reduce((s, l) => s + l.bytes_after, 0);
    return [String(i), passLabel(p), p.targets.join(', '), p.layers.length, seconds(p.ms), bytes(before), bytes(after), (p.warnings ?? []).length];
  });
  return ['### Passes', '', mdTable(['#', 'pass', 'targets', 'layers', 'time', 'bytes before', 'bytes after', 'warnings'], rows, ['r', 'l', 'l', 'r', 'r', 'r', 'r', 'r'])].join('\n');
}

/** `decompose.kronecker (stage 2/5: blocks 1)`, `distill.kd (after stage 2/5)` */
function passLabel(p: PassReport): string {
  const s = p.stage;
  if (!s) return p.id;
  return s.role === 'pass' ? `${p.id} (stage ${s.index}/${s.count}: blocks ${s.blocks.join(', ')})` : `${p.id} (after stage ${s.index}/${s.count})`;
}

function layers(index: number, p: PassReport): string {
  const extraKeys = [...new Set(p.layers.flatMap((l) => Object.keys(l.extra ?? {})))].sort();
  const has = (k: keyof LayerStat) => p.layers.some((l) => l[k] !== undefined);
  const cols: [string, (l: LayerStat) => string, 'l' | 'r'][] = [['layer', (l) => l.name, 'l']];
  if (has('kind')) cols.push(['kind', (l) => l.kind ?? '', 'l']);
  if (has('shape')) cols.push(['shape', (l) => l.shape?.join('×') ?? '', 'l']);
  cols.push(['time', (l) => `${l.ms.toFixed(1)} ms`, 'r'], ['bytes before', (l) => bytes(l.bytes_before), 'r'], ['bytes after', (l) => bytes(l.bytes_after), 'r']);
  if (has('objective')) cols.push(['objective', (l) => (l.objective === undefined ? '' : l.objective.toPrecision(4)), 'r']);
  if (has('sparsity')) cols.push(['sparsity', (l) => (l.sparsity === undefined ? '' : percent(l.sparsity, 1)), 'r']);
  for (const k of extraKeys) cols.push([k, (l) => extraCell(l.extra?.[k]), 'r']);
  const table = mdTable(cols.map((c) => c[0]), p.layers.map((l) => cols.map((c) => c[1](l))), cols.map((c) => c[2]));
  return collapsible(`passes[${index}] ${p.id}: ${p.layers.length} layers`, table, p.layers.length > FOLD_ROWS);
}

function extraCell(v: number | string | undefined): string {
  if (v === undefined) return '';
  return typeof v === 'number' ? String(+v.toPrecision(5)) : v;
}

function seconds(ms: number): string {
  return ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
