import type { PassSpec } from '../pass/pass-spec.js';
import { defaultOf, describeType, descriptionOf, isOptional, type Schema } from './zod-shape.js';

/** Data for `pare recipe passes`: what each pass does and the params a recipe may give it. */

export interface ParamDescription {
  name: string;
  /** `2|3|4|8`, `number 0..1`, `integer >= 1`, `list of string` */
  type: string;
  /** neither optional nor defaulted */
  required: boolean;
  /** present when the schema declares a default */
  default?: unknown;
  /** the field's `.describe()` text */
  description?: string;
}

export interface PassDescription {
  id: string;
  summary: string;
  /** with its default params (prune.channels: importance activation) */
  needsCalibration: boolean;
  params: ParamDescription[];
}

function needsCalibrationByDefault(p: PassSpec): boolean {
  const r = p.parse({});
  return (r.success ? r.data.calibration : p.needsCalibration(undefined)).need === 'required';
}

export function describePasses(passes: readonly PassSpec[]): PassDescription[] {
  return passes.map((p) => ({
    id: p.id,
    summary: p.summary,
    needsCalibration: needsCalibrationByDefault(p),
    params: Object.entries(p.params.shape as Record<string, Schema>).map(([name, field]) => {
      const param: ParamDescription = { name, type: describeType(field), required: !isOptional(field) };
      const def = defaultOf(field);
      if (def) param.default = def.value;
      const text = descriptionOf(field);
      if (text !== undefined) param.description = text;
      return param;
    }),
  }));
}
