/**
 * Log-mel and MFCC features of a mono clip, in float64: frames of `nFft` samples every `hop`
 * (no centre padding: 1 + ⌊(N − nFft)/hop⌋ frames), a periodic Hann (or rectangular) window, the
 * power spectrum |X_k|² for k = 0…nFft/2, a triangular mel filterbank on the HTK mel scale
 * (m = 2595·log10(1 + f/700)) with `nMels` filters between fmin and fmax, log(mel + logOffset), and
 * for MFCC the orthonormal DCT-II of each frame's log-mels, first `nMfcc` coefficients.
 */

export interface FeatureParams {
  sampleRate: number;
  nFft: number;
  hop: number;
  window: 'hann' | 'rect';
  nMels: number;
  fmin: number;
  fmax: number;
  logOffset: number;
  /** MFCC coefficients; absent for log-mel */
  nMfcc?: number;
}

/** In-place iterative radix-2 FFT of (re, im); length a power of two. */
export function fft(re: Float64Array, im: Float64Array): void {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j]!, re[i]!];
      [im[i], im[j]] = [im[j]!, im[i]!];
    }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = (-2 * Math.PI) / len;
    for (let i = 0; i < n; i += len) {
      for (let k = 0; k < len / 2; k++) {
        const wr = Math.cos(ang * k);
        const wi = Math.sin(ang * k);
        const a = i + k;
        const b = a + len / 2;
        const xr = re[b]! * wr - im[b]! * wi;
        const xi = re[b]! * wi + im[b]! * wr;
        re[b] = re[a]! - xr;
        im[b] = im[a]! - xi;
        re[a] = re[a]! + xr;
        im[a] = im[a]! + xi;
      }
    }
  }
}

export const hzToMel = (f: number) => 2595 * Math.log10(1 + f / 700);
export const melToHz = (m: number) => 700 * (10 ** (m / 2595) - 1);

/** [nMels, nFft/2 + 1] triangular filters, peaks evenly spaced in mel between fmin and fmax. */
export function melFilterbank(p: FeatureParams): Float64Array[] {
  const bins = p.nFft / 2 + 1;
  const lo = hzToMel(p.fmin);
  const hi = hzToMel(p.fmax);
  const edges = Array.from({ length: p.nMels + 2 }, (_, i) => melToHz(lo + ((hi - lo) * i) / (p.nMels + 1)));
  return Array.from({ length: p.nMels }, (_, m) => {
    const [left, centre, right] = [edges[m]!, edges[m + 1]!, edges[m + 2]!];
    return Float64Array.from({ length: bins }, (_, k) => {
      const f = (k * p.sampleRate) / p.nFft;
      if (f <= left || f >= right) return 0;
      return f <= centre ? (f - left) / (centre - left) : (right - f) / (right - centre);
    });
  });
}

/** Orthonormal DCT-II of x, first `k` coefficients. */
export function dct2(x: ArrayLike<number>, k: number): Float64Array {
  const n = x.length;
  return Float64Array.from({ length: k }, (_, q) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += x[i]! * Math.cos((Math.PI * q * (2 * i + 1)) / (2 * n));
    return s * Math.sqrt((q === 0 ? 1 : 2) / n);
  });
}

export function frameCount(samples: number, p: FeatureParams): number {
  return samples < p.nFft ? 0 : 1 + Math.floor((samples - p.nFft) / p.hop);
}

/** [frames, nMels] log-mels, or [frames, nMfcc] MFCCs with nMfcc, row-major. */
export function audioFeatures(signal: ArrayLike<number>, p: FeatureParams, filters = melFilterbank(p)): Float64Array {
  const frames = frameCount(signal.length, p);
  const width = p.nMfcc ?? p.nMels;
  const out = new Float64Array(frames * width);
  const window = Float64Array.from({ length: p.nFft }, (_, i) => (p.window === 'hann' ? 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / p.nFft) : 1));
  const re = new Float64Array(p.nFft);
  const im = new Float64Array(p.nFft);
  const power = new Float64Array(p.nFft / 2 + 1);
  const logMel = new Float64Array(p.nMels);
  for (let f = 0; f < frames; f++) {
    for (let i = 0; i < p.nFft; i++) re[i] = signal[f * p.hop + i]! * window[i]!;
    im.fill(0);
    fft(re, im);
    for (let k = 0; k < power.length; k++) power[k] = re[k]! * re[k]! + im[k]! * im[k]!;
    for (let m = 0; m < p.nMels; m++) {
      let s = 0;
      const fb = filters[m]!;
      for (let k = 0; k < power.length; k++) s += fb[k]! * power[k]!;
      logMel[m] = Math.log(s + p.logOffset);
    }
    out.set(p.nMfcc ? dct2(logMel, p.nMfcc) : logMel, f * width);
  }
  return out;
}
