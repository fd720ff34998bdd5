import type { PassEntry } from './schema.js';

/** Where a pass of a recipe whose schedules were expanded (pipeline/schedule.ts) was written in the recipe file. */

/** `passes[3]`, or for a stage where it came from: `passes[0] stage 2/5 (blocks 1)`, `passes[0].schedule.distill after stage 2/5`. */
export function entryWhere(entry: Pick<PassEntry, 'stage'>, index: number): string {
  const s = entry.stage;
  if (!s) return `passes[${index}]`;
  return s.role === 'pass' ? `passes[${s.entry}] stage ${s.index}/${s.count} (blocks ${s.blocks.join(', ')})` : `passes[${s.entry}].schedule.distill after stage ${s.index}/${s.count}`;
}

/** Where in the recipe file a param of the (expanded) pass `index` was written. */
export function paramPath(entry: Pick<PassEntry, 'stage'>, index: number, param: string): (string | number)[] {
  const s = entry.stage;
  if (!s) return ['passes', index, 'params', param];
  return s.role === 'pass' ? ['passes', s.entry, 'params', param] : ['passes', s.entry, 'schedule', 'distill', param];
}
