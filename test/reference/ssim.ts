/**
 * SSIM as Wang et al. 2004 define it, computed the slow way: for each 'valid' 11×11 window position,
 * the Gaussian-weighted (σ = 1.5, weights summing to 1) means, variances and covariance as direct
 * double sums over the window, then the SSIM formula; the mean over positions. Float64.
 */
export function referenceSsim(x: ArrayLike<number>, y: ArrayLike<number>, h: number, w: number, range: number): number {
  const k = 11;
  const r = 5;
  const weights: number[][] = [];
  let total = 0;
  for (let i = 0; i < k; i++) {
    weights.push([]);
    for (let j = 0; j < k; j++) {
      const v = Math.exp(-((i - r) ** 2 + (j - r) ** 2) / (2 * 1.5 * 1.5));
      weights[i]!.push(v);
      total += v;
    }
  }
  const c1 = (0.01 * range) ** 2;
  const c2 = (0.03 * range) ** 2;
  let sum = 0;
  let n = 0;
  for (let top = 0; top + k <= h; top++) {
    for (let left = 0; left + k <= w; left++) {
      let mx = 0;
      let my = 0;
      for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
        const g = weights[i]![j]! / total;
        mx += g * x[(top + i) * w + left + j]!;
        my += g * y[(top + i) * w + left + j]!;
      }
      let vx = 0;
      let vy = 0;
      let cxy = 0;
      for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
        const g = weights[i]![j]! / total;
        const dx = x[(top + i) * w + left + j]! - mx;
        const dy = y[(top + i) * w + left + j]! - my;
        vx += g * dx * dx;
        vy += g * dy * dy;
        cxy += g * dx * dy;
      }
      sum += ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
      n++;
    }
  }
  return sum / n;
}
