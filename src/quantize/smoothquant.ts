import { z } from 'zod';
import { DataType } from '../model/dtype.js';
import { attrInt, GraphIndex } from '../model/graph.js';
import { readWeight, writeWeight } from '../model/linear-weights.js';
import { linears, readInt64s, type LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { toFloat32 } from '../model/pack.js';
import { definePass, type LayerStat } from '../pass/pass.js';

/**
 * SmoothQuant (Xiao et al. 2023): migrate activation outliers into the weights with a per-input-
 * channel scale s_j = max|X_j|^α / max|W_:,j|^(1−α). The identity
 *   X·Wᵀ = (X·diag(1/s)) · (W·diag(s))ᵀ
 * is made exact by folding 1/s into what produces X: a norm's weight (the Mul by a constant vector
 * that ends an exported RMSNorm, the (1 + w) of Gemma's norms — w ← (1 + w)/s − 1 —, or
 * LayerNormalization's scale and bias) or the output rows of the linear that feeds X through an
 * elementwise Mul (SwiGLU's up_proj before down_proj; the up rows of a fused gate_up_proj whose Split
 * hands them on). Layers reading the same X share s. A layer whose input has no such producer is
 * left as is, with a warning.
 */

const SmoothParams = z.strictObject({
  alpha: z.number().min(0).max(1).default(0.5).describe('migration strength: 0 leaves activations, 1 moves all of their range into the weights'),
});

export type Fold =
  | { kind: 'vector'; name: string; offset?: number }
  | { kind: 'layernorm'; scale: string; bias?: string }
  /** rows from `row0` on (a part of a fused linear) */
  | { kind: 'linear'; layer: LinearLayer; row0: number };

/** The value of a one-element float constant, or undefined. */
function scalarValue(model: Model, name: string | undefined): number | undefined {
  if (!name || !model.hasInitializer(name)) return undefined;
  const t = model.tensor(name);
  return t.dims.reduce((a, b) => a * b, 1) === 1 && t.dataType === DataType.FLOAT ? toFloat32(t.dataType, t.data, 1)[0] : undefined;
}

/** Where 1/s can be folded so the producer of `x` emits x·diag(1/s); undefined when nowhere exact. */
function foldTarget(model: Model, index: GraphIndex, x: string, all: LinearLayer[]): Fold | undefined {
  const p = index.producer.get(x);
  if (!p) return undefined;
  const soleUse = (name: string) => index.consumerCount(name) === 1;
  if (p.op_type === 'LayerNormalization' && p.input?.[1] && model.hasInitializer(p.input[1]) && soleUse(p.input[1])) {
    return { kind: 'layernorm', scale: p.input[1], bias: p.input[2] && model.hasInitializer(p.input[2]) ? p.input[2] : undefined };
  }
  if (p.op_type !== 'Mul') return undefined;
  for (const input of p.input ?? []) {
    // a 16-bit checkpoint's norm weight arrives through a Cast to float32; scaling rewrites it as float32
    const cast = index.producer.get(input);
    const stored = cast?.op_type === 'Cast' && cast.input?.[0] && model.hasInitializer(cast.input[0]) && soleUse(input) ? cast.input[0] : input;
    if (model.hasInitializer(stored) && soleUse(stored)) {
      const t = model.graph.initializer!.find((i) => i.name === stored)!;
      if ((t.dims?.length ?? 0) === 1) return { kind: 'vector', name: stored };
    }
  }
  // Mul(x̂, Add(w, c)): Gemma's (1 + w) norm weight
  for (const input of p.input ?? []) {
    const add = index.producer.get(input);
    const [w, c] = add?.op_type === 'Add' ? add.input ?? [] : [];
    const offset = scalarValue(model, c);
    if (w && offset !== undefined && soleUse(input) && model.hasInitializer(w) && soleUse(w) && model.tensor(w).dims.length === 1) return { kind: 'vector', name: w, offset };
  }
  const feeds = (value: string) => all.find((l) => l.output === value && l.kind === 'matmul' && !l.bias);
  for (const input of p.input ?? []) {
    const feeding = feeds(input);
    if (feeding && soleUse(input)) return { kind: 'linear', layer: feeding, row0: 0 };
    // a part of a fused linear, cut on the feature axis by a Split with constant sizes
    const split = index.producer.get(input);
    const fused = split?.op_type === 'Split' ? feeds(split.input![0]!) : undefined;
    if (fused && soleUse(input) && soleUse(fused.output) && split!.input![1] && model.hasInitializer(split!.input![1]) && [-1, 2].includes(attrInt(split!, 'axis', 0))) {
      const sizes = readInt64s(model, split!.input![1]);
      const part = split!.output!.indexOf(input);
      return { kind: 'linear', layer: fused, row0: sizes.slice(0, part).reduce((a, b) => a + b, 0) };
    }
  }
  return undefined;
}

/** v ← (v + offset)·inv − offset, elementwise */
/**
 * The targets grouped by the activation they read, and where a group's 1/s folds. A target rewritten
 * earlier in the pass (a 16-bit weight gets a new float32 initializer) is found as its updated self.
 */
export function foldGroups(model: Model, targets: readonly LinearLayer[]): { byInput: Map<string, LinearLayer[]>; foldOf: (x: string) => Fold | undefined } {
  const index = new GraphIndex(model.graph);
  const all = linears(model).map((l) => targets.find((t) => t.node === l.node) ?? l);
  const byInput = new Map<string, LinearLayer[]>();
  for (const l of targets) byInput.set(l.input, [...(byInput.get(l.input) ?? []), l]);
  return { byInput, foldOf: (x) => foldTarget(model, index, x, all) };
}

function scaleVector(model: Model, name: string, inv: Float64Array, offset = 0): void {
  const t = model.tensor(name);
  const v = toFloat32(t.dataType, t.data, t.dims.reduce((a, b) => a * b, 1));
  for (let j = 0; j < v.length; j++) v[j] = (v[j]! + offset) * inv[j]! - offset;
  model.setInitializer({ name, dataType: DataType.FLOAT, dims: t.dims, data: new Uint8Array(v.buffer) });
}

/** Make the producer that `fold` names emit x·diag(inv). */
export function foldInverse(model: Model, fold: Fold, inv: Float64Array): void {
  if (fold.kind === 'vector') scaleVector(model, fold.name, inv, fold.offset);
  else if (fold.kind === 'layernorm') {
    scaleVector(model, fold.scale, inv);
    if (fold.bias) scaleVector(model, fold.bias, inv);
  } else {
    // the feeding linear's output rows (from row0 on) carry x's channels
    const Wp = readWeight(model, fold.layer);
    const cols = fold.layer.inFeatures;
    for (let r = 0; r < inv.length; r++) for (let c = 0; c < cols; c++) Wp[(fold.row0 + r) * cols + c] = Wp[(fold.row0 + r) * cols + c]! * inv[r]!;
    writeWeight(model, fold.layer, Wp);
  }
}

/** What a fold rewrote, for the report. */
export function foldName(fold: Fold): string {
  return fold.kind === 'linear' ? fold.layer.name : fold.kind === 'vector' ? fold.name : fold.scale;
}

export const smoothquant = definePass({
  id: 'quantize.smoothquant',
  summary: 'SmoothQuant: move activation outliers into weights with per-channel scales folded into the preceding norm or linear (exact in float)',
  params: SmoothParams,
  needsCalibration: () => ({ need: 'required' }),
  eligible: (layer) => layer.kind === 'matmul' || layer.kind === 'gemm',
  async apply(model, params, ctx) {
    const stats = await ctx.calibration!.collect(model, ctx.layers, { absmax: true });
    const { byInput, foldOf } = foldGroups(model, ctx.layers);
    const layers: LayerStat[] = [];
    const warnings: string[] = [];
    let done = 0;
    for (const [x, group] of byInput) {
      const fold = foldOf(x);
      if (!fold) {
        warnings.push(`no norm or linear to fold 1/s into before ${group.map((l) => `'${l.name}'`).join(', ')}; left unsmoothed`);
        done += group.length;
        continue;
      }
      const t0 = performance.now();
      const K = group[0]!.inFeatures;
      const xmax = stats.get(x)!.absmax!;
      const weights = group.map((l) => readWeight(model, l));
      const wmax = new Float64Array(K);
      group.forEach((l, g) => {
        const W = weights[g]!;
        for (let r = 0; r < l.outFeatures; r++) for (let j = 0; j < K; j++) wmax[j] = Math.max(wmax[j]!, Math.abs(W[r * K + j]!));
      });
      // s_j = max|X_j|^α / max|W_j|^(1−α), kept finite for dead channels
      const s = new Float64Array(K);
      const inv = new Float64Array(K);
      for (let j = 0; j < K; j++) {
        const v = Math.max(xmax[j]!, 1e-5) ** params.alpha / Math.max(wmax[j]!, 1e-5) ** (1 - params.alpha);
        s[j] = Math.max(v, 1e-5);
        inv[j] = 1 / s[j]!;
      }
      group.forEach((l, g) => {
        ctx.progress.layer(done++, ctx.layers.length, l.name);
        const W = weights[g]!;
        for (let r = 0; r < l.outFeatures; r++) for (let j = 0; j < K; j++) W[r * K + j] = W[r * K + j]! * s[j]!;
        writeWeight(model, l, W);
      });
      foldInverse(model, fold, inv);
      const ms = performance.now() - t0;
      let maxS = 0;
      for (const v of s) maxS = Math.max(maxS, v);
      for (const l of group) {
        const bytes = l.outFeatures * l.inFeatures * 4;
        layers.push({ name: l.name, kind: l.kind, shape: [l.outFeatures, l.inFeatures], ms: ms / group.length, bytes_before: bytes, bytes_after: bytes, extra: { folded_into: foldName(fold), max_scale: maxS } });
      }
    }
    return { layers, warnings };
  },
});
