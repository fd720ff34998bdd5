import type { TensorDataset } from '../data/types.js';
import { UserError } from '../errors.js';
import { ort } from '../runtime/ort.js';
import { FidelityAccumulator, type Fidelity } from './fidelity.js';

export interface ClassificationQuality {
  task: 'classification';
  top1: number;
  top5: number;
  samples: number;
}

export interface ClassifierInput {
  inputName: string;
  /** declared input dims; a symbolic dim is -1 */
  inputDims: number[];
  outputName: string;
  dataPath?: string;
}

/** Top-1/top-5 accuracy, batching where the model's batch axis is symbolic. */
export async function evaluateClassifier(
  session: ort.InferenceSession,
  data: TensorDataset,
  io: ClassifierInput,
  reference?: ort.InferenceSession,
): Promise<{ quality?: ClassificationQuality; fidelity?: Fidelity }> {
  const adapt = layoutAdapter(data, io);
  const fixedBatch = io.inputDims[0] > 0 ? io.inputDims[0] : 0;
  const batch = fixedBatch || 64;
  if (fixedBatch > 1 && data.count % fixedBatch !== 0) {
    throw new UserError(`${io.dataPath ?? 'dataset'}: ${data.count} samples do not fill the model's fixed batch of ${fixedBatch}`);
  }
  const per = adapt.sampleSize;
  let top1 = 0;
  let top5 = 0;
  const fidelity = reference ? new FidelityAccumulator() : undefined;
  let classes = 0;
  for (let start = 0; start < data.count; start += batch) {
    const n = Math.min(batch, data.count - start);
    const input = new Float32Array(n * per);
    for (let k = 0; k < n; k++) adapt.copy(start + k, input.subarray(k * per, (k + 1) * per));
    const feeds = { [io.inputName]: new ort.Tensor('float32', input, [n, ...adapt.dims]) };
    const out = (await session.run(feeds, [io.outputName]))[io.outputName].data as Float32Array;
    classes = out.length / n;
    const ref = reference ? ((await reference.run(feeds, [io.outputName]))[io.outputName].data as Float32Array) : undefined;
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

/** Map dataset samples onto the model's input layout, transposing NHWC <-> NCHW where that is what differs. */
export function layoutAdapter(data: TensorDataset, io: ClassifierInput): { dims: number[]; sampleSize: number; copy: (i: number, dst: Float32Array) => void } {
  const want = io.inputDims.slice(1);
  const have = data.sampleShape;
  const size = have.reduce((a, b) => a * b, 1);
  const matches = (a: number[], b: number[]) => a.length === b.length && a.every((d, i) => d <= 0 || d === b[i]);
  const direct = (i: number, dst: Float32Array) => dst.set(data.data.subarray(i * size, (i + 1) * size));
  if (matches(want, have)) return { dims: have, sampleSize: size, copy: direct };
  if (have.length === 3) {
    const [a, b, c] = have;
    if (data.layout === 'nhwc' && matches(want, [c, a, b])) {
      return { dims: [c, a, b], sampleSize: size, copy: (i, dst) => hwcToChw(data.data.subarray(i * size, (i + 1) * size), a, b, c, dst) };
    }
    if (data.layout === 'nchw' && matches(want, [b, c, a])) {
      return { dims: [b, c, a], sampleSize: size, copy: (i, dst) => chwToHwc(data.data.subarray(i * size, (i + 1) * size), a, b, c, dst) };
    }
  }
  if (want.reduce((x, y) => x * Math.max(y, 1), 1) === size && want.every((d) => d > 0)) return { dims: want, sampleSize: size, copy: direct };
  throw new UserError(
    `${io.dataPath ?? 'dataset'}: samples of shape [${have.join(', ')}]${data.layout ? ` (${data.layout})` : ''} do not fit model input '${io.inputName}' [${io.inputDims.map((d) => (d > 0 ? d : '?')).join(', ')}] (field shape/layout)`,
  );
}

function hwcToChw(src: Float32Array, h: number, w: number, c: number, dst: Float32Array): void {
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let k = 0; k < c; k++) dst[k * h * w + y * w + x] = src[(y * w + x) * c + k];
}

function chwToHwc(src: Float32Array, c: number, h: number, w: number, dst: Float32Array): void {
  for (let k = 0; k < c; k++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) dst[(y * w + x) * c + k] = src[k * h * w + y * w + x];
}
