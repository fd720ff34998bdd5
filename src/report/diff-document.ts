import { z } from 'zod';
import type { ReportDiff } from './diff.js';
import { BudgetCheckSchema, FileRefSchema, MeasureSchema } from './report-reader-schema.js';
import type { SweepDiff } from './sweep-diff.js';

/** `pare report diff --format json` as a document `pare report html` reads back: a diff of two reports or of two sweeps. */
export const DIFF_SCHEMA = 'pare.diff';
export type DiffDocument = ReportDiff | SweepDiff;

const side = z.looseObject({ report: z.string(), model: FileRefSchema });
const num = z.number().nullable();

const ReportDiffSchema = z.looseObject({
  schema: z.literal(DIFF_SCHEMA),
  version: z.literal(1),
  kind: z.literal('report'),
  base: side,
  next: side,
  data: z.string().optional(),
  rows: z.array(z.looseObject({ metric: z.string(), key: z.string(), unit: z.enum(['bytes', 'count', 'bits', 'fraction', 'ms', 'ppl', 'nats', 'ratio']), base: num, next: num, change: num, ok: z.boolean().optional(), limit: z.string().optional() })),
  checks: z.array(BudgetCheckSchema),
  failed: z.boolean(),
});

const SweepDiffSchema = z.looseObject({
  schema: z.literal(DIFF_SCHEMA),
  version: z.literal(1),
  kind: z.literal('sweep'),
  base: side,
  next: side,
  data: z.string().optional(),
  size: z.enum(['file_bytes', 'sparse_bytes']),
  quality: z.enum(['perplexity', 'top1', 'none']),
  points: z.array(
    z.looseObject({
      settings: z.array(z.tuple([z.string(), z.unknown()])),
      base: z.looseObject({ id: z.string(), model: MeasureSchema }).optional(),
      next: z.looseObject({ id: z.string(), model: MeasureSchema }).optional(),
      checks: z.array(BudgetCheckSchema),
      ok: z.boolean().optional(),
    }),
  ),
  failed: z.boolean(),
});

export const DiffDocumentSchema = z.discriminatedUnion('kind', [ReportDiffSchema, SweepDiffSchema]);

/** Compile-time check that what the schema accepts is a DiffDocument. */
export const asDiff = (parsed: z.output<typeof DiffDocumentSchema>): DiffDocument => parsed;
