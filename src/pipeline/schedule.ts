import { UserError } from '../errors.js';
import { layerBlockIndex } from '../model/blocks.js';
import type { Model } from '../model/model.js';
import type { ConfiguredPass } from '../pass/pass.js';
import { SCHEDULE_DISTILL_PASS, type PassEntry, type Stage } from '../recipe/schema.js';
import { selectTargets, type RunnableRecipe } from './plan.js';

/**
 * A recipe's schedules expanded into plain passes (TQCompressed's schedule): an entry with
 * `schedule: { blocks_per_stage: k, distill: {...} }` whose targets select layers in decoder blocks
 * b_1 < … < b_n becomes, for each run of k blocks in order,
 *   the pass on the selected layers of those blocks  →  distill.kd on every linear layer of b_1 … b_n
 * so each stage is factored on the model the previous stages (and their distillation) left, and
 * calibrated on it. The stages are ordinary passes to the runner: a recipe that writes them out by
 * hand runs the same passes with the same seeds and writes the same bytes.
 */
export function expandSchedules(model: Model, recipe: RunnableRecipe): RunnableRecipe {
  if (!recipe.recipe.passes.some((entry) => entry.schedule)) return recipe;
  const passes = recipe.recipe.passes.flatMap((entry, i) => (entry.schedule ? stagesOf(model, recipe, i) : [entry]));
  return { ...recipe, recipe: { ...recipe.recipe, passes } };
}

function stagesOf(model: Model, recipe: RunnableRecipe, index: number): PassEntry<ConfiguredPass>[] {
  const { schedule, ...entry } = recipe.recipe.passes[index]!;
  const where = `${recipe.path}: passes[${index}].schedule`;
  if (entry.parsed.graphWide) throw new UserError(`${where}: ${entry.pass} rewrites the whole graph and selects no layers, so there are no blocks to stage; remove schedule`);
  const layers = selectTargets(model, recipe, index);
  const outside = layers.find((l) => layerBlockIndex(l.name) === undefined);
  if (outside) throw new UserError(`${where}: targets select '${outside.name}', which is in no decoder block (stages are runs of blocks); add it to ignore, or give it a pass of its own`);
  const blocks = [...new Set(layers.map((l) => layerBlockIndex(l.name)!))].sort((a, b) => a - b);
  const k = schedule!.blocks_per_stage;
  const runs = Array.from({ length: Math.ceil(blocks.length / k) }, (_, s) => blocks.slice(s * k, (s + 1) * k));
  return runs.flatMap((stageBlocks, s) => {
    const stage = (role: Stage['role'], of: number[]): Stage => ({ entry: index, index: s + 1, count: runs.length, blocks: of, role });
    const distill = schedule!.distill;
    return [
      { ...entry, stage: stage('pass', stageBlocks) },
      // a factored layer is new layers with new names, so the distillation selects by block: every linear of the scheduled blocks
      { pass: SCHEDULE_DISTILL_PASS, targets: ['*'], ignore: [], params: distill.params, parsed: distill.parsed, stage: stage('distill', blocks) },
    ];
  });
}
