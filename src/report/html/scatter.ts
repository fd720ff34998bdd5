import { esc, px } from './page.js';
import { autoScale, bytesScale, padded } from './scale.js';

/** One model in the size-against-quality chart. */
export interface ScatterMark {
  id: string;
  /** shown beside front points */
  label: string;
  size: number;
  quality?: number;
  /** extra classes: `pareto`, `base` (the other sweep of a diff), `fails` (a budget failed) */
  classes: string[];
  /** hover text */
  title: string;
}

export interface ScatterOptions {
  sizeLabel: string;
  /** undefined: no quality was measured, marks sit on one line */
  qualityLabel?: string;
  /** the front, in the order to connect */
  front: ScatterMark[];
  reference?: { size: number; quality?: number; title: string };
}

const W = 760;
const H = 400;
const M = { left: 70, right: 150, top: 16, bottom: 46 };

function shortNumber(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : String(+v.toPrecision(3));
}

/**
 * Size (x) against quality (y) as inline SVG: one `circle.point` per mark, the Pareto front as a
 * dashed line through its points, the reference as a ring. Quality uses a log axis when it spans
 * more than 8×.
 */
export function scatterChart(marks: readonly ScatterMark[], opts: ScatterOptions): string {
  const all = [...marks, ...(opts.reference ? [{ size: opts.reference.size, quality: opts.reference.quality }] : [])];
  const x = bytesScale(padded(Math.min(...all.map((m) => m.size)), Math.max(...all.map((m) => m.size))), [M.left, W - M.right]);
  const qualities = all.map((m) => m.quality).filter((q): q is number => q !== undefined);
  const y = autoScale(qualities.length ? qualities : [0, 1], [H - M.bottom, M.top], { pad: true });
  const yOf = (q: number | undefined) => (q === undefined || !opts.qualityLabel ? (H - M.bottom + M.top) / 2 : y(q));
  const out: string[] = [];
  out.push(`<svg class="chart scatter" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(`${opts.sizeLabel} against ${opts.qualityLabel ?? 'nothing'}`)}">`);
  // grid and axes
  out.push('<g class="grid">');
  for (const t of x.ticks) out.push(`<line x1="${px(x(t))}" x2="${px(x(t))}" y1="${M.top}" y2="${H - M.bottom}"/>`);
  if (opts.qualityLabel) for (const t of y.ticks) out.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${px(y(t))}" y2="${px(y(t))}"/>`);
  out.push('</g><g class="axis">');
  out.push(`<path d="M${M.left},${M.top}V${H - M.bottom}H${W - M.right}"/>`);
  for (const t of x.ticks) out.push(`<line x1="${px(x(t))}" x2="${px(x(t))}" y1="${H - M.bottom}" y2="${H - M.bottom + 4}"/><text x="${px(x(t))}" y="${H - M.bottom + 16}" text-anchor="middle" class="muted">${esc(x.label(t))}</text>`);
  if (opts.qualityLabel) for (const t of y.ticks) out.push(`<line x1="${M.left - 4}" x2="${M.left}" y1="${px(y(t))}" y2="${px(y(t))}"/><text x="${M.left - 7}" y="${px(y(t) + 4)}" text-anchor="end" class="muted">${esc(shortNumber(t))}</text>`);
  out.push('</g>');
  out.push(`<text x="${px((M.left + W - M.right) / 2)}" y="${H - 8}" text-anchor="middle">${esc(opts.sizeLabel)}</text>`);
  if (opts.qualityLabel) out.push(`<text transform="translate(16 ${px((M.top + H - M.bottom) / 2)}) rotate(-90)" text-anchor="middle">${esc(opts.qualityLabel)}${y.log ? ' (log scale)' : ''}</text>`);
  // the front, then the marks on top of it
  if (opts.front.length > 1) out.push(`<polyline class="front" points="${opts.front.map((m) => `${px(x(m.size))},${px(yOf(m.quality))}`).join(' ')}"/>`);
  if (opts.reference) {
    const r = opts.reference;
    out.push(`<circle class="reference" cx="${px(x(r.size))}" cy="${px(yOf(r.quality))}" r="7"><title>${esc(r.title)}</title></circle>`);
  }
  for (const m of marks) {
    out.push(`<circle class="${['point', ...m.classes].join(' ')}" data-id="${esc(m.id)}" cx="${px(x(m.size))}" cy="${px(yOf(m.quality))}" r="5.5"><title>${esc(m.title)}</title></circle>`);
  }
  for (const m of opts.front) out.push(`<text x="${px(x(m.size) + 9)}" y="${px(yOf(m.quality) + 4)}" class="label">${esc(m.label)}</text>`);
  out.push('</svg>');
  return out.join('');
}
