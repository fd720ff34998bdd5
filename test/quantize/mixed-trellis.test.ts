import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/model/dtype.js';
import { removeUnused } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { mixed } from '../../src/quantize/mixed.js';
import { trellis } from '../../src/quantize/trellis.js';
import { madCodebook, unpackStates } from '../../src/quantize/trellis-code.js';
import { rotationMatrix } from '../../src/quantize/trellis-rotation.js';
import { allClose } from '../helpers.js';
import { calibratedContext, storiesCalibration, storiesLogits } from './models.js';

/**
 * quantize.mixed with trellis choices beside the grids: the allocation mixes both families within
 * the budget, its bytes are the tensors written, and ONNX Runtime (which rebuilds the trellis
 * weights at load) computes what the same model computes with each trellis decoder replaced by the
 * weight decoded here in float64 from the stored stream, exponents and scale.
 */

const ROOT = resolve(__dirname, '../..');
const STORIES = join(ROOT, 'fixtures/stories260K/model.onnx');

describe('quantize.mixed with trellis choices', () => {
  it('allocates grids and trellis codes within the budget; bytes = written tensors; ORT equals the decoded float model', async () => {
    const model = readOnnx(STORIES);
    const reference = readOnnx(STORIES);
    const before = new Set((model.graph.initializer ?? []).map((t) => t.name));
    const data = await storiesCalibration(join(ROOT, 'fixtures'));
    // q/k (64-wide rows) are where grids win on stories260K, the MLP where trellis codes do
    const params = mixed.params.parse({ budget_bits: 3.5, bits: [3, 4], group_sizes: [64], sensitivity: 'output', scale_dtype: 'float16', packed_3bit: true, trellis_bits: [2, 3, 4], trellis_state_bits: 8 });
    const layers = linears(model).filter((l) => /^layers\.[01]\./.test(l.name));
    const result = await mixed.apply(model, params, calibratedContext(model, data, 8, layers));
    const summary = result.summary as { bytes: number; budget_bytes: number; allocation: string };
    expect(summary.allocation).toMatch(/trellis/);
    expect(summary.allocation).toMatch(/-bit g64/);
    expect(summary.bytes).toBeLessThanOrEqual(summary.budget_bytes);
    const written = (model.graph.initializer ?? []).filter((t) => !before.has(t.name) && !t.name!.startsWith('pare.'));
    expect(written.reduce((a, t) => a + model.tensor(t).data.byteLength, 0)).toBe(summary.bytes);
    expect(result.layers.reduce((a, l) => a + l.bytes_after, 0)).toBe(summary.bytes);

    // the reference: the same model with each trellis decoder replaced by the weight decoded here in float64 from the stored stream, exponents and scale
    const trellisLayers = result.layers.filter((l) => String(l.extra?.choice).startsWith('trellis'));
    expect(trellisLayers.length).toBeGreaterThan(0);
    const decoded = readOnnx(STORIES);
    decoded.graph.node = (model.graph.node ?? []).map((n) => ({ ...n, input: [...(n.input ?? [])] }));
    for (const t of model.graph.initializer ?? []) if (!decoded.hasInitializer(t.name!)) decoded.setInitializer(model.tensor(t));
    const byName = new Map(layers.map((l) => [l.name, l]));
    for (const stat of trellisLayers) {
      const layer = byName.get(stat.name)!;
      const [rows, cols] = [layer.outFeatures, layer.inFeatures];
      const shape = { L: 8, k: Number(stat.extra!.bits) };
      const states = unpackStates(model.tensor(`${layer.name}.trellis_stream`).data, rows * cols, shape);
      const code = madCodebook(shape.L);
      const scale = new Float32Array(model.tensor(`${layer.name}.trellis_scale`).data.slice().buffer)[0]!;
      const packed = model.tensor(`${layer.name}.trellis_exponents`).data;
      const Wr = new Float64Array(rows * cols);
      for (let c = 0; c < cols; c++) {
        const e = ((packed[c >> 1]! >> (4 * (c & 1))) & 15) - 8;
        const colScale = Math.fround(scale * Math.fround(2 ** (e / 4)));
        for (let r = 0; r < rows; r++) Wr[r * cols + c] = Math.fround(code[states[c * rows + r]!]! * colScale);
      }
      const [Qo, Qi] = [rotationMatrix(rows, 0), rotationMatrix(cols, 1)];
      // Ŵᵀ[c, r] = Σ_a Σ_b Q_out[a, r] · W'[a, b] · Q_in[b, c]
      const tmp = new Float64Array(rows * cols); // W'·Q_in
      for (let a = 0; a < rows; a++) for (let b = 0; b < cols; b++) for (let c = 0; c < cols; c++) tmp[a * cols + c]! += Wr[a * cols + b]! * Qi[b * cols + c]!;
      const WT = new Float32Array(cols * rows);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
        let v = 0;
        for (let a = 0; a < rows; a++) v += Qo[a * rows + r]! * tmp[a * cols + c]!;
        WT[c * rows + r] = v;
      }
      const node = (decoded.graph.node ?? []).find((n) => n.output?.includes(layer.output))!;
      expect(node.op_type).toBe('MatMul');
      decoded.setInitializer({ name: `${layer.name}.decoded`, dataType: DataType.FLOAT, dims: [cols, rows], data: new Uint8Array(WT.buffer) });
      node.input![1] = `${layer.name}.decoded`;
    }
    removeUnused(decoded);
    const cmp = allClose(await storiesLogits(model), await storiesLogits(decoded), 1e-4, 1e-4);
    expect(cmp.relFro, cmp.worst).toBeLessThanOrEqual(1e-5);
    // and the model did change: the logits moved from the dense model's, as far as a ≤ 4-bit model moves them
    const moved = allClose(await storiesLogits(model), await storiesLogits(reference), 0, 0);
    expect(moved.relFro).toBeGreaterThan(1e-3);
    expect(moved.relFro).toBeLessThan(0.5);
  }, 120_000);

  it('trellis bits at or above the state bits (quantize.trellis and quantize.mixed), and bias_correction with trellis choices, are recipe errors naming the field', () => {
    const wide = mixed.params.safeParse({ budget_bits: 4, trellis_bits: [6], trellis_state_bits: 6 });
    expect(wide.success).toBe(false);
    expect(wide.error!.issues.map((i) => i.path.join('.'))).toContain('trellis_bits');
    const bias = mixed.params.safeParse({ budget_bits: 4, trellis_bits: [3], bias_correction: true });
    expect(bias.success).toBe(false);
    expect(bias.error!.issues.map((i) => i.path.join('.'))).toContain('bias_correction');
    const pass = trellis.params.safeParse({ bits: 6, state_bits: 6 });
    expect(pass.success).toBe(false);
    expect(pass.error!.issues.map((i) => i.path.join('.'))).toContain('bits');
    const none = mixed.params.safeParse({ budget_bits: 4, bits: [] });
    expect(none.success).toBe(false);
  });
});
