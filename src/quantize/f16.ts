import { availableParallelism } from 'node:os';
import { z } from 'zod';
import type { Feeds } from '../calibrate/feeds.js';
import { maxAbsOf, measureRanges, type ValueRange } from '../calibrate/ranges.js';
import { UserError } from '../errors.js';
import { DataType } from '../model/dtype.js';
import { lmFeeds, modelIo } from '../model/io.js';
import type { Model } from '../model/model.js';
import { float16ToFloat32, float32ToFloat16 } from '../model/pack.js';
import { definePass, onValidFields, type LayerStat, type PassContext } from '../pass/pass.js';
import { ortFeeds } from '../runtime/feeds.js';
import { resolveKvShapes } from '../runtime/kv-shapes.js';
import { captureSession, ort } from '../runtime/ort.js';
import { compilePattern, patternError } from '../util/pattern.js';
import { DEFAULT_KEEP_OPS, FLOAT16_MAX, planFloat16, type F16Plan, type KeepReason } from './f16-plan.js';
import { applyFloat16 } from './f16-rewrite.js';

/**
 * Float16 graphs (transformers.js's fp16, and with 4-bit MatMulNBits weights its q4f16): weights
 * stored and activations computed in float16, MatMulNBits with float16 activations and scales. The
 * ops float16 rounds or overflows stay float32 behind Casts (f16-plan.ts says which), and so does
 * every value whose magnitude on the calibration data passes `threshold` × 65504. The converted
 * model then runs on the same data; a float16 value or output that is inf, NaN or at 65504 is
 * refused with its name, so a model that overflows is never written.
 */

const F16Params = z
  .strictObject({
    io: z
      .enum(['float16', 'float32'])
      .default('float16')
      .describe('type of the float inputs and outputs (logits, KV cache): float16 as transformers.js q4f16/fp16 exports have them, or float32'),
    threshold: z.number().gt(0).max(1).default(0.125).describe("fraction of float16's largest value 65504: a value whose calibration max |x| passes it stays float32"),
    keep_ops: z.array(z.string()).default([...DEFAULT_KEEP_OPS]).describe('op types computed in float32 (softmax, the norms\' reductions, exp/log, RoPE\'s sin/cos)'),
    keep_fp32: z.array(z.string()).default([]).describe('node names (globs or re:) also kept in float32'),
  })
  .superRefine((p, ctx) => {
    p.keep_fp32.forEach((pattern, i) => {
      const err = patternError(pattern);
      if (err) ctx.addIssue({ code: 'custom', path: ['keep_fp32', i], message: err });
    });
  }, onValidFields);

type F16Params = z.output<typeof F16Params>;

const RANDOM_SEQUENCES = 4;
const RANDOM_LENGTH = 64;

/** The calibration feeds, or seeded random token sequences for a causal LM when the recipe has none. */
async function measurementFeeds(model: Model, ctx: PassContext, threads: number): Promise<{ feeds: Feeds[]; warning?: string }> {
  if (ctx.calibration) return { feeds: ctx.calibration.feeds };
  const io = await resolveKvShapes(model, modelIo(model), threads);
  if (io.task !== 'causal-lm') throw new UserError(`quantize.f16: ${ctx.where} needs a calibration section for ${model.path}, whose input '${io.inputName}' is not token ids: value ranges are measured on real inputs`);
  const vocab = io.outputWidth ?? 2;
  const feeds = Array.from({ length: RANDOM_SEQUENCES }, () => {
    const ids = Int32Array.from({ length: RANDOM_LENGTH }, () => Math.floor(ctx.random() * vocab));
    return ortFeeds(lmFeeds(io, ids, 1, RANDOM_LENGTH, model.path));
  });
  return { feeds, warning: `no calibration section: value ranges were measured on ${RANDOM_SEQUENCES} seeded random token sequences of ${RANDOM_LENGTH}; give the recipe a calibration section to measure on real text` };
}

/** The same feeds with the inputs that became float16 given as float16. */
function halfFeeds(model: Model, feeds: Feeds): Feeds {
  const half = new Set((model.graph.input ?? []).filter((v) => v.type?.tensor_type?.elem_type === DataType.FLOAT16).map((v) => v.name ?? ''));
  const out: Feeds = {};
  for (const [name, t] of Object.entries(feeds)) out[name] = half.has(name) && t.type === 'float32' ? new ort.Tensor('float16', float32ToFloat16(t.data as Float32Array), t.dims) : t;
  return out;
}

function asFloat32(t: ort.Tensor): Float32Array {
  return t.type === 'float16' ? float16ToFloat32(t.data as Uint16Array) : (t.data as Float32Array);
}

interface OutputError {
  /** relative Frobenius error of the first output over all samples, and its largest absolute error */
  relError: number;
  maxAbsError: number;
}

/**
 * Runs the converted model on every sample: every float16 value it computes and every output must be
 * finite and below 65504 in magnitude; the first output is compared with the float32 model's.
 */
