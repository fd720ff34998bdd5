import { z } from 'zod';
import { REPORT_SCHEMA, REPORT_VERSION, type Report } from './schema.js';

/** Reading a report (schema.ts has its types): zod schemas, each object loose (extra fields are kept), every field this version defines typed. */

const num = z.number();
const FileRefSchema = z.looseObject({ path: z.string(), sha256: z.string() });

const SizeSchema = z.looseObject({
  file_bytes: num,
  params: num,
  bytes_by_dtype: z.record(z.string(), num),
  params_by_dtype: z.record(z.string(), num),
  nonzeros: num,
  sparse_bytes: num,
  bits_per_weight: num,
});

const QualitySchema = z.discriminatedUnion('task', [
  z.looseObject({ task: z.literal('causal-lm'), nll: num, perplexity: num, ppl_ci95: z.tuple([num, num]), tokens: num, sequences: num }),
  z.looseObject({ task: z.literal('classification'), top1: num, top5: num, samples: num }),
  ...(['regression', 'image-to-image'] as const).map((task) =>
    z.looseObject({ task: z.literal(task), against: z.enum(['targets', 'reference']), mse: num, rmse: num, psnr: num.optional(), data_range: num, ssim: num.optional(), samples: num, values: num }),
  ),
]);

const LatencySchema = z.looseObject({
  median_ms: num,
  p90_ms: num,
  runs: num,
  warmup: num,
  threads: num,
  batch: num,
  seq_len: num.optional(),
});

const MeasureSchema = z.looseObject({
  path: z.string(),
  sha256: z.string(),
  size: SizeSchema,
  quality: QualitySchema.optional(),
  latency: LatencySchema.optional(),
});

const FidelitySchema = z.looseObject({
  kl_mean: num,
  kl_p50: num,
  kl_p90: num,
  kl_p99: num,
  top1_agreement: num,
  cosine: num,
  positions: num,
});

const RuntimeMeasureSchema = z.looseObject({ quality: QualitySchema.optional(), latency: LatencySchema.optional() });

const RuntimeEvaluationSchema = z.looseObject({
  runtime: z.string(),
  version: z.string(),
  model: RuntimeMeasureSchema.optional(),
  reference: RuntimeMeasureSchema.optional(),
  fidelity: FidelitySchema.optional(),
  error: z.looseObject({ path: z.string(), message: z.string(), op: z.string().optional(), node: z.string().optional() }).optional(),
});

const LayerStatSchema = z.looseObject({
  name: z.string(),
  kind: z.string().optional(),
  shape: z.array(num).optional(),
  ms: num,
  bytes_before: num,
  bytes_after: num,
  objective: num.optional(),
  sparsity: num.optional(),
  extra: z.record(z.string(), z.union([num, z.string()])).optional(),
});

const PassReportSchema = z.looseObject({
  id: z.string(),
  targets: z.array(z.string()),
  ignore: z.array(z.string()).optional(),
  params: z.record(z.string(), z.unknown()),
  ms: num,
  cpu_ms: num.optional(),
  stage: z
    .looseObject({ entry: z.number().int(), index: z.number().int(), count: z.number().int(), blocks: z.array(z.number().int()), role: z.enum(['pass', 'distill']) })
    .optional(),
  layers: z.array(LayerStatSchema),
  warnings: z.array(z.string()).optional(),
});

const BudgetCheckSchema = z.looseObject({
  name: z.enum(['max_ppl_increase', 'max_accuracy_drop', 'max_size_increase', 'max_psnr_drop', 'max_rmse_increase']),
  limit: z.string(),
  metric: z.enum(['perplexity', 'top1_percent', 'file_bytes', 'psnr_db', 'rmse']),
  base: num,
  candidate: num,
  change: num,
  allowed: num,
  ok: z.boolean(),
  dtype: z.string().optional(),
});

const VariantReportSchema = z.looseObject({
  dtype: z.string(),
  path: z.string(),
  files: z.array(z.string()),
  passes: z.array(PassReportSchema),
  warnings: z.array(z.string()),
  measure: MeasureSchema,
  fidelity: FidelitySchema.optional(),
});

export const CacheCountsSchema = z.looseObject({ dir: z.string(), hits: num, misses: num, unreadable: num });

const SweepPointRecordSchema = z.looseObject({
  id: z.string(),
  index: num,
  count: num,
  settings: z.array(z.tuple([z.string(), z.unknown()])),
  base: FileRefSchema,
});

export const ReportSchema = z.looseObject({
  schema: z.literal(REPORT_SCHEMA),
  version: z.literal(REPORT_VERSION),
  kind: z.enum(['eval', 'compress']),
  tool: z.looseObject({ name: z.literal('pare'), version: z.string(), onnxruntime: z.string(), node: z.string() }),
  created: z.string(),
  input: FileRefSchema.extend({ format: z.string() }),
  output: FileRefSchema.extend({ format: z.string(), files: z.array(z.string()).optional() }).optional(),
  recipe: FileRefSchema.optional(),
  seed: num.optional(),
  data: z.looseObject({ description: z.string(), files: z.array(FileRefSchema), classes: z.array(z.string()).optional() }).optional(),
  passes: z.array(PassReportSchema),
  measurements: z.looseObject({ reference: MeasureSchema.optional(), model: MeasureSchema }),
  fidelity: FidelitySchema.optional(),
  runtimes: z.array(RuntimeEvaluationSchema).optional(),
  variants: z.array(VariantReportSchema).optional(),
  budgets: z.array(BudgetCheckSchema).optional(),
  warnings: z.array(z.string()),
  timings: z.looseObject({ total_ms: num, passes_ms: num.optional(), eval_ms: num.optional() }),
  schedules: z
    .array(z.looseObject({ entry: z.number().int(), pass: z.string(), stages: z.number().int(), pass_ms: num, pass_cpu_ms: num, distill_ms: num, distill_cpu_ms: num }))
    .optional(),
  calibration_cache: CacheCountsSchema.optional(),
  sweep: SweepPointRecordSchema.optional(),
});

export { FileRefSchema, MeasureSchema, FidelitySchema, PassReportSchema, BudgetCheckSchema };

/** Compile-time check that what the schema accepts is a Report. */
export const asReport = (parsed: z.output<typeof ReportSchema>): Report => parsed;
