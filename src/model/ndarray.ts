/** Small dense float32 array helpers over row-major data, for the boundaries between storage forms. */

export function transpose2d(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  const B = 32;
  for (let i0 = 0; i0 < rows; i0 += B) {
    for (let j0 = 0; j0 < cols; j0 += B) {
      const iEnd = Math.min(i0 + B, rows);
      const jEnd = Math.min(j0 + B, cols);
      for (let i = i0; i < iEnd; i++) for (let j = j0; j < jEnd; j++) out[j * rows + i] = a[i * cols + j];
    }
  }
  return out;
}

/** numpy.transpose(a, perm) for any rank. */
export function permute(a: Float32Array, shape: number[], perm: number[]): { data: Float32Array; shape: number[] } {
  const rank = shape.length;
  const outShape = perm.map((p) => shape[p]);
  if (rank === 2 && perm[0] === 1) return { data: transpose2d(a, shape[0], shape[1]), shape: outShape };
  const inStrides = stridesOf(shape);
  const outStrides = perm.map((p) => inStrides[p]);
  const out = new Float32Array(a.length);
  const idx = new Array<number>(rank).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let d = 0; d < rank; d++) src += idx[d] * outStrides[d];
    out[o] = a[src];
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < outShape[d]) break;
      idx[d] = 0;
    }
  }
  return { data: out, shape: outShape };
}

export function stridesOf(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d];
  }
  return s;
}
