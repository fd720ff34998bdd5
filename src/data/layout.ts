import { UserError } from '../errors.js';
import type { TensorDataset } from './types.js';

/** Map dataset samples onto the model's input layout, transposing NHWC <-> NCHW where that is what differs. */
export function layoutAdapter(data: TensorDataset, io: { inputName: string; inputDims: number[]; dataPath?: string }): { dims: number[]; sampleSize: number; copy: (i: number, dst: Float32Array) => void } {
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
