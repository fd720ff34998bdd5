import type * as ort from 'onnxruntime-node';
import { blockKey } from '../calibrate/blocks.js';
import type { Calibrator } from '../calibrate/calibrator.js';
import { matmul } from '../linalg/index.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { calibrationSessionOptions, captureSession } from '../runtime/ort.js';

/**
 * Asymmetric calibration (GPTAQ, Li et al. 2025, "GPTAQ: Efficient Finetuning-Free Quantization for
 * Asymmetric Calibration"): in sequential mode a layer's input X̃ comes from the already-quantized
 * blocks, while the output to match is the float model's W·x on its own input X. With H = X̃ᵀX̃ and
 * the cross term C = X̃ᵀX (rows are tokens; both sums over the same calibration tokens),
 *   ‖X̃·Ŵᵀ − X·Wᵀ‖² = ‖X̃·(Ŵ − W_t)ᵀ‖² + const,   W_t = W·Cᵀ·(H + λI)⁻¹,
 * so GPTQ on the target W_t with the usual Hessian minimises the error against the float model.
 * Here: the cross statistics (the float model's activations captured once at the pass start as a
 * second ONNX Runtime session), and W_t. Working precision float64.
 */
export class CrossStatistics {
  private constructor(
    private readonly original: ort.InferenceSession,
    private readonly calibration: Calibrator,
    private readonly names: string[],
  ) {}

  private byBlock = new Map<string, Map<string, Float64Array>>();

  /** Before the pass changes anything: a session over the float model that captures every target's input. */
  static async start(model: Model, layers: readonly LinearLayer[], calibration: Calibrator): Promise<CrossStatistics> {
    const names = [...new Set(layers.map((l) => l.input))];
    return new CrossStatistics(await captureSession(model, names, calibrationSessionOptions(calibration.threads)), calibration, names);
  }

  /**
   * C = Σ x̃·xᵀ [dim, dim] for `layer`'s input, x̃ on `model` as it is now. Measured for the whole block
   * when its first layer asks, before any layer of the block is rewritten, like the block's H.
   */
  async cross(model: Model, layer: LinearLayer, all: readonly LinearLayer[]): Promise<Float64Array> {
    const key = blockKey(layer.name);
    let block = this.byBlock.get(key);
    if (!block) {
      this.byBlock.clear();
      block = await this.measure(model, [...new Set(all.filter((l) => blockKey(l.name) === key).map((l) => l.input))]);
      this.byBlock.set(key, block);
    }
    return block.get(layer.input)!;
  }

  private async measure(model: Model, names: string[]): Promise<Map<string, Float64Array>> {
    const session = await captureSession(model, names, calibrationSessionOptions(this.calibration.threads));
    const sums = new Map<string, Float64Array>();
    try {
      for (const feed of this.calibration.feedsFor(model)) {
        const [now, before] = await Promise.all([session.run(feed, names), this.original.run(feed, names)]);
        for (const name of names) {
          const xq = now[name]!.data as Float32Array;
          const x = before[name]!.data as Float32Array;
          const dim = now[name]!.dims.at(-1)!;
          const rows = xq.length / dim;
          // Σ_t x̃_t x_tᵀ = X̃ᵀ·X
          const XqT = new Float64Array(dim * rows);
          for (let t = 0; t < rows; t++) for (let j = 0; j < dim; j++) XqT[j * rows + t] = xq[t * dim + j]!;
          const c = await matmul(XqT, Float64Array.from(x), dim, rows, dim);
          const acc = sums.get(name);
          if (acc) for (let i = 0; i < c.length; i++) acc[i] += c[i]!;
          else sums.set(name, Float64Array.from(c));
        }
      }
    } finally {
      await session.release();
    }
    return sums;
  }

  async release(): Promise<void> {
    await this.original.release();
  }

  get inputs(): readonly string[] {
    return this.names;
  }
}

/**
 * W_t = W + W·(C − H)ᵀ·(H + λI)⁻¹ for W [rows, cols], C = X̃ᵀX and H = X̃ᵀX̃ [cols, cols] (sums),
 * λ = `dampening`·mean(diag H): the least-squares weight W·Cᵀ·H⁻¹ that maps the quantized model's
 * input onto the float model's output, written as a correction so the dampening only shrinks the
 * correction (W_t = W exactly when X̃ = X). Solved row by row, (H + λI)·d = (C − H)·w, by Cholesky.
 */
export function asymmetricTarget(W: Float32Array, rows: number, cols: number, C: Float64Array, H: Float64Array, dampening: number): Float32Array {
  const L = Float64Array.from(H);
  let trace = 0;
  for (let i = 0; i < cols; i++) trace += H[i * cols + i]!;
  const damp = (dampening * trace) / cols || 1e-12;
  for (let i = 0; i < cols; i++) L[i * cols + i] += damp;
  // L·Lᵀ = H + λI, lower triangle in place
  for (let j = 0; j < cols; j++) {
    let p = L[j * cols + j]!;
    for (let k = 0; k < j; k++) p -= L[j * cols + k]! ** 2;
    if (!(p > 0)) return W.slice();
    const ljj = Math.sqrt(p);
    L[j * cols + j] = ljj;
    for (let i = j + 1; i < cols; i++) {
      let v = L[i * cols + j]!;
      for (let k = 0; k < j; k++) v -= L[i * cols + k]! * L[j * cols + k]!;
      L[i * cols + j] = v / ljj;
    }
  }
  const out = new Float32Array(rows * cols);
  const b = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    // b = (C − H)·w_r, then L·y = b, Lᵀ·d = y
    for (let i = 0; i < cols; i++) {
      let v = 0;
      for (let k = 0; k < cols; k++) v += (C[i * cols + k]! - H[i * cols + k]!) * W[r * cols + k]!;
      b[i] = v;
    }
    for (let i = 0; i < cols; i++) {
      let v = b[i]!;
      for (let k = 0; k < i; k++) v -= L[i * cols + k]! * b[k]!;
      b[i] = v / L[i * cols + i]!;
    }
    for (let i = cols - 1; i >= 0; i--) {
      let v = b[i]!;
      for (let k = i + 1; k < cols; k++) v -= L[k * cols + i]! * b[k]!;
      b[i] = v / L[i * cols + i]!;
    }
    for (let i = 0; i < cols; i++) out[r * cols + i] = W[r * cols + i]! + b[i]!;
  }
  return out;
}
