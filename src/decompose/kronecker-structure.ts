import { matmul } from '../linalg/gemm.js';

/**
 * Structure detection for a row/column-permuted Kronecker product W = P (A⊗B) Q (TQCompressedGPT-2's
 * permutation problem, solved exactly for one term). The row Gram G = W Wᵀ = P (AAᵀ ⊗ BBᵀ) Pᵀ does
 * not see Q, and for rows p = (i, k), q = (i', k') the entrywise ratio G[p, c] / G[q, c] over the
 * columns c = (i'', k'') is a function of k'' alone when i = i' (≤ m2 distinct values), of i'' alone
 * when k = k' (≤ m1 values), and generic otherwise. Counting distinct ratios therefore recovers both
 * groupings of the rows; ordering rows by (A-class, B-class) gives W's rows up to a relabelling of
 * A's and B's rows, which is still a Kronecker product. Columns likewise from WᵀW.
 *
 * The count is softened into a continuous score (gaps between sorted ratios, relative to a
 * tolerance), so on weights that are not exact products the same steps give a clustering rather
 * than a failure. Float64 throughout; O(size^2.5 log size) per axis, so it is skipped past
 * MAX_STRUCTURE_SIZE rows (the greedy search still runs there).
 */

export const MAX_STRUCTURE_SIZE = 1024;
/** an entry counts when |G[p,c]| ≥ RELIABLE·√(G[p,p]·G[c,c]): float32 weights give G ~1e-7 relative noise */
const RELIABLE = 1e-2;
/** ratios closer than τ (relative) are one value; averaged over scales so that noisy products still score low */
const SAME_RATIO = [1e-4, 1e-3, 1e-2, 3e-2, 1e-1];

/**
 * Continuous distinct-ratio score of rows p and q of the symmetric G: (soft number of distinct
 * values of G[p,:]/G[q,:]) / (number of reliable columns). Low when p and q share a Kronecker index.
 */
export function ratioScore(G: Float64Array, size: number, p: number, q: number): number {
  const ratios: number[] = [];
  const dp = G[p * size + p]!;
  const dq = G[q * size + q]!;
  for (let c = 0; c < size; c++) {
    const dc = G[c * size + c]!;
    const gp = G[p * size + c]!;
    const gq = G[q * size + c]!;
    if (Math.abs(gp) >= RELIABLE * Math.sqrt(dp * dc) && Math.abs(gq) >= RELIABLE * Math.sqrt(dq * dc) && gq !== 0) ratios.push(gp / gq);
  }
  if (ratios.length < 2) return 1;
  const r = Float64Array.from(ratios).sort();
  let distinct = 1;
  for (let j = 1; j < r.length; j++) {
    const gap = Math.abs(r[j]! - r[j - 1]!) / Math.max(Math.abs(r[j]!), Math.abs(r[j - 1]!), 1e-300);
    for (const tau of SAME_RATIO) distinct += Math.min(1, gap / tau) / SAME_RATIO.length;
  }
  return distinct / r.length;
}

/** indices of the k smallest values */
function smallest(values: ArrayLike<number>, candidates: number[], k: number): number[] {
  return [...candidates].sort((a, b) => values[a]! - values[b]! || a - b).slice(0, k);
}

/**
 * Greedy assignment maximising Σ S[source, target] over a size×size score matrix: the best remaining
 * pair first. Returns, for each target, its source.
 */
export function greedyAssignment(S: Float64Array, size: number): Int32Array {
  const order = Array.from({ length: size * size }, (_, i) => i).sort((a, b) => S[b]! - S[a]! || a - b);
  const sourceOf = new Int32Array(size).fill(-1);
  const used = new Uint8Array(size);
  let left = size;
  for (const idx of order) {
    const source = Math.floor(idx / size);
    const target = idx % size;
    if (used[source] || sourceOf[target] !== -1) continue;
    sourceOf[target] = source;
    used[source] = 1;
    if (--left === 0) break;
  }
  return sourceOf;
}

/**
 * Orders the `size` = s1·s2 rows of a Gram G = P (Ga ⊗ Gb) Pᵀ so that position a·s2 + b holds the
 * row of A-class a and B-class b. Returns the candidate orders: one, or two when s1 = s2 (the counts
 * cannot tell A's classes from B's there; the caller keeps whichever factors better).
 */
