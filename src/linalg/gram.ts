import { type FloatArray, type KernelGraph, type KernelNode, runKernel } from './backend.js';
import { SMALL_FLOPS } from './gemm.js';

/**
 * Gram accumulation H += XᵀX for X [rows, dim] row-major: the (unscaled) SparseGPT/GPTQ Hessian, whose
 * callers scale by 2/n (Frantar & Alistarh 2023; Frantar et al. 2022). H is float64. Each chunk's
 * product is, by `precision`:
 * - 'float32' (default): an MLAS SGEMM over at most F32_PRODUCT_ROWS rows, added into the float64 H.
 *   The authors' reference code keeps all of H in float32 (one float32 product per 2048-token sample,
 *   summed in float32), so float32 products of ≤ 4096 rows summed in float64 are as precise; SGEMM runs
 *   at about twice DGEMM's rate on this CPU (bench/RESULTS.md, issue 21).
 * - 'float64': float32 activations are cast to double inside the ONNX graph (Cast → Gemm transA=1 on
 *   MLAS DGEMM), so every product and sum is a double operation.
 * float64 activations always take the float64 path. result() symmetrizes H.
 */
export type GramPrecision = 'float32' | 'float64';

/** rows per float32 product: its float32 sums then run over as many terms as the reference's 2048-token samples, within 2× */
const F32_PRODUCT_ROWS = 4096;

/** rows per Gemm call are capped so one chunk holds at most this many elements (64 MiB once cast to double) */
const CHUNK_ELEMENTS = 1 << 23;

/**
 * Small adds (one image is one row at a classifier's fc layer) are copied into a block of up to
 * BLOCK_ROWS rows and BLOCK_ELEMENTS float32 values (16 MiB), and each full block is one Gram: a
 * Gemm per one-row sample would cost a dim×dim double output and an ONNX Runtime call every time.
 */
const BLOCK_ROWS = 4096;
const BLOCK_ELEMENTS = 1 << 22;

/**
 * Inputs this wide and wider are cut into column blocks of about SYMMETRIC_BLOCK and only the blocks
 * on and above the diagonal are computed (XᵀX is symmetric): 2 blocks do 3/4 of the multiply-adds,
 * 3 blocks 2/3 (GPT-2's 3072-wide c_proj input; narrower inputs gained nothing measurable). Each block
 * of H is the same dot products over the same rows, and MLAS returns them bit for bit as the full
 * product does (test/linalg/gram.test.ts checks it), so H does not change.
 */
const SYMMETRIC_MIN_DIM = 2048;
const SYMMETRIC_BLOCK = 1024;

/**
 * How a chunk's product is computed: 'f32' float32 in and out (SGEMM), 'f32_f64' float32 cast to
 * double (DGEMM), 'f64' double in and out.
 */
type Kind = 'f32' | 'f32_f64' | 'f64';

function kindOf(X: FloatArray, precision: GramPrecision): Kind {
  if (!(X instanceof Float32Array)) return 'f64';
  return precision === 'float32' ? 'f32' : 'f32_f64';
}

/** Cast(A)ᵀ·Cast(B): one off-diagonal block of XᵀX from two column slices of the same rows */
function crossGraph(kind: Kind): () => KernelGraph {
  const cast = kind === 'f32_f64';
  const dtype = kind === 'f64' ? 'float64' : 'float32';
  return () => ({
    inputs: [
      { name: 'A', dtype, dims: ['rows', 'a'] },
      { name: 'B', dtype, dims: ['rows', 'b'] },
    ],
    outputs: [{ name: 'Y', dtype: kind === 'f32' ? 'float32' : 'float64', dims: ['a2', 'b2'] }],
    nodes: (cast
      ? [
          { op: 'Cast', inputs: ['A'], outputs: ['Ad'], attrs: { to: 11 } },
          { op: 'Cast', inputs: ['B'], outputs: ['Bd'], attrs: { to: 11 } },
          { op: 'Gemm', inputs: ['Ad', 'Bd'], outputs: ['Y'], attrs: { transA: 1 } },
        ]
      : [{ op: 'Gemm', inputs: ['A', 'B'], outputs: ['Y'], attrs: { transA: 1 } }]) as KernelNode[],
  });
}

/** columns [c0, c1) of X [rows, dim], as a new row-major [rows, c1 − c0] array */
function columnSlice(X: FloatArray, rows: number, dim: number, c0: number, c1: number): FloatArray {
  const w = c1 - c0;
  const out = X instanceof Float32Array ? new Float32Array(rows * w) : new Float64Array(rows * w);
  for (let r = 0; r < rows; r++) out.set(X.subarray(r * dim + c0, r * dim + c1), r * w);
  return out;
}

