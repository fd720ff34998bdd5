import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/model/dtype.js';
import { attrInt, GraphIndex } from '../../src/model/graph.js';
import { writeWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { toFloat32 } from '../../src/model/pack.js';
import { mixed } from '../../src/quantize/mixed.js';
import { unpackUint3 } from '../../src/quantize/pack3.js';
import { allClose } from '../helpers.js';
import { calibratedContext, storiesCalibration, storiesLogits } from './models.js';

/**
 * quantize.mixed with float zero points: the budget counts them at their stored bytes, and ONNX
 * Runtime computes what the float model holding the stored weights computes. The reference weights
 * are decoded here from the written tensors (codes unpacked, ŵ = (q − z)·s in float64), not taken
 * from the quantizer.
 */

const ROOT = resolve(__dirname, '../..');
const STORIES = join(ROOT, 'fixtures/stories260K/model.onnx');

/** A float initializer, or the float16 one a Cast reads. */
function floats(model: Model, index: GraphIndex, name: string): Float32Array {
  const cast = index.producer.get(name);
  const stored = cast?.op_type === 'Cast' ? cast.input![0]! : name;
  const t = model.tensor(stored);
  return toFloat32(t.dataType, t.data, t.dims.reduce((a, b) => a * b, 1));
}

/** codes [N, blocks, block] of a MatMulNBits blob: 8 bits as they are, 4 and 2 low bits first, or the packed 3-bit initializer behind the unpacking subgraph. */
function codes(model: Model, layer: string, blob: string, bits: number, count: number): Uint8Array {
  if (!model.hasInitializer(blob)) return unpackUint3(model.tensor(`${layer}.weight_q3`).data).subarray(0, count);
  const bytes = model.tensor(blob).data;
  const width = bits === 3 ? 4 : bits;
  const per = 8 / width;
  return Uint8Array.from({ length: count }, (_, i) => (bytes[Math.floor(i / per)]! >> ((i % per) * width)) & ((1 << width) - 1));
}

/** The float model: every MatMulNBits of `quantized` decoded into the matching layer of a fresh copy of the input. */
function decodedReference(quantized: Model): Model {
  const reference = readOnnx(STORIES);
  const index = new GraphIndex(quantized.graph);
  const byOutput = new Map(linears(reference).map((l) => [l.output, l]));
  for (const node of quantized.graph.node ?? []) {
    if (node.op_type !== 'MatMulNBits') continue;
    const [K, N, bits, block] = ['K', 'N', 'bits', 'block_size'].map((a) => attrInt(node, a, 0));
    const layer = byOutput.get(node.output![0]!)!;
    const blocks = Math.ceil(K! / block!);
    const q = codes(quantized, layer.name, node.input![1]!, bits!, N! * blocks * block!);
    const s = floats(quantized, index, node.input![2]!);
    const z = floats(quantized, index, node.input![3]!);
    expect(z.length).toBe(N! * blocks);
    const W = new Float32Array(N! * K!);
    for (let n = 0; n < N!; n++) {
      for (let k = 0; k < K!; k++) {
        const g = n * blocks + Math.floor(k / block!);
        W[n * K! + k] = (q[n * blocks * block! + k]! - z[g]!) * s[g]!;
      }
    }
    writeWeight(reference, layer, W);
  }
  return reference;
}

describe('quantize.mixed with float zero points', () => {
  const cases = [
    { name: 'float16 scales, packed 3-bit codes, GPTQ + joint refit, act_order', params: { scale_dtype: 'float16', packed_3bit: true, refit_scales: true, act_order: true } },
    { name: 'float32 scales, RTN (integer-valued float zero points)', params: { scale_dtype: 'float32', method: 'rtn' } },
  ] as const;
  for (const c of cases) {
    it(`${c.name}: the allocation's bytes are the written tensors' bytes, and ONNX Runtime equals the decoded float model`, async () => {
      const model = readOnnx(STORIES);
      const before = new Set((model.graph.initializer ?? []).map((t) => t.name));
      const data = await storiesCalibration(join(ROOT, 'fixtures'));
      const params = mixed.params.parse({ budget_bits: 3.5, symmetric: false, sensitivity: 'output', float_zero_points: true, ...c.params });
      const layers = linears(model).filter((l) => l.name.startsWith('layers.'));
      const result = await mixed.apply(model, params, calibratedContext(model, data, 16, layers));
      const summary = result.summary as { bytes: number; allocation: string };
      // more than one width in the mix, so the byte count covers several choices
      expect(new Set([...summary.allocation.matchAll(/(\d)-bit/g)].map((m) => m[1])).size).toBeGreaterThan(1);
      // written: codes (packed or in their container), scales and float zero points; the 3-bit unpacking constants are shared and not weights
      const written = (model.graph.initializer ?? []).filter((t) => !before.has(t.name) && !t.name!.startsWith('pare.u3.'));
      expect(written.reduce((a, t) => a + model.tensor(t).data.byteLength, 0)).toBe(summary.bytes);
      expect(result.layers.reduce((a, l) => a + l.bytes_after, 0)).toBe(summary.bytes);
      const zeroPoints = written.filter((t) => /weight_zero_points(_f16)?$/.test(t.name!));
      expect(zeroPoints).toHaveLength(layers.length);
      const zeros = zeroPoints.flatMap((t) => [...toFloat32(t.data_type!, model.tensor(t).data)]);
      expect(zeroPoints.every((t) => t.data_type === (c.params.scale_dtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT))).toBe(true);
      // the joint refit moves zero points off the integers; plain RTN keeps them there
      expect(zeros.some((z) => z !== Math.round(z))).toBe('refit_scales' in c.params);
      const got = await storiesLogits(model);
      const want = await storiesLogits(decodedReference(model));
      const cmp = allClose(got, want, 1e-4, 1e-4);
      expect(cmp.relFro, cmp.worst).toBeLessThanOrEqual(1e-5); // measured 0 (float16) and 3.4e-7 (float32)
    }, 120_000);
  }

  it('float_zero_points on a symmetric grid is a recipe error naming the field', () => {
    const r = mixed.params.safeParse({ budget_bits: 4, symmetric: true, float_zero_points: true });
    expect(r.success).toBe(false);
    expect(r.error!.issues.map((i) => i.path.join('.'))).toContain('float_zero_points');
  });
});
