import { UserError } from '../errors.js';
import { DataType } from '../model/dtype.js';
import { gemmEpilogue } from '../model/gemm-epilogue.js';
import { attr, makeNode } from '../model/graph.js';
import { replaceNode } from '../model/graph-edit.js';
import { removeUnused, sharedConstant, uniqueInitializerName } from '../model/linear-weights.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import type { AttributeProto, NodeProto } from '../model/onnx-schema.js';
import { MAD_A, MAD_B } from './trellis-code.js';
import { columnMultipliers, type TrellisLayer } from './trellis-layer.js';

/**
 * quantize.trellis stored as its stream, the weight rebuilt at load: the file holds the packed
 * trellis stream (uint8), the scale (one float32) and the column exponents (4 bits each) of each layer, and a constant subgraph of
 * integer, Cos and MatMul ops recomputes Ŵᵀ from them, which ONNX Runtime's constant folding
 * computes once when the session is created, so the running graph is the dense layer's lone MatMul
 * (as decompose/kronecker-load.ts does for Kronecker factors):
 *
 *   state_n = ⌊(b[⌊kn/8⌋]·2^16 + b[⌊kn/8⌋+1]·2^8 + b[⌊kn/8⌋+2]) / 2^(24−L−(kn mod 8))⌋ mod 2^L   (trellis-code.ts unpackStates)
 *   c(s)    = float(Σ bytes of (a·s + b) mod 2^32 − 510) · float32(1/147.8)                       (madCodebook)
 *   W'ᵀ     = Reshape(c(state), [cols, rows]) · (scale · 2^(e_c/4))   the stream runs down W' [rows, cols] column by column
 *   (Q_in, Q_out left out for a side with seed −1, i.e. not rotated)
 *   Q[i,j]  = α_i · cos(float((2j+1)·i mod 4n) · float32(π/2n)) · σ_j                              (trellis-rotation.ts rotationMatrix)
 *   (c per L and the seed-free α_i·cos(…) per n are computed once a model and shared by its layers)
 *   Ŵᵀ      = Q_inᵀ · W'ᵀ · Q_out [cols, rows]                 Ŵ = Q_outᵀ·W'·Q_in; Q_inᵀ is built transposed, so no Transpose
 *   y       = x · Ŵᵀ (+ the Gemm's α and bias)
 *
 * All integer arithmetic is int64 and exact (a·s < 2^43; for σ, h = seed·2^16 + j < 2^27, h² < 2^54,
 * a·(h² mod 2^32) < 2^58). Range needs
 * opset 11; the other ops exist in this form since opset 7–10.
 */

/** Range, the newest op the decoder uses. */
export const TRELLIS_DECODER_OPSET = 11;

/** The user error for a model whose opset cannot express the decoder, before any layer is quantized. */
export function checkTrellisOpset(model: Model): void {
  if (model.opset() >= TRELLIS_DECODER_OPSET) return;
  throw new UserError(
    `quantize.trellis: ${model.path} imports ONNX opset ${model.opset()}; the load-time decoder needs Range (opset ${TRELLIS_DECODER_OPSET}) or newer: add --opset 13 (or output.opset: 13) to upgrade the model first`,
  );
}

const TWO32 = 2 ** 32;
const TWO31 = 2 ** 31;

const bytesOf = (dataType: number, values: number[]): Uint8Array =>
  new Uint8Array((dataType === DataType.INT64 ? BigInt64Array.from(values, (v) => BigInt(v)) : Float32Array.from(values)).buffer);

/** A constant every layer may share: named by its value, stored once a model. */
function int64(model: Model, values: number[], dims: number[] = values.length === 1 ? [] : [values.length]): string {
  return sharedConstant(model, `pare.trellis.i64_${values.join('_')}${dims.length > 1 ? `_${dims.join('x')}` : ''}`, DataType.INT64, dims, bytesOf(DataType.INT64, values));
}

function float32(model: Model, name: string, value: number): string {
  return sharedConstant(model, `pare.trellis.${name}`, DataType.FLOAT, [], bytesOf(DataType.FLOAT, [value]));
}

/** Nodes of one chain: each writes a value named after itself under `prefix` (the nodes go unnamed: every layer repeats them, and their names would cost file bytes). */
class Chain {
  readonly nodes: NodeProto[] = [];
  constructor(private readonly prefix: string) {}

