import type { TensorDataset } from '../data/types.js';
import { UserError } from '../errors.js';
import { floatOutput, type RuntimeSession } from '../runtime/session.js';
import { RegressionAccumulator, type RegressionQuality, type TensorTask } from './regression.js';
import { tensorBatches, type TensorInput } from './tensor-batches.js';

/**
 * The task of a model on tensor data, from its output on the first sample: [N, C] is
 * classification, [N, C, H, W] image-to-image, anything else regression.
 */
export async function inferTensorTask(session: RuntimeSession, data: TensorDataset, io: TensorInput): Promise<TensorTask> {
  const first = tensorBatches({ ...data, count: Math.min(data.count, io.inputDims[0]! > 0 ? io.inputDims[0]! : 1) }, io).next().value!;
  const out = (await session.run(first.feeds, [io.outputName]))[io.outputName]!;
  return out.dims.length === 2 ? 'classification' : out.dims.length === 4 ? 'image-to-image' : 'regression';
}

/**
 * MSE, RMSE, PSNR (and SSIM for image-to-image) of the model's outputs against the dataset's
 * targets when it has them, else against the reference model's outputs on the same inputs; no
 * quality without either. NCHW outputs are taken as [C, H, W] planes for SSIM.
 */
export async function evaluateRegression(
  session: RuntimeSession,
  data: TensorDataset,
  io: TensorInput,
  task: 'regression' | 'image-to-image',
  opts: { reference?: RuntimeSession; dataRange?: number } = {},
): Promise<{ quality?: RegressionQuality }> {
  const against = data.targets ? 'targets' : opts.reference ? 'reference' : undefined;
  if (!against) return {};
  const where = io.dataPath ?? 'model';
  let acc: RegressionAccumulator | undefined;
  for (const { start, n, feeds } of tensorBatches(data, io)) {
    const raw = (await session.run(feeds, [io.outputName]))[io.outputName]!;
    const out = floatOutput(raw, io.outputName, where);
    const per = out.length / n;
    const target = data.targets ? data.targets.data.subarray(start * per, (start + n) * per) : floatOutput((await opts.reference!.run(feeds, [io.outputName]))[io.outputName]!, io.outputName, where);
    if (data.targets && data.targets.data.length !== data.count * per) {
      throw new UserError(`${where}: targets hold ${data.targets.data.length / data.count} values per sample, the model's output '${io.outputName}' [${raw.dims.join(', ')}] has ${per} (field targets)`);
    }
    const image = task === 'image-to-image' && raw.dims.length === 4 ? { channels: raw.dims[1]!, h: raw.dims[2]!, w: raw.dims[3]! } : undefined;
    acc ??= new RegressionAccumulator(task, against, opts.dataRange, image);
    for (let k = 0; k < n; k++) acc.add(out.subarray(k * per, (k + 1) * per), target.subarray(k * per, (k + 1) * per));
  }
  return { quality: acc?.result() };
}
