import type { z } from 'zod';

/**
 * The part of a pass the recipe layer reads: its id, what it does, its params schema and what the
 * params ask of the rest of the recipe. The full Pass (pass.ts, with `apply`) extends this.
 *
 * A pass's rules about its params come in three kinds, each checked where it can be:
 * 1. rules on the params alone (exactly one of rank/ratio/energy, N:M syntax, matmulnbits needs
 *    group granularity) live in the schema: field checks, codecs that parse a field once (the N:M
 *    pattern), and a `superRefine` on the object whose issue `path` names the field, so the recipe
 *    error carries that field's line:col;
 * 2. rules on the rest of the recipe (activation importance needs a calibration section) are
 *    `needsCalibration(params)`, which the recipe parser checks against the `calibration` section;
 * 3. rules on the model (a layer's inputs not a multiple of group_size) are the pass's
 *    `checkLayers` (pass.ts), which the runner and `pare recipe validate --model` call on the
 *    selected layers before any pass runs.
 * `apply` may assert the same rules for callers that skip the runner, never as the user's error.
 */

/** A pass's params schema: a strict zod object (unknown keys are recipe errors). */
export type ParamsSchema = z.ZodObject<z.core.$ZodLooseShape, z.core.$strict>;

/** What a pass needs from the recipe's `calibration` section, given its params. */
export interface CalibrationNeed {
  /** required: the pass cannot run without it; optional: it uses the data when there is a section; none: it never reads it */
  need: 'required' | 'optional' | 'none';
  /** the param whose value makes it required (`importance`); the error points there, else at the pass id */
  param?: string;
  /** the setting of `param` that does without calibration (`importance: weight`), offered in the error */
  instead?: string;
}

/** One recipe entry's params, parsed by the pass's own schema. */
export interface ParsedParams {
  /** the params in recipe form with defaults filled (`pattern: "2:4"`, not the parsed pattern): what reports record */
  readonly written: Record<string, unknown>;
  readonly calibration: CalibrationNeed;
}

/** superRefine's option for cross-field rules: they run once every field parsed, so they see typed values. */
export const onValidFields = { when: (payload: z.core.ParsePayload): boolean => payload.issues.length === 0 };

export type ParamsResult<Parsed> = { success: true; data: Parsed } | { success: false; error: z.ZodError };

export interface PassSpec<P extends ParamsSchema = ParamsSchema, Parsed extends ParsedParams = ParsedParams> {
  /** family.method, e.g. `prune.sparsegpt` */
  id: string;
  /** one line for `pare recipe passes` */
  summary: string;
  /** fields may carry `.describe()` text and defaults, which `pare recipe passes` prints */
  params: P;
  /** `params` is undefined when the recipe's params did not parse: answer what holds for any params */
  needsCalibration(params: z.output<P> | undefined): CalibrationNeed;
  /** recipe params -> the params parsed, or zod's issues */
  parse(raw: unknown): ParamsResult<Parsed>;
  /** the pass must be the recipe's last (it changes the graph's float type; passes after it would meet float16) */
  runsLast?: boolean;
}

export type SpecDefinition<P extends ParamsSchema> = Omit<PassSpec<P>, 'parse'>;

/** Parses `raw` with `spec.params` and hands the typed result to `bind`. */
export function parseParams<P extends ParamsSchema, Parsed>(spec: SpecDefinition<P>, raw: unknown, bind: (params: z.output<P>, written: Record<string, unknown>) => Parsed): ParamsResult<Parsed> {
  const r = spec.params.safeParse(raw);
  if (!r.success) return { success: false, error: r.error };
  // encode turns codec fields back into what the recipe wrote ("2:4"); the rest passes through
  const written: Record<string, unknown> = spec.params.encode(r.data);
  return { success: true, data: bind(r.data, written) };
}

/** Checked when a pass is defined: zod types cannot tell a strict object from a stripping one. */
export function assertStrictParams(spec: SpecDefinition<ParamsSchema>): void {
  if (spec.params._zod.def.catchall?._zod.def.type !== 'never') throw new Error(`${spec.id}: params must be a z.strictObject, so unknown recipe keys are errors`);
}

/** A pass spec without `apply` (definePass in pass.ts makes the full pass). */
export function defineSpec<P extends ParamsSchema>(spec: SpecDefinition<P>): PassSpec<P> {
  assertStrictParams(spec);
  return { ...spec, parse: (raw) => parseParams(spec, raw, (params, written) => ({ written, calibration: spec.needsCalibration(params) })) };
}
