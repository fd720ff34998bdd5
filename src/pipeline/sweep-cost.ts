import type { RunnableRecipe } from './plan.js';

/**
 * A sweep point's expected cost, in rough units of one pass over the model's layers, for balancing
 * shards. Measured shape on stories260K: a pass without statistics takes about as long as one
 * forward of 32 calibration samples, and one distillation step of 512 tokens about as long as a
 * pass; evaluation runs the original and the compressed model.
 *
 *   1 per pass
 *   + samples / 32 for a pass that reads calibration statistics
 *   + steps · batch_size · seq_len / 512 for distill.kd (tokens trained / 512), a schedule's stages included (the caller expands them)
 *   + 2 when the recipe evaluates
 */
export function pointCost(recipe: RunnableRecipe): number {
  const r = recipe.recipe;
  let cost = r.eval ? 2 : 0;
  for (const entry of r.passes) {
    cost += 1;
    const need = entry.parsed.calibration.need;
    if (r.calibration && (need === 'required' || need === 'optional')) cost += r.calibration.samples / 32;
    if (entry.pass === 'distill.kd') {
      const p = entry.params as { steps?: number; batch_size?: number; seq_len?: number };
      cost += ((p.steps ?? 0) * (p.batch_size ?? 0) * (p.seq_len ?? 0)) / 512;
    }
  }
  return cost;
}
