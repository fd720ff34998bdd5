import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Dataset } from '../data/types.js';
import type { BuildOptions } from '../model/builders/index.js';
import { Checkpoint } from '../model/checkpoint.js';
import { newReport, type Report } from './schema.js';
import { checkpointFacts, evaluate, type EvalOptions, type EvalSubject, type RuntimeEvaluation } from '../eval/evaluate.js';

/**
 * `pare eval` as data: measures `model` (and `reference`) on `data` and returns the report. Each
 * checkpoint is loaded once, measured, given the ONNX file ONNX Runtime runs (a safetensors
 * checkpoint's ONNX form, built with `opts.build`, goes to a temporary folder) and closed before the
 * sessions start.
 */
export async function evalReport(
  modelPath: string,
  data: Dataset,
  opts: EvalOptions & { build?: BuildOptions },
  referencePath?: string,
  /** called with each checkpoint's files once it is open (its external data, config.json), before any measurement */
  onOpened?: (files: { path: string; role: string }[], which: 'model' | 'reference') => void,
): Promise<Report> {
  const t0 = performance.now();
  const scratch: string[] = [];
  const subject = async (path: string, which: 'model' | 'reference'): Promise<EvalSubject & { format: Checkpoint['format'] }> => {
    const checkpoint = Checkpoint.open(path, opts.build);
    try {
      onOpened?.(checkpoint.files(), which);
      const onnx = checkpoint.onnxPath(() => {
        const dir = mkdtempSync(join(tmpdir(), 'pare-eval-'));
        scratch.push(dir);
        return join(dir, 'model.onnx');
      });
      return { ...(await checkpointFacts(checkpoint)), onnx, format: checkpoint.format };
    } finally {
      checkpoint.close();
    }
  };
  try {
    const model = await subject(modelPath, 'model');
    const reference = referencePath ? await subject(referencePath, 'reference') : undefined;
    const ev = await evaluate(model, data, opts, reference);
    return newReport({
      kind: 'eval',
      input: { path: model.path, sha256: model.sha256, format: model.format },
      data: { description: data.description, files: data.files, ...(data.classes ? { classes: data.classes } : {}) },
      passes: [],
      measurements: { model: ev.model, reference: ev.reference },
      fidelity: ev.fidelity,
      ...(ev.runtimes ? { runtimes: ev.runtimes } : {}),
      warnings: [...ev.warnings, ...runtimeWarnings(ev.runtimes)],
      timings: { total_ms: performance.now() - t0, eval_ms: performance.now() - t0 },
    });
  } finally {
    for (const d of scratch) rmSync(d, { recursive: true, force: true });
  }
}

/** A runtime that could not run a model, as a warning line: the report's runtimes section holds the details. */
export function runtimeWarnings(runtimes: RuntimeEvaluation[] | undefined): string[] {
  return (runtimes ?? []).flatMap((r) => (r.error ? [`${r.runtime} cannot run ${r.error.path}${r.error.op ? `: operator ${r.error.op}${r.error.node ? ` (node '${r.error.node}')` : ''}` : ''} (${r.error.message})`] : []));
}
