import { ssimPlane } from './ssim.js';

export type TensorTask = 'classification' | 'regression' | 'image-to-image';

/** Error of a model's outputs against targets (a targets array, or a reference model's outputs). */
export interface RegressionQuality {
  task: 'regression' | 'image-to-image';
  /** what the outputs were compared with */
  against: 'targets' | 'reference';
  /** mean over every output element of (output − target)² */
  mse: number;
  rmse: number;
  /** 10·log10(L² / mse), dB; absent when mse is 0 */
  psnr?: number;
  /** L of PSNR and SSIM: 1 for [0, 1] data, 255 for raw pixels */
  data_range: number;
  /** mean SSIM over samples and channels (image-to-image outputs at least 11×11) */
  ssim?: number;
  samples: number;
  /** output elements compared */
  values: number;
}

/**
 * Data range from the targets when not given: 255 when they reach past 2 (raw pixels), else 1
 * (images in [0, 1]). The report states which.
 */
export function inferDataRange(target: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < target.length; i++) if (Math.abs(target[i]!) > max) max = Math.abs(target[i]!);
  return max > 2 ? 255 : 1;
}

/**
 * Squared error summed in float64 over samples; image-to-image outputs also get SSIM per channel
 * plane. `image` gives a sample's [channels, h, w].
 */
export class RegressionAccumulator {
  private sq = 0;
  private values = 0;
  private samples = 0;
  private ssimSum = 0;
  private ssimCount = 0;
  private range: number | undefined;

  constructor(
    private readonly task: 'regression' | 'image-to-image',
    private readonly against: 'targets' | 'reference',
    range?: number,
    private readonly image?: { channels: number; h: number; w: number },
  ) {
    this.range = range;
  }

  add(output: ArrayLike<number>, target: ArrayLike<number>): void {
    this.range ??= inferDataRange(target);
    for (let i = 0; i < output.length; i++) {
      const d = output[i]! - target[i]!;
      this.sq += d * d;
    }
    this.values += output.length;
    this.samples++;
    if (this.image) {
      const { channels, h, w } = this.image;
      const plane = h * w;
      const o = Array.prototype.slice.call(output) as number[];
      const t = Array.prototype.slice.call(target) as number[];
      for (let c = 0; c < channels; c++) {
        const s = ssimPlane(o.slice(c * plane, (c + 1) * plane), t.slice(c * plane, (c + 1) * plane), h, w, this.range);
        if (s === undefined) continue;
        this.ssimSum += s;
        this.ssimCount++;
      }
    }
  }

  result(): RegressionQuality {
    const mse = this.values ? this.sq / this.values : 0;
    const range = this.range ?? 1;
    return {
      task: this.task,
      against: this.against,
      mse,
      rmse: Math.sqrt(mse),
      ...(mse > 0 ? { psnr: 10 * Math.log10((range * range) / mse) } : {}),
      data_range: range,
      ...(this.ssimCount ? { ssim: this.ssimSum / this.ssimCount } : {}),
      samples: this.samples,
      values: this.values,
    };
  }
}
