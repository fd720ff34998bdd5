import { z } from 'zod';

/**
 * Just enough introspection of zod 4 schemas to name a field's type in recipe errors and in
 * `pare recipe passes`: `2|3|4|8`, `number 0..1`, `integer >= 1`, `list of string`.
 * A schema may override its name with `.meta({ typeLabel: '"2%" or number >= 0' })`.
 * Reads `schema._zod.def`, zod's documented introspection surface.
 */

export type Schema = z.core.$ZodType;

interface CheckDef {
  check: string;
  value?: number;
  inclusive?: boolean;
  format?: string;
}

interface Def {
  type: string;
  innerType?: Schema;
  in?: Schema;
  out?: Schema;
  getter?: () => Schema;
  shape?: Record<string, Schema>;
  element?: Schema;
  valueType?: Schema;
  items?: Schema[];
  options?: Schema[];
  discriminator?: string;
  entries?: Record<string, string | number>;
  values?: unknown[];
  checks?: { _zod: { def: CheckDef } }[];
  defaultValue?: unknown;
}

function defOf(s: Schema): Def {
  return s._zod.def as unknown as Def;
}

/** Wrappers that do not change what a value must look like. */
const WRAPPERS = new Set(['optional', 'nonoptional', 'default', 'prefault', 'catch', 'readonly', 'nullable']);

