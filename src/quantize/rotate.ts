import { z } from 'zod';
import { UserError } from '../errors.js';
import { DataType } from '../model/dtype.js';
import { tokenEmbedding } from '../model/embedding.js';
import { GraphIndex } from '../model/graph.js';
import { readWeight, writeWeight } from '../model/linear-weights.js';
import { linears, type LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { toFloat32 } from '../model/pack.js';
import { definePass, type LayerStat } from '../pass/pass.js';
import { randomOrthogonal } from './orthogonal.js';
import { foldGroups } from './smoothquant.js';

/**
 * Incoherence rotation of the residual stream (QuaRot, Ashkboos et al. 2024; SpinQuant's R1), exact
 * in float: every residual value h becomes h·Q for an orthogonal Q [D, D]. RMSNorm commutes with Q
 * once its weight γ is ones (‖h·Q‖ = ‖h‖), so each norm's γ is folded into the linears it feeds first.
 * In y = x·Wᵀ form (W [out, in], pare's kernel layout):
 *   E → E·Q                       the token embedding (Gather)
 *   W → W·diag(γ)·Q               every linear reading a norm of the residual (q/k/v, gate/up, lm_head)
 *   W → Qᵀ·W                      every linear writing the residual (o_proj, down_proj)
 *   γ → 1                         every norm of the residual
 * A lm_head tied to the embedding gets its own weight. The rotated weights have no outliers for a
 * quantizer to spend its grid on.
 */

const RotateParams = z.strictObject({
  seed: z.number().int().default(0).describe('seed of the random signs (Hadamard) or the random orthogonal matrix (hidden size not a power of two)'),
});

interface Plan {
  dim: number;
  /** linears reading a norm of the residual, with that norm's effective weight vector */
  readers: { layer: LinearLayer; gamma: Float64Array }[];
  writers: LinearLayer[];
  /** norm weight initializers, with the offset they are read with (Gemma's 1 + w) */
  norms: Map<string, number>;
}

/** Find the residual stream from the token embedding through the residual Adds, and who reads and writes it. */
function plan(model: Model, pass: string): Plan & { embedding: NonNullable<ReturnType<typeof tokenEmbedding>> } {
  const embedding = tokenEmbedding(model);
  if (!embedding) throw new UserError(`${pass}: no token embedding (a Gather from a float [vocab, hidden] initializer by a graph input) starts a residual stream in ${model.path}; the rotation is for decoder LMs`);
  const index = new GraphIndex(model.graph);
  const all = linears(model);
  const byOutput = new Map(all.map((l) => [l.output, l]));
  const residual = new Set<string>();
  const writers: LinearLayer[] = [];
  let r = embedding.node.output![0]!;
  residual.add(r);
  for (;;) {
    const adds = (index.consumers.get(r) ?? []).filter((n) => n.op_type === 'Add' && n.input!.some((i) => i !== r && byOutput.has(i)));
    if (adds.length === 0) break;
    if (adds.length > 1) throw new UserError(`${pass}: the residual value '${r}' feeds ${adds.length} Adds with a linear; expected one residual Add per sublayer`);
    const add = adds[0]!;
    writers.push(byOutput.get(add.input!.find((i) => i !== r)!)!);
    r = add.output![0]!;
    residual.add(r);
  }
  const { byInput, foldOf } = foldGroups(model, all);
  // x̂·γ where x̂ = Mul(h, 1/rms(h)) and h a residual value
  const normOf = (x: string): string | undefined => {
    const mul = index.producer.get(x);
    if (mul?.op_type !== 'Mul') return undefined;
    for (const i of mul.input ?? []) {
      const inner = index.producer.get(i);
      const h = inner?.op_type === 'Mul' ? inner.input!.find((v) => residual.has(v)) : undefined;
      if (h) return h;
    }
    return undefined;
  };
  const readers: Plan['readers'] = [];
  const norms = new Map<string, number>();
  for (const [x, group] of byInput) {
    if (!normOf(x)) continue;
    const fold = foldOf(x);
    if (fold?.kind !== 'vector') throw new UserError(`${pass}: '${group[0]!.name}' reads a norm of the residual stream whose weight is not a constant vector read by that norm alone; cannot fold it`);
    const others = (index.consumers.get(x) ?? []).filter((n) => n.op_type !== 'Shape' && !group.some((l) => l.node === n));
    if (others.length) throw new UserError(`${pass}: the norm output '${x}' also feeds ${others.map((n) => `'${n.name ?? n.op_type}' (${n.op_type})`).join(', ')}, which would see rotated values`);
    const t = model.tensor(fold.name);
    const gamma = Float64Array.from(toFloat32(t.dataType, t.data, t.dims.reduce((a, b) => a * b, 1)), (v) => v + (fold.offset ?? 0));
    norms.set(fold.name, fold.offset ?? 0);
    for (const layer of group) readers.push({ layer, gamma });
  }
  // anything else reading the residual would see it rotated: only norms (Pow, ReduceMean, Mul by 1/rms), residual Adds and Shape may;
  // a Mul or Add with a constant vector (a per-channel scale or bias) does not commute with Q
  const perChannel = (name: string) => model.hasInitializer(name) && model.tensor(name).dims.reduce((a, b) => a * b, 1) > 1;
  for (const h of residual) {
    for (const n of index.consumers.get(h) ?? []) {
      const op = n.op_type ?? '';
      const ok = ['Pow', 'ReduceMean', 'Shape'].includes(op) || (['Mul', 'Add'].includes(op) && !n.input!.some((i) => i !== h && perChannel(i)));
      if (!ok) throw new UserError(`${pass}: the residual value '${h}' feeds '${n.name ?? op}' (${op}), which would see rotated values`);
    }
  }
  const dim = embedding.hidden;
  for (const l of writers) {
    if (l.outFeatures !== dim) throw new UserError(`${pass}: '${l.name}' writes the residual with ${l.outFeatures} outputs, expected ${dim}`);
    if (l.bias) throw new UserError(`${pass}: '${l.name}' writes the residual with a bias; rotating biases is not supported`);
  }
  for (const { layer } of readers) if (layer.inFeatures !== dim) throw new UserError(`${pass}: '${layer.name}' reads the residual with ${layer.inFeatures} inputs, expected ${dim}`);
  if (!writers.length || !readers.length) {
    throw new UserError(`${pass}: found ${writers.length} linears adding into the residual stream after the token embedding '${embedding.table}' and ${readers.length} reading its RMSNorms; the rotation needs a Llama-style pre-norm stream (Gather → Add(h, linear) …, norms x/rms(x)·γ)`);
  }
  return { embedding, dim, readers, writers, norms };
}

/** W [rows, D] → W·diag(γ)·Q (float64, stored float32) */
function rotateInputs(W: Float32Array, rows: number, D: number, gamma: Float64Array, Q: Float64Array): Float32Array {
  const out = new Float32Array(rows * D);
  const row = new Float64Array(D);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < D; k++) row[k] = W[r * D + k]! * gamma[k]!;
    for (let j = 0; j < D; j++) {
      let v = 0;
      for (let k = 0; k < D; k++) v += row[k]! * Q[k * D + j]!;
      out[r * D + j] = v;
    }
  }
  return out;
}