  op(opType: string, inputs: string[], name: string, attributes: AttributeProto[] = []): string {
    const out = `${this.prefix}/${name}`;
    this.nodes.push(makeNode(opType, inputs, [out], '', attributes));
    return out;
  }
}

/**
 * A value computed once a model from initializers alone (the codebook of an L, the DCT of an n):
 * its nodes go first in the graph, after the shared values already there, and later layers
 * needing the same value read the one there.
 */
function shared(model: Model, name: string, build: (g: Chain) => string): string {
  if ((model.graph.node ?? []).some((n) => n.output?.includes(name))) return name;
  const g = new Chain(name);
  const last = build(g);
  g.nodes.push(makeNode('Identity', [last], [name], ''));
  // after the shared values already at the front, which this one may read (a rotation reads its DCT)
  const nodes = model.graph.node ?? [];
  let at = 0;
  while (at < nodes.length && (nodes[at]!.output ?? []).every((o) => o.startsWith('pare.trellis.'))) at++;
  model.graph.node = [...nodes.slice(0, at), ...g.nodes, ...nodes.slice(at)];
  return name;
}

/** c(s) for s < 2^L: [2^L] float32. */
function codebook(model: Model, L: number): string {
  return shared(model, `pare.trellis.code_L${L}`, (g) => {
    const s = g.op('Range', [int64(model, [0]), int64(model, [2 ** L]), int64(model, [1])], 'state');
    const x = g.op('Mod', [g.op('Add', [g.op('Mul', [s, int64(model, [MAD_A])], 'as'), int64(model, [MAD_B])], 'as_b'), int64(model, [TWO32])], 'x');
    // the four bytes of x [4, 2^L], summed by a MatMul with ones (int64 MatMul: exact)
    const bytes = g.op('Mod', [g.op('Div', [x, int64(model, [1, 256, 65536, 16777216], [4, 1])], 'shifted'), int64(model, [256])], 'bytes');
    const sum = g.op('MatMul', [int64(model, [1, 1, 1, 1]), bytes], 'byte_sum');
    const centred = g.op('Cast', [g.op('Sub', [sum, int64(model, [510])], 'centred')], 'centred_float', [attr.int('to', DataType.FLOAT)]);
    return g.op('Mul', [centred, float32(model, 'inv_147.8', Math.fround(1 / 147.8))], 'code');
  });
}

/**
 * The seed-free factor of Q (n): C[i, j] = α_i · cos(float((2j+1)·i mod 4n) · float32(π/2n)) [n, n],
 * or Cᵀ (the index grids swap roles, so Qᵀ costs no Transpose). Its `${name}/j`, the column index
 * ([n], or [n, 1] for Cᵀ), is what the signs of a seed are computed from.
 */
function dct(model: Model, n: number, transposed: boolean): string {
  return shared(model, `pare.trellis.dct${transposed ? '_t' : ''}_n${n}`, (g) => {
    const along = g.op('Range', [int64(model, [0]), int64(model, [n]), int64(model, [1])], 'index'); // varies along the last axis
    const down = g.op('Reshape', [along, int64(model, [n, 1])], 'index_column'); // [n, 1]: varies along the first
    const [i, j] = transposed ? [along, down] : [down, along];
    const odd = g.op('Add', [g.op('Mul', [j, int64(model, [2])], '2j'), int64(model, [1])], '2j_1');
    const turns = g.op('Mod', [g.op('Mul', [odd, i], '2j_1_i'), int64(model, [4 * n])], 'angle_index');
    const angle = g.op('Mul', [g.op('Cast', [turns], 'angle_index_float', [attr.int('to', DataType.FLOAT)]), float32(model, `n${n}.step`, Math.fround(Math.PI / (2 * n)))], 'angle');
    const first = g.op('Equal', [i, int64(model, [0])], 'first_row');
    const alpha = g.op('Where', [first, float32(model, `n${n}.alpha0`, Math.fround(Math.sqrt(1 / n))), float32(model, `n${n}.alpha`, Math.fround(Math.sqrt(2 / n)))], 'alpha');
    g.op('Identity', [j], 'j');
    return g.op('Mul', [g.op('Cos', [angle], 'cos'), alpha], 'cos_alpha');
  });
}