/** Strip optional/default/pipe/lazy wrappers down to the schema that checks the value. */
export function unwrap(s: Schema): Schema {
  for (;;) {
    const d = defOf(s);
    if (WRAPPERS.has(d.type) && d.innerType) s = d.innerType;
    else if (d.type === 'pipe' && d.in && d.out) s = defOf(d.in).type === 'transform' ? d.out : d.in;
    else if (d.type === 'lazy' && d.getter) s = d.getter();
    else return s;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Literal values a union option's discriminator field accepts. */
function discriminatorValues(option: Schema, key: string): unknown[] {
  const field = defOf(unwrap(option)).shape?.[key];
  if (!field) return [];
  const d = defOf(unwrap(field));
  if (d.type === 'literal') return d.values ?? [];
  if (d.type === 'enum') return Object.values(d.entries ?? {});
  return [];
}

/** For a union, the option that `value` was meant to be (by discriminator, else by shape kind). */
function pickVariant(s: Schema, value: unknown): Schema | undefined {
  let u = unwrap(s);
  for (let d = defOf(u); d.type === 'union'; d = defOf(u)) {
    const options = d.options ?? [];
    let next: Schema | undefined;
    if (d.discriminator !== undefined) {
      const tag = isPlainObject(value) ? value[d.discriminator] : undefined;
      next = options.find((o) => discriminatorValues(o, d.discriminator!).includes(tag));
    } else {
      const want = Array.isArray(value) ? ['array', 'tuple'] : isPlainObject(value) ? ['object', 'record'] : [];
      next = options.find((o) => want.includes(defOf(unwrap(o)).type));
    }
    if (!next) return undefined;
    u = unwrap(next);
  }
  return u;
}

/** The schema that checks `root`'s value at `path`, following the data through unions. */
export function schemaAt(root: Schema, path: readonly PropertyKey[], value: unknown): Schema | undefined {
  let s: Schema | undefined = root;
  let v = value;
  for (const seg of path) {
    const u: Schema | undefined = pickVariant(s, v);
    if (!u) return undefined;
    const d = defOf(u);
    if (d.type === 'object') s = d.shape?.[String(seg)];
    else if (d.type === 'array') s = d.element;
    else if (d.type === 'record') s = d.valueType;
    else if (d.type === 'tuple') s = typeof seg === 'number' ? d.items?.[seg] : undefined;
    else return undefined;
    if (!s) return undefined;
    v = isPlainObject(v) || Array.isArray(v) ? (v as Record<PropertyKey, unknown>)[seg] : undefined;
  }
  return s;
}

/** Keys an object schema accepts, for "unknown key" messages; [] when it is not an object. */
export function knownKeys(s: Schema | undefined, value: unknown): string[] {
  const u = s && pickVariant(s, value);
  if (!u) return [];
  const d = defOf(u);
  return d.type === 'object' ? Object.keys(d.shape ?? {}) : [];
}

function meta(s: Schema): Record<string, unknown> | undefined {
  return z.globalRegistry.get(s) as Record<string, unknown> | undefined;
}

/** The first `.describe()` text found on the schema or its wrappers. */
export function descriptionOf(s: Schema): string | undefined {
  for (;;) {
    const text = meta(s)?.description;
    if (typeof text === 'string') return text;
    const d = defOf(s);
    if (WRAPPERS.has(d.type) && d.innerType) s = d.innerType;
    else if (d.type === 'pipe' && d.in) s = d.in;
    else return undefined;
  }
}

/** The default a missing value takes, if the schema declares one. */
export function defaultOf(s: Schema): { value: unknown } | undefined {
  for (;;) {
    const d = defOf(s);
    if (d.type === 'default') return { value: d.defaultValue };
    // a prefault is an input that is still parsed: `{}` becomes the object of its fields' defaults
    if (d.type === 'prefault' && d.innerType) return { value: z.parse(d.innerType, d.defaultValue) };
    if (WRAPPERS.has(d.type) && d.innerType) s = d.innerType;
    else return undefined;
  }
}

/** Whether a recipe may leave the value out (optional or defaulted). */
export function isOptional(s: Schema): boolean {
  return s._zod.optin !== undefined; // 'optional' or 'defaulted'
}

function fmtNum(n: number): string {
  return Number.isInteger(n) || Math.abs(n) >= 1e-3 ? String(n) : n.toExponential();
}

function describeNumber(d: Def): string {
  let integer = false;
  let lo: { value: number; inclusive: boolean } | undefined;
  let hi: { value: number; inclusive: boolean } | undefined;
  for (const c of d.checks ?? []) {
    const cd = c._zod.def;
    if (cd.check === 'number_format') {
      integer ||= cd.format?.includes('int') ?? false;
      if (cd.format === 'uint32' && !lo) lo = { value: 0, inclusive: true };
    } else if (cd.check === 'greater_than' && cd.value !== undefined) {
      if (!lo || cd.value > lo.value || (cd.value === lo.value && !cd.inclusive)) lo = { value: cd.value, inclusive: !!cd.inclusive };
    } else if (cd.check === 'less_than' && cd.value !== undefined) {
      if (!hi || cd.value < hi.value || (cd.value === hi.value && !cd.inclusive)) hi = { value: cd.value, inclusive: !!cd.inclusive };
    }
  }
  // an integer > 0 reads better as >= 1
  if (integer && lo && !lo.inclusive && Number.isInteger(lo.value)) lo = { value: lo.value + 1, inclusive: true };
  if (integer && hi && !hi.inclusive && Number.isInteger(hi.value)) hi = { value: hi.value - 1, inclusive: true };
  const name = integer ? 'integer' : 'number';
  if (lo?.inclusive && hi?.inclusive) return `${name} ${fmtNum(lo.value)}..${fmtNum(hi.value)}`;
  const parts: string[] = [];
  if (lo) parts.push(`${lo.inclusive ? '>=' : '>'} ${fmtNum(lo.value)}`);
  if (hi) parts.push(`${hi.inclusive ? '<=' : '<'} ${fmtNum(hi.value)}`);
  return parts.length ? `${name} ${parts.join(', ')}` : name;
}

/** A short human name for what the schema accepts: `2|3|4|8`, `number 0..1`, `list of string`. */
export function describeType(s: Schema): string {
  const label = meta(s)?.typeLabel;
  if (typeof label === 'string') return label;
  const d = defOf(s);
  if (d.type === 'nullable' && d.innerType) return `${describeType(d.innerType)}|null`;
  if (WRAPPERS.has(d.type) && d.innerType) return describeType(d.innerType);
  switch (d.type) {
    case 'pipe':
    case 'lazy':
      return describeType(unwrap(s));
    case 'number':
      return describeNumber(d);
    case 'bigint':
      return 'integer';
    case 'string':
    case 'boolean':
    case 'null':
    case 'date':
      return d.type;
    case 'enum':
      return Object.values(d.entries ?? {}).join('|');
    case 'literal':
      return (d.values ?? []).map(String).join('|');
    case 'union': {
      const options = d.options ?? [];
      if (d.discriminator !== undefined) {
        const tags = options.flatMap((o) => discriminatorValues(o, d.discriminator!));
        return `mapping with ${d.discriminator}: ${tags.map(String).join('|')}`;
      }
      return [...new Set(options.map(describeType))].join('|');
    }
    case 'array':
      return d.element ? `list of ${describeType(d.element)}` : 'list';
    case 'tuple':
      return `[${(d.items ?? []).map(describeType).join(', ')}]`;
    case 'object':
      return 'mapping';
    case 'record':
      if (!d.valueType || ['any', 'unknown'].includes(defOf(d.valueType).type)) return 'mapping';
      return `mapping of ${describeType(d.valueType)}`;
    case 'any':
    case 'unknown':
      return 'any';
    default:
      return d.type;
  }
}
