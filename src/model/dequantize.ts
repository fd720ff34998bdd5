import type { HostTensor } from './model.js';
import { toFloat32 } from './pack.js';
import { stridesOf } from './ndarray.js';

/**
 * DequantizeLinear in float32: y = (x − zero_point) · scale, with a scalar scale (per tensor),
 * a 1-D scale along `axis` (per axis), or a scale of x's rank blocked by `blockSize` along `axis`.
 */
export function dequantize(x: HostTensor, scale: HostTensor, zeroPoint: HostTensor | undefined, axis: number, blockSize: number): Float32Array {
  const q = toFloat32(x.dataType, x.data, count(x.dims));
  const s = toFloat32(scale.dataType, scale.data, count(scale.dims));
  const zp = zeroPoint ? toFloat32(zeroPoint.dataType, zeroPoint.data, count(zeroPoint.dims)) : undefined;
  const rank = x.dims.length;
  const ax = axis < 0 ? axis + rank : axis;
  const out = new Float32Array(q.length);
  if (s.length === 1) {
    const z = zp ? zp[0] : 0;
    for (let i = 0; i < q.length; i++) out[i] = (q[i] - z) * s[0];
    return out;
  }
  const strides = stridesOf(x.dims);
  const axisLen = x.dims[ax];
  const inner = strides[ax];
  if (scale.dims.length <= 1) {
    for (let i = 0; i < q.length; i++) {
      const c = Math.floor(i / inner) % axisLen;
      out[i] = (q[i] - (zp ? zp[c] : 0)) * s[c];
    }
    return out;
  }
  // blocked: scale has x's shape with dims[axis] = ceil(dims[axis] / blockSize)
  const sStrides = stridesOf(scale.dims);
  const idx = new Array<number>(rank).fill(0);
  for (let i = 0; i < q.length; i++) {
    let si = 0;
    for (let d = 0; d < rank; d++) si += (d === ax ? Math.floor(idx[d] / blockSize) : idx[d]) * sStrides[d];
    out[i] = (q[i] - (zp ? zp[si] : 0)) * s[si];
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < x.dims[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

function count(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}
