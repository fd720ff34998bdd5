import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Dataset } from '../data/types.js';
import { formatOf, loadModel } from '../model/load.js';
import { writeOnnx } from '../model/onnx-io.js';
import { newReport, type Report } from './schema.js';
import { sha256File } from '../util/hash.js';
import { evaluate, type EvalOptions } from '../eval/evaluate.js';

/**
 * `pare eval` as data: measures `model` (and `reference`) on `data` and returns the report.
 * A safetensors checkpoint is built into a temporary ONNX file first, since ONNX Runtime runs ONNX.
 */
export async function evalReport(modelPath: string, data: Dataset, opts: EvalOptions, referencePath?: string): Promise<Report> {
  const t0 = performance.now();
  const scratch: string[] = [];
  const asOnnx = (path: string): string => {
    if (formatOf(path) === 'onnx') return path;
    const dir = mkdtempSync(join(tmpdir(), 'pare-eval-'));
    scratch.push(dir);
    const out = join(dir, 'model.onnx');
    const m = loadModel(path);
    writeOnnx(m, out);
    m.close();
    return out;
  };
  try {
    const ev = await evaluate(asOnnx(modelPath), data, opts, referencePath ? asOnnx(referencePath) : undefined);
    const relabel = <T extends { path: string; sha256: string }>(m: T, path: string): T => ({ ...m, path, sha256: sha256File(path) });
    return newReport({
      kind: 'eval',
      input: { path: modelPath, sha256: sha256File(modelPath), format: formatOf(modelPath) },
      data: { description: data.description, files: data.files },
      passes: [],
      measurements: { model: relabel(ev.model, modelPath), reference: ev.reference && referencePath ? relabel(ev.reference, referencePath) : undefined },
      fidelity: ev.fidelity,
      warnings: [],
      timings: { total_ms: performance.now() - t0, eval_ms: performance.now() - t0 },
    });
  } finally {
    for (const d of scratch) rmSync(d, { recursive: true, force: true });
  }
}