async function verify(model: Model, plan: F16Plan, ranges: ReadonlyMap<string, ValueRange>, feeds: Feeds[], reference: ort.InferenceSession, output: string, threads: number, where: string): Promise<OutputError> {
  const outputs = (model.graph.output ?? []).map((v) => v.name ?? '');
  const halfValues = [...plan.nodes].filter(([, p]) => p.precision === 'float16').flatMap(([n]) => (n.output ?? []).filter((o) => o && plan.float.has(o) && !outputs.includes(o)));
  const produced = new Set((model.graph.node ?? []).flatMap((n) => n.output ?? []));
  const names = [...new Set([...outputs, ...halfValues.filter((v) => produced.has(v))])];
  const session = await captureSession(model, names, { threads, qdqMatMulNBitsAccuracyLevel: 0 });
  let num = 0;
  let den = 0;
  let maxAbsError = 0;
  try {
    for (const [i, feed] of feeds.entries()) {
      const out = await session.run(halfFeeds(model, feed), names);
      for (const name of names) {
        const t = out[name]!;
        if (t.type !== 'float16' && t.type !== 'float32') continue;
        const m = maxAbsOf(asFloat32(t));
        if (t.type === 'float16' && !(m < FLOAT16_MAX)) {
          const fp32 = ranges.get(name)?.maxAbs;
          const seen = m === Infinity ? 'inf or NaN' : String(m);
          const fix = outputs.includes(name) ? `keep the outputs float32 (${where}.params.io: float32)` : `keep its node float32 (${where}.params.keep_fp32) or lower ${where}.params.threshold`;
          throw new UserError(`quantize.f16: '${name}' reaches ${seen} in float16 on calibration sample ${i + 1}${fp32 !== undefined ? ` (float32 max |x| ${fp32.toPrecision(5)})` : ''}, beyond float16's 65504; nothing was written: ${fix}`);
        }
      }
      const ref = (await reference.run(feed, [output]))[output]!;
      const a = asFloat32(out[output]!);
      const r = asFloat32(ref);
      for (let k = 0; k < r.length; k++) {
        const d = Math.abs(a[k]! - r[k]!);
        num += d * d;
        den += r[k]! * r[k]!;
        if (d > maxAbsError) maxAbsError = d;
      }
    }
  } finally {
    await session.release();
  }
  return { relError: Math.sqrt(num / Math.max(den, 1e-30)), maxAbsError };
}

function keptRows(plan: F16Plan): LayerStat[] {
  const rows: LayerStat[] = [];
  for (const [n, p] of plan.nodes) {
    if (p.precision !== 'float32') continue;
    rows.push({
      name: n.name || (n.output?.[0] ?? ''),
      kind: n.op_type ?? '',
      ms: 0,
      bytes_before: 0,
      bytes_after: 0,
      extra: { precision: 'float32', reason: p.reason ?? '', ...(p.maxAbs !== undefined ? { max_abs: p.maxAbs } : {}) },
    });
  }
  return rows;
}

function countBy(plan: F16Plan): Record<KeepReason, number> {
  const counts: Record<KeepReason, number> = { op: 0, keep_fp32: 0, unsupported: 0, range: 0, 'float32 inputs': 0 };
  for (const p of plan.nodes.values()) if (p.reason) counts[p.reason]++;
  return counts;
}

export const f16 = definePass({
  id: 'quantize.f16',
  summary: 'float16 graph (transformers.js fp16/q4f16): weights and activations in float16, overflow-prone ops and large values kept float32 behind Casts, checked on calibration data',
  params: F16Params,
  needsCalibration: () => ({ need: 'optional' }),
  graphWide: true,
  runsLast: true,
  async apply(model, params: F16Params, ctx) {
    const t0 = performance.now();
    const threads = ctx.calibration?.threads || availableParallelism();
    const { feeds, warning } = await measurementFeeds(model, ctx, threads);

    // measure every value's type and max |x| on the float32 model
    const values = [...new Set((model.graph.node ?? []).flatMap((n) => (n.output ?? []).filter(Boolean)))];
    ctx.progress.layer(0, 3, 'measuring value ranges');
    const ranges = await measureRanges(model, values, feeds, { threads, qdqMatMulNBitsAccuracyLevel: 0 });
    const plan = planFloat16(model, ranges, { keepOps: new Set(params.keep_ops), keepFp32: params.keep_fp32.map(compilePattern), limit: params.threshold * FLOAT16_MAX, io: params.io });

    // the float32 model's first output, to compare with
    const output = model.graph.output?.[0]?.name ?? '';
    const reference = await captureSession(model, [output], { threads, qdqMatMulNBitsAccuracyLevel: 0 });
    try {
      ctx.progress.layer(1, 3, 'converting to float16');
      const rewrite = applyFloat16(model, plan, params.io);
      ctx.progress.layer(2, 3, 'checking the float16 model');
      const error = await verify(model, plan, ranges, feeds, reference, output, threads, ctx.where);
      const counts = countBy(plan);
      const half = [...plan.nodes.values()].filter((p) => p.precision === 'float16').length;
      const rows = keptRows(plan);
      rows.unshift({ name: 'float initializers', kind: 'float16 storage', ms: performance.now() - t0, bytes_before: rewrite.bytesBefore, bytes_after: rewrite.bytesAfter });
      return {
        layers: rows,
        warnings: warning ? [warning] : [],
        summary: {
          io: params.io,
          float16_nodes: half,
          float32_nodes: plan.nodes.size - half,
          kept_for_op: counts.op,
          kept_for_range: counts.range,
          kept_by_keep_fp32: counts.keep_fp32,
          kept_unsupported: counts.unsupported,
          kept_float32_inputs: counts['float32 inputs'],
          casts: rewrite.casts,
          [`${output}_rel_error`]: error.relError,
          [`${output}_max_abs_error`]: error.maxAbsError,
          samples: feeds.length,
        },
      };
    } finally {
      await reference.release();
    }
  },
});
