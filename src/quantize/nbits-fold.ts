import { DataType } from '../model/dtype.js';
import { GraphIndex } from '../model/graph.js';
import { removeUnused } from '../model/linear-weights.js';
import { initializerValues } from '../model/linears.js';
import type { HostTensor, Model } from '../model/model.js';
import type { NodeProto } from '../model/onnx-schema.js';
import { sliceFor, subModel } from '../model/subgraph.js';
import { captureSession } from '../runtime/ort.js';
import { packUint3, unpackUint3 } from './pack3.js';

/**
 * MatMulNBits whose codes or scales a constant sub-graph computes (packed_3bit's unpacking chain,
 * scale_dtype: float16's Cast) as a working copy with those inputs stored, which the tfjs executor
 * trains; and trained codes written back into the original's own storage. ONNX Runtime folds the
 * chains, so the stored values are what it computes at load.
 */

/**
 * A working copy of `model` (its graph arrays copied, so editing one leaves the other) where every
 * MatMulNBits input is an initializer, and so is every MatMul/Gemm weight a constant subgraph
 * computes (quantize.trellis's decoder, Kronecker factors expanded at load): the tfjs executor runs
 * those layers as the float weights ONNX Runtime folds them into, instead of their integer decoders.
 */
export async function foldNBitsInputs(model: Model): Promise<{ work: Model; folded: Map<string, string> }> {
  const g = model.graph;
  const work = model.derive({
    ...model.proto,
    graph: { ...g, node: (g.node ?? []).map((n) => ({ ...n, input: [...(n.input ?? [])] })), initializer: [...(g.initializer ?? [])], input: [...(g.input ?? [])], output: [...(g.output ?? [])], value_info: [...(g.value_info ?? [])] },
  });
  // computed input name -> the initializer that stores its value in `work`
  const folded = new Map<string, string>();
  const constants = initializerValues(work);
  const computedWeights = (work.graph.node ?? []).filter((n) => (n.op_type === 'MatMul' || n.op_type === 'Gemm') && !constants.has(n.input?.[0] ?? '')).map((n) => n.input?.[1] ?? '').filter((x) => x && constants.has(x) && !work.hasInitializer(x));
  const computed = [...new Set([...nbitsNodes(work).flatMap((n) => [1, 2, 3].map((i) => n.input?.[i] ?? '').filter((x) => x && !work.hasInitializer(x))), ...computedWeights])];
  if (computed.length === 0) return { work, folded };
  const values = await constantValues(work, computed);
  for (const name of computed) {
    const stored = `${name}/folded`;
    work.setInitializer({ ...values.get(name)!, name: stored });
    folded.set(name, stored);
  }
  for (const n of work.graph.node ?? []) if (n.op_type === 'MatMulNBits' || n.op_type === 'MatMul' || n.op_type === 'Gemm') n.input = n.input!.map((x) => folded.get(x) ?? x);
  removeUnused(work);
  return { work, folded };
}

/**
 * Writes MatMulNBits code blob `blob` (the trained copy of the input `name`, [N, blocks, block/2]) into
 * `model`: the initializer itself, or packed_3bit's uint8 [M, 3] initializer behind the chain. The
 * chain is then folded again and must give `blob` byte for byte.
 */
export async function writeNBitsCodes(model: Model, name: string, blob: HostTensor): Promise<void> {
  if (model.hasInitializer(name)) {
    model.setInitializer({ ...blob, name });
    return;
  }
  const slice = sliceFor(model, new GraphIndex(model.graph), [name], () => false);
  const packedNames = [...new Set(slice.nodes.flatMap((n) => n.input ?? []))].filter((x) => {
    const t = model.initializer(x);
    return t?.data_type === DataType.UINT8 && t.dims?.length === 2 && Number(t.dims[1]) === 3;
  });
  if (packedNames.length !== 1) throw new Error(`MatMulNBits codes '${name}': expected one packed 3-bit initializer behind the chain, found ${packedNames.length}`);
  const packedName = packedNames[0]!;
  const packed = model.tensor(packedName);
  const before = (await constantValues(model, [name])).get(name)!;
  // the chain adds a fixed shift to each code (a symmetric grid re-centred in the 4-bit container)
  const shift = nibbles(before.data)[0]! - unpackUint3(packed.data)[0]!;
  const codes = Uint8Array.from(nibbles(blob.data), (q) => q - shift);
  model.setInitializer({ ...packed, data: packUint3(codes) });
  const after = (await constantValues(model, [name])).get(name)!;
  if (after.data.length !== blob.data.length || after.data.some((b, i) => b !== blob.data[i])) throw new Error(`MatMulNBits codes '${name}': the repacked 3-bit codes do not rebuild the trained blob`);
}

function nbitsNodes(model: Model): NodeProto[] {
  return (model.graph.node ?? []).filter((n) => n.op_type === 'MatMulNBits');
}

/** 4-bit codes of a blob, low nibble first. */
function nibbles(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length * 2);
  for (let i = 0; i < bytes.length; i++) {
    out[2 * i] = bytes[i]! & 15;
    out[2 * i + 1] = bytes[i]! >> 4;
  }
  return out;
}

/** Values that depend on initializers alone, computed by ONNX Runtime. */
async function constantValues(model: Model, names: string[]): Promise<Map<string, HostTensor>> {
  const slice = sliceFor(model, new GraphIndex(model.graph), names, () => false);
  if (slice.reads.length > 0) throw new Error(`${names.join(', ')} depend on graph inputs (${slice.reads.join(', ')}), not on initializers alone`);
  const session = await captureSession(subModel(model, slice.nodes, []), names);
  try {
    const out = await session.run({}, names);
    const values = new Map<string, HostTensor>();
    for (const name of names) {
      const t = out[name]!;
      const bytes = t.data as Uint8Array | Float32Array;
      if (t.type !== 'uint8' && t.type !== 'float32') throw new Error(`'${name}' computes ${t.type}; expected uint8 codes or float32 scales or weights`);
      values.set(name, { name, dataType: t.type === 'uint8' ? DataType.UINT8 : DataType.FLOAT, dims: [...t.dims], data: new Uint8Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)) });
    }
    return values;
  } finally {
    await session.release();
  }
}