function gramGraph(kind: Kind): () => KernelGraph {
  const cast = kind === 'f32_f64';
  return () => ({
    inputs: [{ name: 'X', dtype: kind === 'f64' ? 'float64' : 'float32', dims: ['rows', 'dim'] }],
    outputs: [{ name: 'Y', dtype: kind === 'f32' ? 'float32' : 'float64', dims: ['dim', 'dim2'] }],
    nodes: (cast
      ? [
          { op: 'Cast', inputs: ['X'], outputs: ['Xd'], attrs: { to: 11 } },
          { op: 'Gemm', inputs: ['Xd', 'Xd'], outputs: ['Y'], attrs: { transA: 1 } },
        ]
      : [{ op: 'Gemm', inputs: ['X', 'X'], outputs: ['Y'], attrs: { transA: 1 } }]) as KernelNode[],
  });
}

const GRAM_KEY: Record<Kind, string> = { f32: 'gram_f32', f32_f64: 'gram_f32_f64', f64: 'gram_f64' };
const CROSS_KEY: Record<Kind, string> = { f32: 'cross_gram_f32', f32_f64: 'cross_gram_f32_f64', f64: 'cross_gram_f64' };

/** XᵀX of X [rows, dim] on ONNX Runtime, as `kind` computes it (dim×dim; float32 for 'f32') */
function gramKernel(X: FloatArray, rows: number, dim: number, kind: Kind): Promise<FloatArray> {
  return runKernel(GRAM_KEY[kind], gramGraph(kind), { X: { data: X, dims: [rows, dim] } });
}

/** XᵀX of one chunk (dim×dim float64, every product and sum in double). */
export async function gram(X: FloatArray, rows: number, dim: number): Promise<Float64Array> {
  if (X.length !== rows * dim) throw new Error(`gram: X has ${X.length} elements, expected rows·dim = ${rows}·${dim}`);
  if (rows * dim * dim < SMALL_FLOPS) {
    const H = new Float64Array(dim * dim);
    addGramJs(H, X, rows, dim);
    return H;
  }
  return (await gramKernel(X, rows, dim, kindOf(X, 'float64'))) as Float64Array;
}

function addGramJs(H: Float64Array, X: FloatArray, rows: number, dim: number): void {
  for (let r = 0; r < rows; r++) {
    const off = r * dim;
    for (let i = 0; i < dim; i++) {
      const xi = X[off + i]!;
      if (xi === 0) continue;
      const h = i * dim;
      for (let j = 0; j < dim; j++) H[h + j] += xi * X[off + j]!;
    }
  }
}

export class GramAccumulator {
  readonly dim: number;
  private readonly H: Float64Array;
  private readonly chunkRows: number;
  private readonly blockRows: number;
  private readonly precision: GramPrecision;
  private rows = 0;
  /** column block boundaries when only H's upper block triangle is computed (undefined: the full product) */
  private readonly columnBlocks?: number[];
  /** float32 rows waiting for a full block */
  private pending?: Float32Array;
  private pendingRows = 0;

  /**
   * `chunkRows` bounds the rows per Gemm call (default: 8 Mi elements per chunk, and at most
   * F32_PRODUCT_ROWS for float32 products); `blockRows` is the block small adds are buffered into
   * (default: 4096 rows, at most 4 Mi elements; 1 adds each call on its own); `precision` is each
   * chunk's product's (default 'float32', see the file's opening comment)
   */
  constructor(dim: number, opts: { chunkRows?: number; blockRows?: number; columnBlocks?: number; precision?: GramPrecision } = {}) {
    if (!Number.isInteger(dim) || dim <= 0) throw new Error(`GramAccumulator: dim must be a positive integer, got ${dim}`);
    this.dim = dim;
    const blocks = opts.columnBlocks ?? (dim >= SYMMETRIC_MIN_DIM ? Math.round(dim / SYMMETRIC_BLOCK) : 1);
    if (blocks > 1) this.columnBlocks = Array.from({ length: blocks + 1 }, (_, p) => Math.round((p * dim) / blocks));
    this.H = new Float64Array(dim * dim);
    this.precision = opts.precision ?? 'float32';
    const elementRows = Math.max(1, Math.floor(CHUNK_ELEMENTS / dim));
    this.chunkRows = opts.chunkRows ?? (this.precision === 'float32' ? Math.min(F32_PRODUCT_ROWS, elementRows) : elementRows);
    this.blockRows = opts.blockRows ?? Math.max(1, Math.min(BLOCK_ROWS, Math.floor(BLOCK_ELEMENTS / dim)));
  }