/** W [D, cols] → Qᵀ·W */
function rotateOutputs(W: Float32Array, D: number, cols: number, Q: Float64Array): Float32Array {
  const out = new Float32Array(D * cols);
  const acc = new Float64Array(cols);
  for (let i = 0; i < D; i++) {
    acc.fill(0);
    for (let j = 0; j < D; j++) {
      const q = Q[j * D + i]!;
      for (let c = 0; c < cols; c++) acc[c] += q * W[j * cols + c]!;
    }
    out.set(acc, i * cols);
  }
  return out;
}

export const rotate = definePass({
  id: 'quantize.rotate',
  summary: 'QuaRot-style incoherence rotation: an orthogonal (randomized Hadamard) rotation folded into the residual stream of a decoder LM, norms folded first (exact in float)',
  params: RotateParams,
  needsCalibration: () => ({ need: 'none' }),
  graphWide: true,
  async apply(model, params, ctx) {
    const t0 = performance.now();
    const p = plan(model, this.id);
    const D = p.dim;
    const { Q, kind } = randomOrthogonal(D, params.seed);
    // read everything before writing: a tied lm_head reads the embedding table
    const readW = p.readers.map(({ layer }) => readWeight(model, layer));
    const writeW = p.writers.map((layer) => readWeight(model, layer));
    const table = model.tensor(p.embedding.table);
    const E = toFloat32(table.dataType, table.data, p.embedding.vocab * D);
    const layers: LayerStat[] = [];
    const stat = (l: LinearLayer, role: string): LayerStat => ({ name: l.name, kind: l.kind, shape: [l.outFeatures, l.inFeatures], ms: 0, bytes_before: l.outFeatures * l.inFeatures * 4, bytes_after: l.outFeatures * l.inFeatures * 4, extra: { role } });
    p.readers.forEach(({ layer, gamma }, i) => {
      ctx.progress.layer(i, p.readers.length + p.writers.length, layer.name);
      writeWeight(model, layer, rotateInputs(readW[i]!, layer.outFeatures, D, gamma, Q));
      layers.push(stat(layer, 'reads the residual: W·diag(γ)·Q'));
    });
    p.writers.forEach((layer, i) => {
      ctx.progress.layer(p.readers.length + i, p.readers.length + p.writers.length, layer.name);
      writeWeight(model, layer, rotateOutputs(writeW[i]!, D, layer.inFeatures, Q));
      layers.push(stat(layer, 'writes the residual: Qᵀ·W'));
    });
    const ones = Float64Array.from({ length: D }, () => 1);
    model.setInitializer({ name: p.embedding.table, dataType: DataType.FLOAT, dims: [p.embedding.vocab, D], data: new Uint8Array(rotateInputs(E, p.embedding.vocab, D, ones, Q).buffer) });
    for (const [name, offset] of p.norms) model.setInitializer({ name, dataType: DataType.FLOAT, dims: [D], data: new Uint8Array(Float32Array.from({ length: D }, () => 1 - offset).buffer) });
    if (layers[0]) layers[0].ms = performance.now() - t0;
    return { layers, warnings: [], summary: { rotation: kind === 'hadamard' ? 'randomized Hadamard' : 'random orthogonal', dim: D, seed: params.seed, readers: p.readers.length, writers: p.writers.length, norms: p.norms.size, embedding: p.embedding.table } };
  },
});
