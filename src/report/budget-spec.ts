import { z } from 'zod';

/**
 * A quality budget: "2%" is relative to the reference model's value (fraction 0.02); a plain
 * number is absolute, in the metric's own units (perplexity, accuracy points, bytes).
 */
export type Budget = { kind: 'relative'; fraction: number } | { kind: 'absolute'; value: number };

export const BudgetSpec = z
  .union([z.number().min(0), z.string().regex(/^\s*\d+(\.\d+)?\s*%\s*$/)])
  .transform((v): Budget => (typeof v === 'number' ? { kind: 'absolute', value: v } : { kind: 'relative', fraction: parseFloat(v) / 100 }))
  .meta({ typeLabel: 'percentage like "2%" or number >= 0' });
