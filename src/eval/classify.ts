import type { TensorDataset } from '../data/types.js';
import { UserError } from '../errors.js';
import { floatOutput, type RuntimeSession } from '../runtime/session.js';
import { FidelityAccumulator, type Fidelity } from './fidelity.js';
import { tensorBatches, type TensorInput } from './tensor-batches.js';

export interface ClassificationQuality {
  task: 'classification';
  top1: number;
  top5: number;
  samples: number;
}

export type ClassifierInput = TensorInput;

/** Top-1/top-5 accuracy, batching where the model's batch axis is symbolic. */
export async function evaluateClassifier(
  session: RuntimeSession,
  data: TensorDataset,
  io: ClassifierInput,
  reference?: RuntimeSession,
): Promise<{ quality?: ClassificationQuality; fidelity?: Fidelity }> {
  let top1 = 0;
  let top5 = 0;
  const fidelity = reference ? new FidelityAccumulator() : undefined;
  let classes = 0;
  for (const { start, n, feeds } of tensorBatches(data, io)) {
    const where = io.dataPath ?? 'model';
    const out = floatOutput((await session.run(feeds, [io.outputName]))[io.outputName]!, io.outputName, where);
    classes = out.length / n;
    const ref = reference ? floatOutput((await reference.run(feeds, [io.outputName]))[io.outputName]!, io.outputName, where) : undefined;
    for (let k = 0; k < n; k++) {
      const row = asLogits(out.subarray(k * classes, (k + 1) * classes));
      if (fidelity && ref) fidelity.add(asLogits(ref.subarray(k * classes, (k + 1) * classes)), row);
      if (!data.labels) continue;
      const label = data.labels[start + k];
      if (label < 0 || label >= classes) {
        throw new UserError(`${labelsPath(data) ?? 'labels'}: label ${label} of sample ${start + k} is outside the model's ${classes} classes (field labels)`);
      }
      const rank = rankOf(row, label);
      if (rank === 0) top1++;
      if (rank < 5) top5++;
    }
  }
  const quality = data.labels ? { task: 'classification' as const, top1: top1 / data.count, top5: top5 / data.count, samples: data.count } : undefined;
  return { quality, fidelity: fidelity?.result() };
}

/** How many classes score strictly higher than `label` (ties go to the label). */
function rankOf(row: Float32Array, label: number): number {
  let r = 0;
  for (let i = 0; i < row.length; i++) if (row[i] > row[label]) r++;
  return r;
}

/** Softmax outputs (non-negative, summing to 1) become log-probabilities so KL and cosine compare like with like. */
function asLogits(row: Float32Array): Float32Array {
  let sum = 0;
  let min = Infinity;
  for (let i = 0; i < row.length; i++) {
    sum += row[i];
    if (row[i] < min) min = row[i];
  }
  if (min < 0 || Math.abs(sum - 1) > 1e-3) return row;
  return row.map((p) => Math.log(Math.max(p, 1e-30)));
}

function labelsPath(data: TensorDataset): string | undefined {
  return data.files.find((f) => /label/i.test(f.path))?.path ?? data.files[1]?.path;
}