/** Q(n, seed) = C·diag(σ) [n, n] (trellis-rotation.ts rotationMatrix), or its transpose diag(σ)·Cᵀ; shared by the layers with that n and seed. */
function rotation(model: Model, n: number, seed: number, transposed: boolean): string {
  return shared(model, `pare.trellis.q${transposed ? 't' : ''}_n${n}_s${seed}`, (g) => {
    const c = dct(model, n, transposed);
    // σ_j = −1 when the top bit of (a·(h² mod 2^32) + b) mod 2^32 is set, h = seed·2^16 + j (trellis-rotation.ts rotationSigns)
    const h = g.op('Add', [`${c}/j`, int64(model, [seed * 65536])], 'h');
    const square = g.op('Mod', [g.op('Mul', [h, h], 'hh'), int64(model, [TWO32])], 'h2');
    const hash = g.op('Mod', [g.op('Add', [g.op('Mul', [square, int64(model, [MAD_A])], 'a_h2'), int64(model, [MAD_B])], 'a_h2_b'), int64(model, [TWO32])], 'hash');
    const sign = g.op('Where', [g.op('Less', [hash, int64(model, [TWO31])], 'plus'), float32(model, 'one', 1), float32(model, 'minus_one', -1)], 'sign');
    return g.op('Mul', [c, sign], 'q');
  });
}

/** Column c's exponent byte ⌊c/2⌋ and the divisor 16^(c mod 2) that brings its nibble down: [cols] int64 each, shared by layers of `cols` inputs. */
function nibbleIndex(model: Model, cols: number): { byte: string; divisor: string } {
  const column = (g: Chain) => g.op('Range', [int64(model, [0]), int64(model, [cols]), int64(model, [1])], 'column');
  return {
    byte: shared(model, `pare.trellis.nibble_byte_c${cols}`, (g) => g.op('Div', [column(g), int64(model, [2])], 'byte')),
    divisor: shared(model, `pare.trellis.nibble_div_c${cols}`, (g) => g.op('Gather', [int64(model, [1, 16]), g.op('Mod', [column(g), int64(model, [2])], 'parity')], 'divisor', [attr.int('axis', 0)])),
  };
}

/** The stream bytes holding state n's bits, ⌊k·n/8⌋ + 0, 1, 2: [3, N] int64, shared by layers of N weights. */
function byteWindows(model: Model, N: number, k: number): string {
  return shared(model, `pare.trellis.window_N${N}_k${k}`, (g) => {
    const bit = g.op('Mul', [g.op('Range', [int64(model, [0]), int64(model, [N]), int64(model, [1])], 'n'), int64(model, [k])], 'bit');
    return g.op('Add', [g.op('Div', [bit, int64(model, [8])], 'byte'), int64(model, [0, 1, 2], [3, 1])], 'bytes');
  });
}

/** 2^(24 − L − (k·n mod 8)): what the three bytes' value is divided by to end at state n's last bit, [N] int64. */
function stateShifts(model: Model, N: number, k: number, L: number): string {
  return shared(model, `pare.trellis.shift_N${N}_k${k}_L${L}`, (g) => {
    const offset = g.op('Mod', [g.op('Mul', [g.op('Range', [int64(model, [0]), int64(model, [N]), int64(model, [1])], 'n'), int64(model, [k])], 'bit'), int64(model, [8])], 'offset');
    return g.op('Gather', [int64(model, Array.from({ length: 8 }, (_, o) => 2 ** (24 - L - o))), offset], 'shift', [attr.int('axis', 0)]);
  });
}

/**
 * Replaces `layer` by the stream and scale of `t` and the subgraph that rebuilds Ŵᵀ at load; returns
 * the bytes of the initializers stored for this layer (stream with its 2 bytes of padding, and scale).
 */