  /** rows added so far (tokens or positions); the Hessian of ‖WX − ŴX‖² is 2/count · result() */
  get count(): number {
    return this.rows;
  }

  /** H += XᵀX for X [rows, dim] row-major (float32 rows may wait in a block until it fills or result() is asked for). */
  async add(X: FloatArray, rows: number): Promise<void> {
    const d = this.dim;
    if (X.length !== rows * d) throw new Error(`GramAccumulator.add: X has ${X.length} elements, expected rows·dim = ${rows}·${d}`);
    this.rows += rows;
    // float64 rows and adds of a block or more go straight in
    if (!(X instanceof Float32Array) || this.blockRows <= 1 || (this.pendingRows === 0 && rows >= this.blockRows)) {
      await this.flush();
      await this.accumulate(X, rows);
      return;
    }
    for (let r = 0; r < rows; ) {
      const take = Math.min(this.blockRows - this.pendingRows, rows - r);
      this.pending ??= new Float32Array(this.blockRows * d);
      this.pending.set(X.subarray(r * d, (r + take) * d), this.pendingRows * d);
      this.pendingRows += take;
      r += take;
      if (this.pendingRows === this.blockRows) await this.flush();
    }
  }

  /** the buffered rows as one Gram */
  private async flush(): Promise<void> {
    if (this.pendingRows === 0) return;
    const n = this.pendingRows;
    this.pendingRows = 0;
    await this.accumulate(this.pending!.subarray(0, n * this.dim), n);
  }

  /** H += XᵀX, in chunks of at most chunkRows rows */
  private async accumulate(X: FloatArray, rows: number): Promise<void> {
    const d = this.dim;
    const step = this.chunkRows;
    for (let r0 = 0; r0 < rows; r0 += step) {
      const r1 = Math.min(rows, r0 + step);
      const chunk = X.subarray(r0 * d, r1 * d);
      if ((r1 - r0) * d * d < SMALL_FLOPS) addGramJs(this.H, chunk, r1 - r0, d);
      else if (this.columnBlocks) await this.accumulateUpper(chunk, r1 - r0);
      else {
        const G = await gramKernel(chunk, r1 - r0, d, kindOf(chunk, this.precision));
        for (let i = 0; i < G.length; i++) this.H[i] += G[i]!;
      }
    }
  }

  /** H's blocks on and above the diagonal += XᵀX's, from column slices of X */
  private async accumulateUpper(X: FloatArray, rows: number): Promise<void> {
    const d = this.dim;
    const bounds = this.columnBlocks!;
    const kind = kindOf(X, this.precision);
    const slices = bounds.slice(1).map((c1, p) => columnSlice(X, rows, d, bounds[p]!, c1));
    for (let p = 0; p < slices.length; p++) {
      for (let q = p; q < slices.length; q++) {
        const a = bounds[p + 1]! - bounds[p]!;
        const b = bounds[q + 1]! - bounds[q]!;
        // always ONNX Runtime, even for a small chunk: the JS loop's sums would round differently
        const G =
          p === q
            ? await gramKernel(slices[p]!, rows, a, kind)
            : await runKernel(CROSS_KEY[kind], crossGraph(kind), { A: { data: slices[p]!, dims: [rows, a] }, B: { data: slices[q]!, dims: [rows, b] } });
        for (let i = 0; i < a; i++) {
          const h = (bounds[p]! + i) * d + bounds[q]!;
          for (let j = 0; j < b; j++) this.H[h + j] += G[i * b + j]!;
        }
      }
    }
  }

  /**
   * Σ xxᵀ so far, dim×dim row-major float64, made exactly symmetric. This is the accumulator's own
   * buffer (no copy: Hessians reach 3072² doubles); later add() calls keep writing into it.
   */
  async result(): Promise<Float64Array> {
    await this.flush();
    this.pending = undefined;
    const d = this.dim;
    const H = this.H;
    // block of each column; blocks below the diagonal were never computed and mirror the ones above
    const block = new Int32Array(d);
    const bounds = this.columnBlocks ?? [0, d];
    for (let p = 0; p + 1 < bounds.length; p++) block.fill(p, bounds[p]!, bounds[p + 1]!);
    for (let i = 0; i < d; i++) {
      for (let j = i + 1; j < d; j++) {
        const v = block[i] === block[j] ? 0.5 * (H[i * d + j]! + H[j * d + i]!) : H[i * d + j]!;
        H[i * d + j] = v;
        H[j * d + i] = v;
      }
    }
    return H;
  }
}
