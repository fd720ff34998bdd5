import { z } from 'zod';
import { DatasetSpec } from '../data/spec.js';
import { BudgetSpec } from '../report/budget-spec.js';
import { DTYPES, parseDtypes } from '../model/hf-folder.js';
import type { ParsedParams } from '../pass/pass-spec.js';
import type { PassStage } from '../report/schema.js';
import { patternError } from './targets.js';

export { BudgetSpec, type Budget } from '../report/budget-spec.js';

/**
 * The recipe file's shape. Every mapping is strict (unknown keys are errors). A pass's `params`
 * are only checked to be a mapping here; parse.ts validates them against the pass's own schema.
 */

/** A layer pattern: a glob, or `re:` + a JavaScript regex (see targets.ts). */
const Pattern = z
  .string()
  .min(1)
  .superRefine((p, ctx) => {
    const err = patternError(p);
    if (err) ctx.addIssue({ code: 'custom', message: err });
  });

/**
 * TQCompressed's schedule on one pass entry: the pass runs on `blocks_per_stage` decoder blocks at a
 * time, each stage followed by distill.kd with `distill` as its params (the runner expands it:
 * pipeline/schedule.ts). The distill params are validated by distill.kd's own schema in parse.ts.
 */
export const Schedule = z.strictObject({
  blocks_per_stage: z.number().int().min(1).default(1),
  distill: z.record(z.string(), z.unknown()).default({}),
});

/** The pass a schedule runs after each stage. */
export const SCHEDULE_DISTILL_PASS = 'distill.kd';

export const PassEntry = z.strictObject({
  /** a registered pass id, e.g. `prune.magnitude` */
  pass: z.string(),
  targets: z.array(Pattern).min(1).default(['*']),
  ignore: z.array(Pattern).default([]),
  params: z.record(z.string(), z.unknown()).default({}),
  schedule: Schedule.optional(),
});

export const Calibration = z.strictObject({
  data: DatasetSpec,
  /** number of sequences/samples run through the model */
  samples: z.number().int().positive().default(128),
  /** tokens per calibration sequence; the dataset's own length when absent */
  seq_len: z.number().int().min(2).optional(),
  /** sequential: block i is calibrated on the outputs of the already-compressed blocks before it */
  mode: z.enum(['sequential', 'oneshot']).default('sequential'),
  /** XᵀX of each block of rows as a float32 product (twice as fast) or a float64 one; summed in float64 either way */
  hessian_precision: z.enum(['float32', 'float64']).default('float32'),
});

export const Latency = z.strictObject({
  runs: z.number().int().positive().default(20),
  warmup: z.number().int().min(0).default(3),
  threads: z.number().int().positive().default(1),
});

export const Eval = z.strictObject({
  data: DatasetSpec,
  /** evaluate the original model too, for the before/after columns and budgets */
  reference: z.boolean().default(true),
  latency: Latency.optional(),
  /** node: onnxruntime-node; web: onnxruntime-web (wasm) measured beside it */
  runtime: z.enum(['node', 'web']).default('node'),
  budgets: z
    .strictObject({
      max_ppl_increase: BudgetSpec.optional(),
      max_accuracy_drop: BudgetSpec.optional(),
      max_size_increase: BudgetSpec.optional(),
      /** PSNR (dB) may fall at most this much: regression / image-to-image models measured against targets */
      max_psnr_drop: BudgetSpec.optional(),
      max_rmse_increase: BudgetSpec.optional(),
    })
    .optional(),
  /** how quality is measured; default lm on token data, else from the model's output: [N, C] classification, [N, C, H, W] image-to-image, else regression */
  task: z.enum(['classification', 'regression', 'image-to-image', 'lm']).optional(),
  /** L of PSNR and SSIM (1 for [0, 1] images, 255 for raw pixels); default from the targets */
  data_range: z.number().positive().optional(),
});

export const Output = z.strictObject({
  /** force ONNX external data even under 2 GB */
  external_data: z.boolean().default(false),
  /** a model folder output (-o DIR/): one file per transformers.js dtype, each a conversion of the passes' result */
  dtypes: z
    .array(z.enum([...DTYPES, 'quantized']))
    .min(1)
    .transform((names) => parseDtypes(names, 'output.dtypes'))
    .optional(),
  /** upgrade the model's default-domain opset to this before the first pass (src/model/opset-upgrade.ts) */
  opset: z.number().int().min(7).max(21).optional(),
});

export const RecipeSchema = z.strictObject({
  version: z.literal(1),
  /** required when any pass needs calibration */
  calibration: Calibration.optional(),
  /** empty in a recipe that only converts the model into a folder's dtypes (output.dtypes or --dtypes); compress refuses a run with nothing to do */
  passes: z.array(PassEntry),
  eval: Eval.optional(),
  output: Output.prefault({}),
  /** `pare sweep`: recipe paths (`passes[0].params.sparsity`) and the values each takes; the points are their product */
  sweep: z.record(z.string(), z.array(z.unknown()).min(1)).optional(),
});

/** One entry of `passes`, its params parsed by the pass's own schema. */
export type PassEntry<Parsed extends ParsedParams = ParsedParams> = Omit<z.output<typeof PassEntry>, 'params' | 'schedule'> & {
  /** the params as the recipe gives them with defaults filled: what the report and the work dir record */
  params: Record<string, unknown>;
  /** the same params parsed by the pass (for the runner, a ConfiguredPass: the pass bound to its typed params) */
  parsed: Parsed;
  /** the entry's `schedule`, its distill params parsed by distill.kd */
  schedule?: { blocks_per_stage: number; distill: { params: Record<string, unknown>; parsed: Parsed } };
  /** set on the entries a schedule expands into (pipeline/schedule.ts) */
  stage?: Stage;
};

/** One step of an expanded schedule: where it came from and which blocks it covers. */
export type Stage = PassStage;
export type Calibration = z.output<typeof Calibration>;
export type Latency = z.output<typeof Latency>;
export type Eval = z.output<typeof Eval>;
/** A validated recipe; each pass's params are already parsed by that pass's schema (defaults filled). */
export type Recipe<Parsed extends ParsedParams = ParsedParams> = Omit<z.output<typeof RecipeSchema>, 'passes'> & { passes: PassEntry<Parsed>[] };
