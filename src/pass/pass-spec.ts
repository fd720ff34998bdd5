import type { z } from 'zod';

/**
 * The part of a pass the recipe layer reads: its id, what it does, its params schema (which also
 * validates the recipe; fields may carry `.describe()` text and defaults) and whether it needs
 * calibration data. The full Pass type (with `apply`) extends this.
 */
export interface PassSpec {
  /** family.method, e.g. `prune.sparsegpt` */
  id: string;
  /** one line for `pare recipe passes` */
  summary: string;
  params: z.ZodObject<any>;
  needsCalibration: boolean;
}