export function emitTrellisAtLoad(model: Model, layer: LinearLayer, t: TrellisLayer): { storedBytes: number } {
  checkTrellisOpset(model);
  const { L, k } = t.shape;
  const [rows, cols] = [t.rows, t.cols];
  if (rows !== layer.outFeatures || cols !== layer.inFeatures) throw new Error(`emitTrellisAtLoad: trellis of ${rows}×${cols} for layer '${layer.name}' of ${layer.outFeatures}×${layer.inFeatures}`);
  const base = layer.node.name ?? layer.name;
  const g = new Chain(chainPrefix(model)); // short: every trellis layer repeats these names
  const stream = uniqueInitializerName(model, `${layer.name}.trellis_stream`);
  model.setInitializer({ name: stream, dataType: DataType.UINT8, dims: [t.stream.length], data: t.stream });
  const scale = uniqueInitializerName(model, `${layer.name}.trellis_scale`);
  model.setInitializer({ name: scale, dataType: DataType.FLOAT, dims: [], data: bytesOf(DataType.FLOAT, [t.scale]) });
  const code = codebook(model, L);

  // state_n from the three bytes holding bits k·n … k·n + L − 1
  const window = g.op('Gather', [stream, byteWindows(model, rows * cols, k)], 'b', [attr.int('axis', 0)]); // [3, N]
  const v = g.op('MatMul', [int64(model, [65536, 256, 1]), g.op('Cast', [window], 'bi', [attr.int('to', DataType.INT64)])], 'v');
  const state = g.op('Mod', [g.op('Div', [v, stateShifts(model, rows * cols, k, L)], 'vs'), int64(model, [2 ** L])], 's');

  // W'ᵀ [cols, rows] = c(state) · (scale · 2^(e_c/4)) row by row, then Ŵᵀ = Q_inᵀ · W'ᵀ · Q_out
  const exponents = uniqueInitializerName(model, `${layer.name}.trellis_exponents`);
  const packed = packExponents(t.exponents);
  model.setInitializer({ name: exponents, dataType: DataType.UINT8, dims: [packed.length], data: packed });
  const index = nibbleIndex(model, cols);
  const nibble = g.op('Mod', [g.op('Div', [g.op('Cast', [g.op('Gather', [exponents, index.byte], 'eb', [attr.int('axis', 0)])], 'ei', [attr.int('to', DataType.INT64)]), index.divisor], 'es'), int64(model, [16])], 'e');
  const multiplier = g.op('Gather', [multiplierTable(model), nibble], 'm', [attr.int('axis', 0)]);
  const columnScale = g.op('Reshape', [g.op('Mul', [scale, multiplier], 'sm'), int64(model, [cols, 1])], 'cs');
  const codes = g.op('Reshape', [g.op('Gather', [code, state], 'c', [attr.int('axis', 0)]), int64(model, [cols, rows])], 'ct');
  const rotatedT = g.op('Mul', [codes, columnScale], 'wt');
  const left = t.seeds.in < 0 ? rotatedT : g.op('MatMul', [rotation(model, cols, t.seeds.in, true), rotatedT], 'l');
  const weightT = t.seeds.out < 0 ? left : g.op('MatMul', [left, rotation(model, rows, t.seeds.out, false)], 'w');

  const epilogue = gemmEpilogue(model, layer, base, 'quantize.trellis');
  replaceNode(model.graph, layer.node, [...g.nodes, makeNode('MatMul', [layer.input, weightT], [epilogue.product], `${base}/tr/MatMul`), ...epilogue.nodes]);
  removeUnused(model);
  return { storedBytes: t.stream.length + 4 + packed.length };
}

/** Two exponents a byte, e + 8 (0 … 15): column 2i in the low nibble, 2i + 1 in the high one. */
export function packExponents(exponents: Int8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(exponents.length / 2));
  exponents.forEach((e, c) => (out[c >> 1]! |= (e + 8) << (4 * (c & 1))));
  return out;
}

/** 2^((v − 8)/4) for the 16 nibble values v, float32 as trellis-layer.ts columnMultipliers computes them (64 bytes a model). */
function multiplierTable(model: Model): string {
  const values = columnMultipliers(Int8Array.from({ length: 16 }, (_, v) => v - 8));
  return sharedConstant(model, 'pare.trellis.multipliers', DataType.FLOAT, [16], new Uint8Array(values.buffer));
}

/** A prefix no other trellis layer of the model uses. */
function chainPrefix(model: Model): string {
  const used = new Set((model.graph.node ?? []).flatMap((n) => n.output ?? []).filter((o) => o.startsWith('pare.t')).map((o) => o.slice(0, o.indexOf('/'))));
  for (let i = 0; ; i++) if (!used.has(`pare.t${i}`)) return `pare.t${i}`;
}
