import { UserError } from '../errors.js';
import { formatBytes, INPUT_LIMITS } from '../util/read-file.js';
import { seededRandom } from '../util/random.js';
import type { RandomSpec } from './spec.js';
import type { TensorDataset } from './types.js';

/**
 * `count` samples of `shape` from a seeded PRNG (mulberry32): uniform on [low, high), or normal
 * through Box–Muller. The same spec gives the same samples on every machine. No labels: a model is
 * measured against a reference only (fidelity), or for size and latency.
 */
export function loadRandom(spec: RandomSpec, where = 'random data'): TensorDataset {
  if (spec.distribution === 'uniform' && !(spec.high > spec.low)) throw new UserError(`${where}: high (${spec.high}) must be above low (${spec.low}) (field high)`);
  if (spec.layout && spec.shape.length !== 3) throw new UserError(`${where}: layout ${spec.layout} needs a shape of 3 axes, got [${spec.shape.join(', ')}] (field layout)`);
  const per = spec.shape.reduce((a, b) => a * b, 1);
  if (per * spec.count * 4 > INPUT_LIMITS.samples) throw new UserError(`${where}: ${spec.count} samples of [${spec.shape.join('×')}] are more than pare holds (${formatBytes(INPUT_LIMITS.samples)} as float32); lower count`);
  const rand = seededRandom(spec.seed);
  const data = new Float32Array(per * spec.count);
  if (spec.distribution === 'uniform') {
    for (let i = 0; i < data.length; i++) data[i] = spec.low + (spec.high - spec.low) * rand();
  } else {
    for (let i = 0; i < data.length; i++) data[i] = spec.mean + spec.std * Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  }
  const dist = spec.distribution === 'uniform' ? `uniform [${spec.low}, ${spec.high})` : `normal(${spec.mean}, ${spec.std})`;
  return {
    kind: 'tensors',
    sampleShape: spec.shape,
    ...(spec.layout ? { layout: spec.layout } : {}),
    data,
    count: spec.count,
    files: [],
    description: `random ${spec.count} × [${spec.shape.join('×')}]${spec.layout ? ` ${spec.layout}` : ''}, ${dist}, seed ${spec.seed}`,
  };
}
