import type { Model } from '../../src/model/model.js';
import { captureSession, ort } from '../../src/runtime/ort.js';

/** ONNX Runtime's side of a distillation loss check: the pass's first batch and the outputs a loss term compares. */

/** distill.kd's first batch on text data: the first four 32-token windows of the sequences, in order. */
export function firstWindows(sequences: readonly Int32Array[]): { windows: number[][]; feed: Record<string, ort.Tensor> } {
  const windows = sequences.flatMap((seq) => Array.from({ length: Math.floor(seq.length / 32) }, (_, k) => Array.from(seq.subarray(k * 32, k * 32 + 32)))).slice(0, 4);
  return { windows, feed: { input_ids: new ort.Tensor('int64', BigInt64Array.from(windows.flat(), BigInt), [4, 32]) } };
}

/** `m`'s outputs `names` on `feed`, in ONNX Runtime. */
export async function outputsOf(m: Model, names: string[], feed: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const session = await captureSession(m, names);
  try {
    return await session.run(feed);
  } finally {
    await session.release();
  }
}

/** The mean over `names` of each tensor's mean squared difference between two runs (float64 sums). */
export function meanMse(a: Record<string, ort.Tensor>, b: Record<string, ort.Tensor>, names: readonly string[]): number {
  let mse = 0;
  for (const name of names) {
    const x = a[name]!.data as Float32Array;
    const y = b[name]!.data as Float32Array;
    let sum = 0;
    for (let i = 0; i < x.length; i++) sum += (x[i]! - y[i]!) ** 2;
    mse += sum / x.length / names.length;
  }
  return mse;
}
