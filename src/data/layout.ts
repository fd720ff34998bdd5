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
    `${io.dataPath ?? 'dataset'}: samples of shape [${have.join(', ')}]${data.layout ? ` (${data.layout})` : ''} do not fit model input '${io.inputName}' [${io.inputDims.map((d) => (d > 0 ? d : '?')).join(', ')}] (field shape/layout)${channelHint(data, want)}`,
  );
}

function hwcToChw(src: Float32Array, h: number, w: number, c: number, dst: Float32Array): void {
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let k = 0; k < c; k++) dst[k * h * w + y * w + x] = src[(y * w + x) * c + k];
}

function chwToHwc(src: Float32Array, c: number, h: number, w: number, dst: Float32Array): void {
  for (let k = 0; k < c; k++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) dst[(y * w + x) * c + k] = src[k * h * w + y * w + x];
}

/** "; the images have 3 channels, the model takes 1 channel: set color: gray (--color gray)" when only the channel count differs between gray and colour. */
function channelHint(data: TensorDataset, want: number[]): string {
  if (data.sampleShape.length !== 3 || want.length !== 3 || !data.layout) return '';
  const have = data.layout === 'nhwc' ? data.sampleShape[2]! : data.sampleShape[0]!;
  const model = [1, 3].includes(want[0]!) ? want[0]! : [1, 3].includes(want[2]!) ? want[2]! : 0;
  if (model === 0 || model === have || ![1, 3].includes(have)) return '';
  const color = model === 1 ? 'gray' : 'rgb';
  return `; the images have ${have} channel${have === 1 ? '' : 's'}, the model takes ${model} channel${model === 1 ? '' : 's'}: set color: ${color} (--color ${color})`;
}
