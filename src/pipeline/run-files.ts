import { statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { specFiles } from '../data/spec-files.js';
import type { Checkpoint } from '../model/checkpoint.js';
import type { Report } from '../report/schema.js';
import type { PlannedInput, PlannedOutput, SpaceNeed } from '../util/output-plan.js';
import type { PlannedPass, RunnableRecipe } from './plan.js';

/**
 * What a compress run reads and writes, for its output plan (src/util/output-plan.ts): the files
 * it reads (recipe, datasets, a teacher; the checkpoint's own files once it is open), the files it
 * writes (the model and what goes beside it, report files, the work folder) and about how many
 * bytes those take.
 */

/** A file rendered from the run's report and written with the model (`--report`; later `--report-html`). */
export interface ReportFile {
  path: string;
  /** for messages: "the report (--report)" */
  what: string;
  render(report: Report): string | Uint8Array;
}

export const WORK_FOLDER = '.pare-work';

/** The recipe and every file it names: datasets of calibration, eval and pass params (a teacher). */
export function recipeInputs(recipe: RunnableRecipe): PlannedInput[] {
  const at = (p: string) => (isAbsolute(p) ? p : resolve(recipe.dir, p));
  const r = recipe.recipe;
  const data = (section: string, spec: Parameters<typeof specFiles>[0] | undefined) =>
    spec ? specFiles(spec).map((f) => ({ path: at(f.path), what: `${section}.data.${f.field} of the recipe`, mustExist: true })) : [];
  return [
    { path: recipe.path, what: 'the recipe' },
    ...data('calibration', r.calibration?.data),
    ...data('eval', r.eval?.data),
    ...r.passes.flatMap((entry, i) => entry.parsed.inputFiles().map((f) => ({ path: at(f.path), what: `passes[${i}].params.${f.param} of the recipe`, mustExist: true }))),
    ...r.passes.flatMap((entry, i) =>
      (entry.schedule?.distill.parsed.inputFiles() ?? []).map((f) => ({ path: at(f.path), what: `passes[${i}].schedule.distill.${f.param} of the recipe`, mustExist: true })),
    ),
  ];
}

/** The checkpoint's own files: the model, its external data or its config.json. */
export function checkpointInputs(checkpoint: Checkpoint, role = 'the input model'): PlannedInput[] {
  return checkpoint.files().map((f) => ({ path: f.path, what: f.role === 'model' ? role : `${f.role === 'config' ? 'the config.json' : 'external data'} of ${role}` }));
}

/** The model file and what is written beside it, the report files, and the work folder. */
export function compressOutputs(output: string, format: 'onnx' | 'safetensors' | 'folder', reports: readonly { path: string; what: string }[]): PlannedOutput[] {
  if (format === 'folder') {
    // the folder is the output; its work folder sits beside it, as a file output's does
    const dir = output.replace(/[\\/]+$/, '');
    return [{ path: dir, what: 'the model folder (-o)', folder: true }, ...reports, { path: join(dirname(dir), WORK_FOLDER), what: "pare's work folder", folder: true }];
  }
  const beside =
    format === 'onnx'
      ? { path: `${output}.data`, what: 'the external data of the output model' }
      : { path: join(dirname(output), 'config.json'), what: 'the config.json of the output model' };
  return [{ path: output, what: 'the output model (-o)' }, beside, ...reports, { path: join(dirname(output), WORK_FOLDER), what: "pare's work folder", folder: true }];
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/**
 * About what the run writes beside the output: the model, estimated as the input less what the
 * plan expects each targeted layer to lose (its smallest estimate over the passes that target it),
 * plus, with more than one pass, a checkpoint of the model between passes in the work folder.
 */
export function spaceNeeds(input: Checkpoint, plan: readonly PlannedPass[], output: string): SpaceNeed[] {
  const inputBytes = input.files().reduce((sum, f) => sum + fileSize(f.path), 0);
  const layers = new Map<string, { before: number; after: number }>();
  for (const p of plan) {
    for (const l of p.layers) {
      const seen = layers.get(l.name);
      layers.set(l.name, { before: seen?.before ?? l.bytes_before, after: Math.min(seen?.after ?? Infinity, l.bytes_after) });
    }
  }
  let saved = 0;
  for (const l of layers.values()) saved += Math.max(0, l.before - l.after);
  const needs: SpaceNeed[] = [{ path: output, bytes: Math.max(0, inputBytes - saved), what: basename(output) }];
  if (plan.length > 1) needs.push({ path: join(dirname(output), WORK_FOLDER, 'checkpoint'), bytes: inputBytes, what: 'a checkpoint between passes' });
  return needs;
}
