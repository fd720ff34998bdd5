import { bytes, percent } from '../format.js';
import type { LayerStat, PassReport } from '../schema.js';
import { esc, px } from './page.js';
import { autoScale, linearScale, type Scale } from './scale.js';

/**
 * One pass's layers as horizontal bars, a `g.layer` row per layer in three panels: sparsity (or
 * bits per weight when the pass did not prune), the pass's objective (its layer error), and bytes
 * before (light) and after (dark).
 */

const NAME_W = 250;
const PANEL_W = 210;
/** bars stop short of the panel's end, leaving room for their value */
const BAR_W = PANEL_W - 48;
const GAP = 18;
const ROW = 16;
const HEAD = 22;

/** Stored bits per weight element after the pass (scales included); undefined without a shape. */
function bitsAfter(l: LayerStat): number | undefined {
  const n = l.shape ? l.shape.reduce((a, b) => a * b, 1) : 0;
  return n > 0 ? (l.bytes_after * 8) / n : undefined;
}

interface Panel {
  title: string;
  scale: Scale;
  value(l: LayerStat): number | undefined;
  text(v: number): string;
  cls: string;
}

export function layerChart(pass: PassReport, caption: string): string {
  const layers = pass.layers;
  const pruned = layers.some((l) => l.sparsity !== undefined);
  const first: Panel = pruned
    ? { title: 'sparsity', scale: linearScale([0, 1], [0, BAR_W], 4), value: (l) => l.sparsity, text: (v) => percent(v, 1), cls: 'value' }
    : {
        title: 'bits per weight',
        scale: linearScale([0, Math.max(32, ...layers.map((l) => bitsAfter(l) ?? 0))], [0, BAR_W], 4),
        value: bitsAfter,
        text: (v) => v.toFixed(2),
        cls: 'value',
      };
  const objectives = layers.map((l) => l.objective).filter((v): v is number => v !== undefined && Number.isFinite(v));
  const positive = objectives.filter((v) => v > 0);
  // a log axis starts a third below the smallest value, so every layer's bar shows
  const objScale = positive.length ? autoScale([Math.min(...positive) / 3, Math.max(...positive)], [0, BAR_W]) : linearScale([0, 1], [0, BAR_W]);
  // a linear axis starts at 0
  const objective = objScale.log || !positive.length ? objScale : linearScale([0, Math.max(...positive)], [0, BAR_W], 3);
  const panels: Panel[] = [first];
  if (objectives.length) panels.push({ title: `objective (layer error${objective.log ? ', log scale' : ''})`, scale: objective, value: (l) => l.objective, text: (v) => v.toPrecision(3), cls: 'objective' });
  const maxBytes = Math.max(1, ...layers.flatMap((l) => [l.bytes_before, l.bytes_after]));
  const bytesScale = linearScale([0, maxBytes], [0, PANEL_W], 3);

  const width = NAME_W + (panels.length + 1) * (PANEL_W + GAP);
  const height = HEAD + layers.length * ROW + 6;
  const x0 = (k: number) => NAME_W + k * (PANEL_W + GAP);
  const out: string[] = [];
  out.push(`<svg class="chart layers" data-layers="${layers.length}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${esc(caption)}">`);
  for (const [k, p] of [...panels, { title: 'bytes before → after' } as Panel].entries()) out.push(`<text x="${px(x0(k))}" y="14" class="muted">${esc(p.title)}</text>`);
  for (const [i, l] of layers.entries()) {
    const y = HEAD + i * ROW;
    const row: string[] = [`<g class="layer" data-layer="${esc(l.name)}" transform="translate(0 ${y})">`];
    row.push(`<text x="${NAME_W - 8}" y="11" text-anchor="end">${esc(l.name)}</text>`);
    for (const [k, p] of panels.entries()) {
      const v = p.value(l);
      row.push(`<rect class="track" x="${px(x0(k))}" y="2" width="${PANEL_W}" height="${ROW - 4}"/>`);
      const w = v === undefined || !Number.isFinite(v) ? 0 : Math.max(0, Math.min(BAR_W, p.scale(v)));
      row.push(`<rect class="bar ${p.cls}" x="${px(x0(k))}" y="2" width="${px(w)}" height="${ROW - 4}"><title>${esc(`${l.name}: ${p.title} ${v === undefined ? '–' : p.text(v)}`)}</title></rect>`);
      if (v !== undefined) row.push(`<text x="${px(x0(k) + w + 4)}" y="11" class="muted">${esc(p.text(v))}</text>`);
    }
    const k = panels.length;
    const title = `${l.name}: ${bytes(l.bytes_before)} → ${bytes(l.bytes_after)}`;
    row.push(`<rect class="bar before" x="${px(x0(k))}" y="2" width="${px(bytesScale(l.bytes_before))}" height="${ROW - 4}"><title>${esc(title)}</title></rect>`);
    row.push(`<rect class="bar after" x="${px(x0(k))}" y="5" width="${px(bytesScale(l.bytes_after))}" height="${ROW - 10}"><title>${esc(title)}</title></rect>`);
    row.push('</g>');
    out.push(row.join(''));
  }
  out.push('</svg>');
  return out.join('');
}
