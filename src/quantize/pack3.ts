import { DataType } from '../model/dtype.js';
import { attr, makeNode } from '../model/graph.js';
import { sharedConstant, uniqueInitializerName } from '../model/linear-weights.js';
import type { Model } from '../model/model.js';
import type { NodeProto } from '../model/onnx-schema.js';

/**
 * True 3-bit storage for MatMulNBits, whose CPU kernel reads 2-, 4- or 8-bit codes: the 3-bit codes
 * c (each < 8) are stored 8 per 3 bytes, little-endian: v = Σ_i c_{8m+i}·8^i, bytes m·3 … m·3+2 =
 * v's bytes low first. A constant subgraph rebuilds MatMulNBits' 4-bit blob from them, which ONNX
 * Runtime's constant folding computes once at load, so the session holds the 4-bit blob:
 *
 *   P uint8 [M, 3] -> Cast int32 -> MatMul [1, 256, 65536]ᵀ     v = b0 + 256·b1 + 65536·b2   [M, 1]
 *     -> Div [8^0 … 8^7] -> Mod 8                              c_i = ⌊v / 8^i⌋ mod 8       [M, 8]
 *     -> MatMul T [8, 4] (T[2j][j] = 1, T[2j+1][j] = 16)       byte_j = c_2j + 16·c_2j+1  [M, 4]
 *     -> Cast uint8 -> Reshape [N, blocks, block/2]            the 4-bit blob, low nibble first
 *
 * Integer ops that every ONNX Runtime CPU build runs at opset 13 (no bitwise ops, which need 18).
 */

/** Codes per packed triple of bytes. */
const PER_TRIPLE = 8;

/** 3-bit codes (count a multiple of 8) packed 8 per 3 bytes. */
export function packUint3(codes: Uint8Array): Uint8Array {
  if (codes.length % PER_TRIPLE !== 0) throw new Error(`packUint3: ${codes.length} codes, expected a multiple of ${PER_TRIPLE}`);
  const out = new Uint8Array((codes.length / PER_TRIPLE) * 3);
  for (let m = 0; m < codes.length / PER_TRIPLE; m++) {
    let v = 0;
    for (let i = 0; i < PER_TRIPLE; i++) v |= (codes[m * PER_TRIPLE + i]! & 7) << (3 * i);
    out[m * 3] = v & 255;
    out[m * 3 + 1] = (v >>> 8) & 255;
    out[m * 3 + 2] = v >>> 16;
  }
  return out;
}

/** Inverse of packUint3. */
export function unpackUint3(packed: Uint8Array): Uint8Array {
  const out = new Uint8Array((packed.length / 3) * PER_TRIPLE);
  for (let m = 0; m < packed.length / 3; m++) {
    const v = packed[m * 3]! | (packed[m * 3 + 1]! << 8) | (packed[m * 3 + 2]! << 16);
    for (let i = 0; i < PER_TRIPLE; i++) out[m * PER_TRIPLE + i] = (v >>> (3 * i)) & 7;
  }
  return out;
}

function int32(values: number[]): Uint8Array {
  return new Uint8Array(Int32Array.from(values).buffer);
}

/**
 * Stores `codes` (the MatMulNBits block layout [N, blocks, block], 3-bit values) packed, and returns
 * the nodes that rebuild the 4-bit blob [N, blocks, block/2] as `blob`, each nibble the code plus
 * `shift` (symmetric grids re-centred on the container's zero point 8: 4); the caller inserts them
 * before the MatMulNBits that reads `blob`.
 */
export function unpack3Nodes(model: Model, base: string, codes: Uint8Array, blobDims: [number, number, number], blob: string, shift = 0): NodeProto[] {
  const M = codes.length / PER_TRIPLE;
  const packed = uniqueInitializerName(model, `${base}.weight_q3`);
  model.setInitializer({ name: packed, dataType: DataType.UINT8, dims: [M, 3], data: packUint3(codes) });
  // the small constants are shared by every packed layer of the model
  const bytes = sharedConstant(model, 'pare.u3.bytes', DataType.INT32, [3, 1], int32([1, 256, 65536]));
  const powers = sharedConstant(model, 'pare.u3.powers', DataType.INT32, [PER_TRIPLE], int32(Array.from({ length: PER_TRIPLE }, (_, i) => 8 ** i)));
  const eight = sharedConstant(model, 'pare.u3.eight', DataType.INT32, [], int32([8]));
  // T[i][j]: code i goes to byte i >> 1, low nibble for even i, high for odd
  const T = Array.from({ length: PER_TRIPLE * 4 }, (_, k) => {
    const [i, j] = [Math.floor(k / 4), k % 4];
    return i >> 1 !== j ? 0 : i % 2 ? 16 : 1;
  });
  const pairs = sharedConstant(model, 'pare.u3.pairs', DataType.INT32, [PER_TRIPLE, 4], int32(T));
  const shape = sharedConstant(model, `pare.u3.shape_${blobDims.join('x')}`, DataType.INT64, [3], new Uint8Array(BigInt64Array.from(blobDims.map(BigInt)).buffer));
  // value k of the chain (and the node computing it) is `${base}/u3.k`: short, as every packed layer repeats them
  const v = (k: number) => `${base}/u3.${k}`;
  const nodes = [
    makeNode('Cast', [packed], [v(0)], v(0), [attr.int('to', DataType.INT32)]),
    makeNode('MatMul', [v(0), bytes], [v(1)], v(1)),
    makeNode('Div', [v(1), powers], [v(2)], v(2)),
    makeNode('Mod', [v(2), eight], [v(3)], v(3)),
    makeNode('MatMul', [v(3), pairs], [v(4)], v(4)),
  ];
  let bytesOut = v(4);
  if (shift) {
    // both nibbles of a byte move by shift: + 17·shift
    const offset = sharedConstant(model, `pare.u3.offset_${17 * shift}`, DataType.INT32, [], int32([17 * shift]));
    nodes.push(makeNode('Add', [bytesOut, offset], [v(5)], v(5)));
    bytesOut = v(5);
  }
  nodes.push(
    makeNode('Cast', [bytesOut], [v(6)], v(6), [attr.int('to', DataType.UINT8)]),
    makeNode('Reshape', [v(6), shape], [blob], `${base}/u3`),
  );
  return nodes;
}
