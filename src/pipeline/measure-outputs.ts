import type { Fidelity } from '../eval/fidelity.js';
import { loadDataset, loadProgressText } from '../data/load.js';
import { checkpointFacts, evaluate, type CheckpointFacts, type EvalOptions, type Measure } from '../eval/evaluate.js';
import type { BuildOptions } from '../model/builders/index.js';
import { Checkpoint } from '../model/checkpoint.js';
import { runtimeWarnings } from '../report/eval-report.js';
import { assertWrittenLoads } from '../runtime/load-check.js';
import { runtimesFor } from '../runtime/session.js';
import { sha256Bytes, sha256File } from '../util/hash.js';
import type { CompressRun } from './compress-run.js';
import type { Progress } from './progress.js';

/** The written outputs of a compress run, loaded back once each, then evaluated against the original or sized (compress.ts). */

export interface MeasuredOutput {
  facts: CheckpointFacts;
  /** the model as one ONNX file, for evaluation */
  onnx?: string;
}

/**
 * Each written model (a folder's: one per dtype) loaded once for its hash, size, IO and (with
 * `onnxFile`) ONNX form, named by its final path; an ONNX one must load in ONNX Runtime.
 */
export async function measureWritten(models: readonly { staged: string; files: string[]; path: string }[], build: BuildOptions | undefined, onnxFile?: (i: number) => string): Promise<MeasuredOutput[]> {
  const measured: MeasuredOutput[] = [];
  for (const [i, m] of models.entries()) {
    const compressed = Checkpoint.open(m.staged, build);
    try {
      if (compressed.format === 'onnx') await assertWrittenLoads(compressed.model, m.path);
      measured.push({ facts: { ...(await checkpointFacts(compressed, m.files)), path: m.path }, onnx: onnxFile ? compressed.onnxPath(() => onnxFile(i)) : undefined });
    } finally {
      compressed.close();
    }
  }
  return measured;
}

/**
 * The recipe's eval on each measured output against the original (`reference`, and its ONNX form
 * when the recipe compares with it), or without eval both sizes; each output's measure in order.
 * `variants` names a folder's dtypes, for progress.
 */
export async function evaluateOutputs(
  run: CompressRun,
  measured: readonly MeasuredOutput[],
  variants: readonly string[] | undefined,
  reference: CheckpointFacts | undefined,
  referenceOnnx: string | undefined,
  threads: number,
  progress: Progress,
): Promise<{ measure: Measure; fidelity?: Fidelity }[]> {
  const { recipe } = run;
  const evalSpec = recipe.recipe.eval;
  const measures: { measure: Measure; fidelity?: Fidelity }[] = [];
  if (evalSpec) {
    const te = performance.now();
    progress.stage('evaluating original and compressed models');
    const data = await loadDataset(evalSpec.data, recipe.dir, { onProgress: (p) => progress.stage(`loading evaluation data: ${loadProgressText(p)}`) });
    run.dataDescription = { description: data.description, files: data.files, ...(data.classes ? { classes: data.classes } : {}) };
    const latency = evalSpec.latency ? { runs: evalSpec.latency.runs, warmup: evalSpec.latency.warmup } : false;
    const evalOpts: EvalOptions = { threads: evalSpec.latency?.threads ?? threads, latency, dataPath: recipe.path, runtimes: runtimesFor(evalSpec.runtime, `${recipe.path}: eval.runtime`), task: evalSpec.task, dataRange: evalSpec.data_range };
    for (const [i, m] of measured.entries()) {
      if (variants && measured.length > 1) progress.stage(`evaluating ${variants[i]} and the original`);
      const ev = await evaluate({ ...m.facts, onnx: m.onnx! }, data, evalOpts, referenceOnnx ? { ...reference!, onnx: referenceOnnx } : undefined);
      run.evaluation ??= ev;
      run.warnings.push(...runtimeWarnings(ev.runtimes));
      measures.push({ measure: ev.model, fidelity: ev.fidelity });
    }
    run.timings.eval_ms = performance.now() - te;
  } else {
    // without eval the report still gives both sizes (evaluate passes them on when there is one)
    run.sizes = { reference: sizeMeasure(reference!), model: sizeMeasure(measured[0]!.facts) };
    measures.push(...measured.map((m) => ({ measure: sizeMeasure(m.facts) })));
  }
  return measures;
}

/** A folder's hash: sha256 of its `sha256sum`-style listing (file hash, two spaces, path relative to the folder; sorted by path), over the staged files. */
export function folderSha256(moves: readonly { from: string; to: string; rel: string }[]): string {
  const lines = [...moves].sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0)).map((m) => `${sha256File(m.from)}  ${m.rel}\n`);
  return sha256Bytes(lines.join(''));
}

export function sizeMeasure(facts: CheckpointFacts): Measure {
  return { path: facts.path, sha256: facts.sha256, size: facts.size };
}
