import type { Feeds } from '../calibrate/feeds.js';
import { modelIo } from '../model/io.js';
import type { Model } from '../model/model.js';
import { sessionFromModel } from '../runtime/ort.js';
import { logSumExp } from './log-sum-exp.js';

/**
 * Mean next-token negative log-likelihood (nats) of a causal LM over calibration feeds, in ONNX
 * Runtime at float32 accuracy: what a pass that weighs its choices by their effect on the final loss
 * measures before and after a change.
 */
export async function feedsNll(model: Model, feeds: readonly Feeds[], threads = 1): Promise<number> {
  const io = modelIo(model);
  const session = await sessionFromModel(model, { threads, qdqMatMulNBitsAccuracyLevel: 0 });
  let total = 0;
  let count = 0;
  try {
    for (const feed of feeds) {
      const ids = feed[io.inputName]!;
      const [batch, seq] = ids.dims as [number, number];
      const out = (await session.run(feed))[io.outputName]!;
      const logits = out.data as Float32Array;
      const vocab = out.dims.at(-1)!;
      const data = ids.data as BigInt64Array | Int32Array;
      for (let b = 0; b < batch; b++) {
        for (let t = 0; t + 1 < seq; t++) {
          const row = logits.subarray(((b * seq) + t) * vocab, ((b * seq) + t + 1) * vocab);
          total += logSumExp(row) - row[Number(data[b * seq + t + 1])]!;
          count++;
        }
      }
    }
  } finally {
    await session.release();
  }
  return total / Math.max(count, 1);
}
