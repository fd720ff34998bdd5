import type { Feeds } from '../../src/calibrate/feeds.js';
import { decoderBlocks } from '../../src/model/blocks.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { captureSession } from '../../src/runtime/ort.js';

/** Σ_samples ‖y_q − y‖² / Σ‖y‖² of each decoder block's output in ONNX Runtime: y_q the model's own forward, y the float model's at `floatPath`. */
export async function ortBlockLosses(model: Model, feeds: Feeds[], floatPath: string): Promise<number[]> {
  const outputs = decoderBlocks(model).map((b) => b.output);
  const run = async (m: Model) => {
    const s = await captureSession(m, outputs);
    const all: Float32Array[][] = [];
    for (const f of feeds) {
      const out = await s.run(f, outputs);
      all.push(outputs.map((o) => out[o]!.data as Float32Array));
    }
    await s.release();
    return all;
  };
  const [q, f] = [await run(model), await run(readOnnx(floatPath))];
  return outputs.map((_, b) => {
    let [num, den] = [0, 0];
    for (let s = 0; s < feeds.length; s++) {
      const [a, r] = [q[s]![b]!, f[s]![b]!];
      for (let i = 0; i < r.length; i++) [num, den] = [num + (a[i]! - r[i]!) ** 2, den + r[i]! ** 2];
    }
    return num / den;
  });
}
