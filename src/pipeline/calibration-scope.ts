import { canonicalJson } from '../util/canonical-json.js';
import { sha256Bytes } from '../util/hash.js';
import { VERSION } from '../version.js';
import type { RunnableRecipe } from './plan.js';

/**
 * The cache scope of pass `index`'s calibration statistics: everything the model as that pass
 * finds it, and the calibration samples, depend on. The input model's sha256; the passes before it
 * (ids, targets, ignore, params with defaults), with the seed when there are any (a pass may
 * sample); the calibration data spec, the sha256 of every file it read, samples and seq_len; and
 * the pare version. The calibrator adds its mode and each entry's tensor and statistic.
 */
export function calibrationScope(modelSha256: string, recipe: RunnableRecipe, index: number, seed: number, dataFiles: readonly { sha256: string }[]): string {
  const cal = recipe.recipe.calibration;
  const prefix = recipe.recipe.passes.slice(0, index).map((p) => ({ pass: p.pass, targets: p.targets, ignore: p.ignore, params: p.params }));
  return sha256Bytes(
    canonicalJson({
      pare: VERSION,
      model: modelSha256,
      calibration: cal && { data: cal.data, files: dataFiles.map((f) => f.sha256).sort(), samples: cal.samples, seq_len: cal.seq_len },
      prefix,
      seed: prefix.length ? seed : undefined,
    }),
  );
}
