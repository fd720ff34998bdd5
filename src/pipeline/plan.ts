import { byteLength, DataType } from '../model/dtype.js';
import { linears, type LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import type { Recipe } from '../recipe/schema.js';
import { selectLayersOrThrow } from '../recipe/targets.js';
import type { Pass } from '../pass/pass.js';
import { passById } from './registry.js';

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
  layers: PlannedLayer[];
}

/** Layers of `model` the recipe's pass `index` selects; an empty selection is a user error naming its targets. */
export function selectTargets(model: Model, recipe: Recipe, index: number, recipePath: string): { pass: Pass; layers: LinearLayer[] } {
  const entry = recipe.passes[index]!;
  const pass = passById(entry.pass);
  const eligible = linears(model).filter((l) => pass.eligible?.(l) ?? true);
  const names = selectLayersOrThrow(`${recipePath}: passes[${index}]`, eligible.map((l) => l.name), entry.targets, entry.ignore);
  const chosen = new Set(names);
  return { pass, layers: eligible.filter((l) => chosen.has(l.name)) };
}

function weightBytes(model: Model, layer: LinearLayer): number {
  const t = model.graph.initializer?.find((i) => i.name === layer.weight);
  return byteLength(t?.data_type ?? DataType.FLOAT, layer.outFeatures * layer.inFeatures);
}

/** The plan `--dry-run` prints: every pass's layers on the input model, with expected sizes. */
export function planRecipe(model: Model, recipe: Recipe, recipePath: string): PlannedPass[] {
  return recipe.passes.map((entry, index) => {
    const { pass, layers } = selectTargets(model, recipe, index, recipePath);
    return {
      index,
      pass: entry.pass,
      targets: entry.targets,
      ignore: entry.ignore,
      needs_calibration: pass.needsCalibration,
      layers: layers.map((l) => {
        const before = weightBytes(model, l);
        return {
          name: l.name,
          kind: l.kind,
          shape: [l.outFeatures, l.inFeatures],
          bytes_before: before,
          bytes_after: pass.estimateBytes?.(l, entry.params as never, before) ?? before,
        };
      }),
    };
  });
}
