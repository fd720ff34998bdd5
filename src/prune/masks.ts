/**
 * Mask selection shared by the pruning passes. Weights are [rows = out, cols = in] row-major
 * float32; a mask marks the entries to zero. Selection is exact: "50 %" zeros exactly
 * round(0.5 · numel) entries, ties broken by position, so results do not depend on sort stability.
 */

/** The `count`-th smallest value of `scores` (1-based); 0 count → -Infinity. */
export function kthSmallest(scores: Float32Array, count: number): number {
  if (count <= 0) return -Infinity;
  const a = Float32Array.from(scores);
  const k = Math.min(count, a.length) - 1;
  // NaN compares false both ways and would stall the partition: sort, which puts NaN last
  if (a.some(Number.isNaN)) return a.sort()[k]!;
  return select(a, k);
}

/**
 * The k-th (0-based) smallest of `a` by quickselect (Hoare partition, median-of-three pivot), O(n)
 * expected where a full sort is O(n log n); reorders `a`. Same value as sort()[k], except that
 * −0 and +0 may come back for each other (they compare equal).
 */
function select(a: Float32Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (hi > lo) {
    const x = a[lo]!;
    const y = a[(lo + hi) >>> 1]!;
    const z = a[hi]!;
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    // a[lo..j] ≤ pivot ≤ a[i..hi], and everything between equals the pivot
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k]!;
  }
  return a[k]!;
}

/** Mark exactly `count` entries with the smallest scores: all below the threshold, then ties by index. */
export function smallestMask(scores: Float32Array, count: number, mask = new Uint8Array(scores.length)): Uint8Array {
  const threshold = kthSmallest(scores, count);
  let below = 0;
  for (let i = 0; i < scores.length; i++) if (scores[i]! < threshold) below++;
  let ties = count - below;
  for (let i = 0; i < scores.length; i++) {
    const s = scores[i]!;
    if (s < threshold) mask[i] = 1;
    else if (s === threshold && ties > 0) {
      mask[i] = 1;
      ties--;
    }
  }
  return mask;
}

/** Mark, within each row, the `count` smallest scores (for scores compared per output row, as Wanda does). */
export function rowwiseSmallestMask(scores: Float32Array, rows: number, cols: number, count: number): Uint8Array {
  const mask = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    smallestMask(scores.subarray(r * cols, (r + 1) * cols), count, mask.subarray(r * cols, (r + 1) * cols));
  }
  return mask;
}

/**
 * N:M along the input dimension: in every group of `m` consecutive inputs of a row, mark the
 * m − n smallest scores, keeping n. `cols` must be a multiple of m.
 */
export function nmMask(scores: Float32Array, rows: number, cols: number, n: number, m: number, mask = new Uint8Array(rows * cols)): Uint8Array {
  const order = new Array<number>(m);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols; g += m) {
      const base = r * cols + g;
      for (let j = 0; j < m; j++) order[j] = j;
      order.sort((a, b) => scores[base + a]! - scores[base + b]! || a - b);
      for (let j = 0; j < m - n; j++) mask[base + order[j]!] = 1;
    }
  }
  return mask;
}

export function applyMask(W: Float32Array, mask: Uint8Array): void {
  for (let i = 0; i < W.length; i++) if (mask[i]) W[i] = 0;
}

export function absValues(W: Float32Array): Float32Array {
  const out = new Float32Array(W.length);
  for (let i = 0; i < W.length; i++) out[i] = Math.abs(W[i]!);
  return out;
}

export function zeroFraction(W: Float32Array): number {
  let z = 0;
  for (let i = 0; i < W.length; i++) if (W[i] === 0) z++;
  return W.length ? z / W.length : 0;
}

/** Keep the n largest of every m consecutive inputs of a row. */
export interface NmPattern {
  n: number;
  m: number;
}

/** `"2:4"` → {n: 2, m: 4}; undefined for `"unstructured"`. */
export function parsePattern(pattern: string): NmPattern | undefined {
  const match = /^(\d+):(\d+)$/.exec(pattern);
  return match ? { n: Number(match[1]), m: Number(match[2]) } : undefined;
}

/** The inverse of parsePattern. */
export function formatPattern(nm: NmPattern | undefined): string {
  return nm ? `${nm.n}:${nm.m}` : 'unstructured';
}

/** Bytes of a bitmask over all entries plus the nonzero float32 values: the honest sparse size. */
export function sparseBytes(W: Float32Array, valueBits = 32): number {
  let nz = 0;
  for (let i = 0; i < W.length; i++) if (W[i] !== 0) nz++;
  return Math.ceil(W.length / 8) + Math.ceil((nz * valueBits) / 8);
}
