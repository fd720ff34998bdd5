/**
 * Structural similarity (Wang, Bovik, Sheikh, Simoncelli 2004, "Image quality assessment: from
 * error visibility to structural similarity"), as their reference ssim.m computes it: an 11×11
 * Gaussian window (σ = 1.5) normalised to sum 1, local means μ, variances σ² and covariance σxy over
 * the window's 'valid' positions, K1 = 0.01, K2 = 0.03, C = (K·L)² for data range L, and the mean of
 *   SSIM = (2μxμy + C1)(2σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)).
 * The window is separable, so each local statistic is a row pass then a column pass. Float64 throughout.
 */

export const SSIM_WINDOW = 11;
const SIGMA = 1.5;

function gaussian(): Float64Array {
  const r = (SSIM_WINDOW - 1) / 2;
  const g = Float64Array.from({ length: SSIM_WINDOW }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * SIGMA * SIGMA)));
  const sum = g.reduce((a, b) => a + b, 0);
  return g.map((v) => v / sum);
}

/** 'valid' separable filtering of an h×w plane: (h − 10)×(w − 10). */
function filterValid(src: Float64Array, h: number, w: number, g: Float64Array): Float64Array {
  const k = g.length;
  const ow = w - k + 1;
  const oh = h - k + 1;
  const rows = new Float64Array(h * ow);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += g[i]! * src[y * w + x + i]!;
      rows[y * ow + x] = s;
    }
  }
  const out = new Float64Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += g[i]! * rows[(y + i) * ow + x]!;
      out[y * ow + x] = s;
    }
  }
  return out;
}

/** Mean SSIM of two h×w planes with data range `range`; undefined when a side is smaller than the window. */
export function ssimPlane(x: ArrayLike<number>, y: ArrayLike<number>, h: number, w: number, range: number): number | undefined {
  if (h < SSIM_WINDOW || w < SSIM_WINDOW) return undefined;
  const g = gaussian();
  const n = h * w;
  const X = Float64Array.from({ length: n }, (_, i) => x[i]!);
  const Y = Float64Array.from({ length: n }, (_, i) => y[i]!);
  const mx = filterValid(X, h, w, g);
  const my = filterValid(Y, h, w, g);
  const xx = filterValid(X.map((v) => v * v), h, w, g);
  const yy = filterValid(Y.map((v) => v * v), h, w, g);
  const xy = filterValid(X.map((v, i) => v * Y[i]!), h, w, g);
  const c1 = (0.01 * range) ** 2;
  const c2 = (0.03 * range) ** 2;
  let sum = 0;
  for (let i = 0; i < mx.length; i++) {
    const a = mx[i]!;
    const b = my[i]!;
    const vx = xx[i]! - a * a;
    const vy = yy[i]! - b * b;
    const cxy = xy[i]! - a * b;
    sum += ((2 * a * b + c1) * (2 * cxy + c2)) / ((a * a + b * b + c1) * (vx + vy + c2));
  }
  return sum / mx.length;
}
