import { byteLength, DataType } from '../model/dtype.js';
import { linears, type LinearLayer } from '../model/linears.js';
import { matMulNBitsLayers } from '../model/nbits-layers.js';
import type { Model } from '../model/model.js';
import type { ConfiguredPass } from '../pass/pass.js';
import { type LoadedRecipe, recipeErrorAt } from '../recipe/parse.js';
import type { PassEntry, Stage } from '../recipe/schema.js';
import { selectLayers, selectLayersOrThrow } from '../recipe/targets.js';
import { qoperatorOp } from '../model/quantized-layers.js';
import { UserError } from '../errors.js';
import { layerBlockIndex } from '../model/blocks.js';
import { entryWhere, paramPath } from '../recipe/stage-path.js';
import { trainableInitializers } from '../distill/trainable.js';

/** Which layers a pass touches and what they weigh before and (by the pass's estimate) after. */
export interface PlannedLayer {
  name: string;
  kind: string;
  shape: [number, number];
  bytes_before: number;
  bytes_after: number;
}

export interface PlannedPass {
  index: number;
  pass: string;
  targets: string[];
  ignore: string[];
  needs_calibration: boolean;
  /** the pass rewrites the graph as a whole and selects no layers */
  graph_wide: boolean;
  /** a stage of a schedule (pipeline/schedule.ts): the recipe entry it came from and its blocks */
  stage?: Stage;
  layers: PlannedLayer[];
}

export type RunnableRecipe = LoadedRecipe<ConfiguredPass>;

/** Layers of `model` the recipe's pass `index` selects; an empty selection is a user error naming its targets. A graph-wide pass selects none. */
export function selectTargets(model: Model, recipe: RunnableRecipe, index: number): LinearLayer[] {
  const entry: PassEntry<ConfiguredPass> = recipe.recipe.passes[index]!;
  if (entry.parsed.graphWide) return [];
  // a schedule's stage acts on its blocks only
  const inStage = (l: LinearLayer) => !entry.stage || entry.stage.blocks.includes(layerBlockIndex(l.name) ?? -1);
  const eligible = [...linears(model), ...(entry.parsed.selectsNBits ? matMulNBitsLayers(model) : [])].filter((l) => entry.parsed.eligible(l) && inStage(l));
  const where = entryWhere(entry, index);
  const candidates = eligible.map((l) => l.name);
  if (selectLayers(candidates, entry.targets, entry.ignore).length === 0) {
    const op = qoperatorOp(model);
    if (op) throw new UserError(`${recipe.path}: ${where} (${entry.pass}): the model is already quantized (${op}); use \`quantize.dequantize\` first`);
    // distillation of a model whose factored layers all run dense_at_load: no layer left, but factors to train
    if (entry.parsed.trainsStoredFactors && trainableInitializers(model, []).size > 0) return [];
  }
  const names = selectLayersOrThrow(`${recipe.path}: ${where}`, candidates, entry.targets, entry.ignore);
  const chosen = new Set(names);
  return eligible.filter((l) => chosen.has(l.name));
}

function weightBytes(model: Model, layer: LinearLayer): number {
  const t = model.graph.initializer?.find((i) => i.name === layer.weight);
  return byteLength(t?.data_type ?? DataType.FLOAT, layer.outFeatures * layer.inFeatures);
}

/** The plan `--dry-run` prints: every pass's layers on the input model, with expected sizes. */
export function planRecipe(model: Model, recipe: RunnableRecipe): PlannedPass[] {
  // after a pass that makes new layers of the whole graph (quantize.dequantize) the input model has no say: those passes are planned when they start
  const remade = recipe.recipe.passes.findIndex((entry) => entry.parsed.graphWide && entry.parsed.changesLayers);
  return recipe.recipe.passes.map((entry, index) => ({
    index,
    pass: entry.pass,
    targets: entry.targets,
    ignore: entry.ignore,
    needs_calibration: entry.parsed.calibration.need === 'required',
    graph_wide: entry.parsed.graphWide,
    ...(entry.stage ? { stage: entry.stage } : {}),
    layers: (remade >= 0 && index > remade ? [] : selectTargets(model, recipe, index)).map((l) => {
      const before = weightBytes(model, l);
      return { name: l.name, kind: l.kind, shape: [l.outFeatures, l.inFeatures], bytes_before: before, bytes_after: entry.parsed.estimateBytes(l, before) };
    }),
  }));
}

/**
 * How many passes, from the first, the input model can check: up to and including the first pass
 * that changes layers (the passes after it see other shapes, and are checked when they start).
 */
export function passesCheckedUpFront(recipe: RunnableRecipe): number {
  const first = recipe.recipe.passes.findIndex((entry) => entry.parsed.changesLayers);
  return first < 0 ? recipe.recipe.passes.length : first + 1;
}

/**
 * The model-dependent rules (pass-spec.ts, kind 3) of each selection's pass on the layers its
 * targets select on the model as it is. Throws one RecipeError that points every problem at its
 * param's line:col.
 */
export function checkLayers(recipe: RunnableRecipe, selections: readonly { index: number; layers: readonly LinearLayer[] }[]): void {
  const problems = selections.flatMap(({ index, layers }) =>
    recipe.recipe.passes[index]!.parsed.checkLayers(layers).map((p) => ({ path: paramPath(recipe.recipe.passes[index]!, index, p.param), at: 'value' as const, message: p.message })),
  );
  if (problems.length > 0) throw recipeErrorAt(recipe, problems);
}

/** checkLayers for every pass the input model can check (passesCheckedUpFront), before any pass runs. */
export function checkLayersUpFront(model: Model, recipe: RunnableRecipe): void {
  const indices = Array.from({ length: passesCheckedUpFront(recipe) }, (_, index) => index);
  checkLayers(recipe, indices.map((index) => ({ index, layers: selectTargets(model, recipe, index) })));
}