export function gridOrders(G: Float64Array, s1: number, s2: number): Int32Array[] {
  const size = s1 * s2;
  const identity = Int32Array.from({ length: size }, (_, i) => i);
  if (s1 === 1 || s2 === 1 || size > MAX_STRUCTURE_SIZE) return [identity];
  // anchor: the row with the largest norm
  let p0 = 0;
  for (let p = 1; p < size; p++) if (G[p * size + p]! > G[p0 * size + p0]!) p0 = p;
  const others = [...identity].filter((q) => q !== p0);
  const score0 = new Float64Array(size);
  for (const q of others) score0[q] = ratioScore(G, size, p0, q);
  // rows sharing an index with p0: s2 − 1 share its A index (X), s1 − 1 its B index (Y)
  const related = smallest(score0, others, s1 + s2 - 2);
  const pair = (a: number, b: number) => ratioScore(G, size, a, b);
  const split = (firstInX: boolean): { X: number[]; Y: number[]; cost: number } => {
    const [r1, ...rest] = related;
    const near = rest.map((r) => pair(r1!, r));
    const byNear = rest.map((r, i) => [r, near[i]!] as const).sort((a, b) => a[1] - b[1]);
    const same = byNear.slice(0, (firstInX ? s2 : s1) - 2).map(([r]) => r);
    const other = byNear.slice((firstInX ? s2 : s1) - 2).map(([r]) => r);
    const X = firstInX ? [r1!, ...same] : other;
    const Y = firstInX ? other : [r1!, ...same];
    let cost = 0;
    for (const group of [X, Y]) for (let a = 0; a < group.length; a++) for (let b = a + 1; b < group.length; b++) cost += pair(group[a]!, group[b]!);
    return { X, Y, cost };
  };
  const h1 = split(true);
  const { X, Y } = s1 === s2 ? h1 : [h1, split(false)].sort((a, b) => a.cost - b.cost)[0]!;
  // representatives: GA[b] shares p0's A index and has B-class b; GB[a] shares p0's B index and has A-class a
  const GA = [p0, ...X];
  const GB = [p0, ...Y];
  const inGA = new Map(GA.map((r, b) => [r, b]));
  const inGB = new Map(GB.map((r, a) => [r, a]));
  // cell score: high when row x has A-class a and B-class b
  const S = new Float64Array(size * size);
  for (let x = 0; x < size; x++) {
    const sa = Float64Array.from(GB, (r, a) => (inGB.has(x) ? (inGB.get(x) === a ? 0 : 1) : inGA.has(x) ? (a === 0 ? 0 : 1) : pair(x, r)));
    const sb = Float64Array.from(GA, (r, b) => (inGA.has(x) ? (inGA.get(x) === b ? 0 : 1) : inGB.has(x) ? (b === 0 ? 0 : 1) : pair(x, r)));
    for (let a = 0; a < s1; a++) for (let b = 0; b < s2; b++) S[x * size + a * s2 + b] = -(sa[a]! + sb[b]!);
  }
  const order = greedyAssignment(S, size);
  if (s1 !== s2) return [order];
  // the same grid read with the roles of A and B swapped
  const swapped = new Int32Array(size);
  for (let a = 0; a < s1; a++) for (let b = 0; b < s2; b++) swapped[b * s1 + a] = order[a * s2 + b]!;
  return [order, swapped];
}

/**
 * Candidate (row order, column order) pairs for W (m×n) from the structure of W Wᵀ and WᵀW; W's
 * row rowPerm[t] goes to position t.
 */
export async function structureCandidates(W: Float64Array, m1: number, m2: number, n1: number, n2: number): Promise<{ rowPerm: Int32Array; colPerm: Int32Array }[]> {
  const m = m1 * m2;
  const n = n1 * n2;
  const rowOrders = m <= MAX_STRUCTURE_SIZE ? gridOrders(await matmul(W, W, m, n, m, { transB: true }), m1, m2) : [];
  const colOrders = n <= MAX_STRUCTURE_SIZE ? gridOrders(await matmul(W, W, n, m, n, { transA: true }), n1, n2) : [];
  const idRows = Int32Array.from({ length: m }, (_, i) => i);
  const idCols = Int32Array.from({ length: n }, (_, i) => i);
  const rows = rowOrders.length ? rowOrders : [idRows];
  const cols = colOrders.length ? colOrders : [idCols];
  return rows.flatMap((rowPerm) => cols.map((colPerm) => ({ rowPerm, colPerm })));
}
