import { join } from 'node:path';
import { generateCheckpoint, tensorValues, type CheckpointSpec } from '../../../fixtures/generate-models.js';
import { tempDir } from '../../helpers.js';

/**
 * Test logic shared by the Phi-3 and Gemma 3 family tests: a generated checkpoint in a temporary
 * folder and its weights as float64 for a reference forward (token batches, decoders and cached vs
 * full decoding are in ../kv-decode.ts).
 */

export const SEED = 11;

/** Generates `spec` (seed 11) in a temporary folder for the duration of `fn`; `fn` gets model.safetensors. */
export function withCheckpoint(spec: CheckpointSpec, fn: (path: string, dir: string) => Promise<void> | void): () => Promise<void> {
  return async () => {
    const tmp = tempDir('pare-family-');
    try {
      generateCheckpoint(spec, join(tmp.dir, 'in'), { seed: SEED, onnx: false });
      await fn(join(tmp.dir, 'in', 'model.safetensors'), tmp.dir);
    } finally {
      tmp.cleanup();
    }
  };
}

/** The checkpoint's tensors by name as float64, as the generator wrote them. */
export function weightsOf(spec: CheckpointSpec): (name: string) => Float64Array {
  const values = new Map(spec.tensors.map((t) => [t.name, Float64Array.from(tensorValues(t, SEED))]));
  return (name) => {
    const v = values.get(name);
    if (!v) throw new Error(`reference asked for '${name}', which the checkpoint lacks`);
    return v;
  };
}

export const flat = (logits: Float64Array[][]): Float64Array => Float64Array.from(logits.flatMap((r) => r.flatMap((v) => [...v])));

