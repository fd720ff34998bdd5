import type { Checkpoint } from '../model/checkpoint.js';
import { canonicalJson } from '../util/canonical-json.js';
import { sha256Bytes } from '../util/hash.js';
import { VERSION } from '../version.js';
import type { RunnableRecipe } from './plan.js';

/**
 * What identifies the model a checkpoint holds: its file's sha256, and for a safetensors checkpoint
 * also its config.json and how the graph is built (they shape the graph the weights go into).
 */
export function modelIdentity(checkpoint: Checkpoint): string {
  if (!checkpoint.safetensors) return checkpoint.sha256;
  return sha256Bytes(canonicalJson({ weights: checkpoint.sha256, config: sha256Bytes(checkpoint.safetensors.config.bytes), build: checkpoint.buildOptions }));
}

/**
 * The cache scope of pass `index`'s calibration statistics: everything the model as that pass
 * finds it, and the calibration samples, depend on. The input model (modelIdentity); the passes before it
 * (ids, targets, ignore, params with defaults), with the seed when there are any (a pass may
 * sample); the calibration data spec, the sha256 of every file it read, samples, seq_len and hessian_precision; and
 * the pare version. The calibrator adds its mode and each entry's tensor and statistic.
 */
export function calibrationScope(model: string, recipe: RunnableRecipe, index: number, seed: number, dataFiles: readonly { sha256: string }[]): string {
  const cal = recipe.recipe.calibration;
  const prefix = recipe.recipe.passes.slice(0, index).map((p) => ({ pass: p.pass, targets: p.targets, ignore: p.ignore, params: p.params }));
  return sha256Bytes(
    canonicalJson({
      pare: VERSION,
      model,
      calibration: cal && { data: cal.data, files: dataFiles.map((f) => f.sha256).sort(), samples: cal.samples, seq_len: cal.seq_len, hessian_precision: cal.hessian_precision },
      prefix,
      seed: prefix.length ? seed : undefined,
    }),
  );
}
