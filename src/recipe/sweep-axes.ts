import { createHash } from 'node:crypto';
import { type Document, isMap, isScalar, type LineCounter, parseDocument } from 'yaml';
import { UserError } from '../errors.js';
import type { ParamsSchema, ParsedParams, PassSpec } from '../pass/pass-spec.js';
import { canonicalJson } from '../util/canonical-json.js';
import { didYouMean, formatPath, isPlainObject } from './issues.js';
import { type LoadedRecipe, parseRecipeDocument, parseRecipeYaml, RecipeError } from './parse.js';
import { RecipeSchema, type Recipe } from './schema.js';
import { knownKeys, schemaAt } from './zod-shape.js';

/**
 * A sweep: a base recipe and axes, each a recipe path (`passes[0].params.sparsity`) with the values
 * it takes, from `--set PATH=V1,V2` flags or the recipe's `sweep:` section. The points are the
 * product of the axes; each is the base recipe with one value per axis set in its YAML document
 * (so problems keep their place in the file) and the `sweep:` section removed, validated like any
 * recipe before anything runs.
 */

export interface SweepAxis {
  /** the path as pare prints it: `passes[0].params.sparsity` */
  path: string;
  segments: (string | number)[];
  values: unknown[];
  /** where it was given, for messages: `--set passes[0].params.sparsity=0.3,0.4` or `base.yaml:20:3 sweep` */
  source: string;
}

export interface SweepPoint<Parsed extends ParsedParams = ParsedParams> {
  /** position in the product, first axis outermost */
  index: number;
  /** one [path, value] per axis, in axis order */
  settings: [string, unknown][];
  /** `sparsity=0.5,bits=4`: the settings as a folder-safe name ('base' without axes) */
  label: string;
  /**
   * The point's recipe: `text` is the base file (problems found later are located in it) and
   * `sha256` hashes `identity`, the recipe as it runs.
   */
  recipe: LoadedRecipe<Parsed>;
  /** the validated recipe with defaults filled, as plain data: what the point's id is computed from */
  identity: unknown;
}

export interface Sweep<Parsed extends ParsedParams = ParsedParams> {
  base: { path: string; sha256: string };
  axes: SweepAxis[];
  points: SweepPoint<Parsed>[];
}

/** `passes[0].params.sparsity` -> ['passes', 0, 'params', 'sparsity']; undefined when it is not a path. */
export function parseSettingPath(path: string): (string | number)[] | undefined {
  const segments: (string | number)[] = [];
  const re = /([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|(\.)/gy;
  let expectKey = true;
  let m: RegExpExecArray | null;
  let at = 0;
  while (at < path.length && (m = re.exec(path))) {
    at = re.lastIndex;
    if (m[1] !== undefined) {
      if (!expectKey) return undefined;
      segments.push(m[1]);
      expectKey = false;
    } else if (m[2] !== undefined) {
      if (expectKey) return undefined;
      segments.push(Number(m[2]));
    } else {
      if (expectKey) return undefined;
      expectKey = true;
    }
  }
  return at === path.length && !expectKey && segments.length > 0 ? segments : undefined;
}

/** `PATH=V1,V2,...`: the values are read as a YAML flow list, so `0.3,0.4`, `true`, `"2:4"` and `[a, b]` all work. */
export function parseSetFlag(text: string): SweepAxis {
  const source = `--set ${text}`;
  const eq = text.indexOf('=');
  if (eq <= 0) throw new UserError(`${source}: expected PATH=VALUE[,VALUE...], e.g. --set 'passes[0].params.sparsity=0.3,0.5'`);
  const path = text.slice(0, eq).trim();
  const segments = parseSettingPath(path);
  if (!segments) throw new UserError(`${source}: '${path}' is not a recipe path; write it like passes[0].params.sparsity or calibration.samples`);
  const doc = parseDocument(`[${text.slice(eq + 1)}]`, { prettyErrors: false });
  const values: unknown = doc.errors.length ? undefined : doc.toJS();
  if (!Array.isArray(values)) throw new UserError(`${source}: cannot read the values as YAML (${doc.errors[0]?.message.split('\n')[0] ?? 'not a list'}); separate them with commas and quote any value that holds one`);
  if (values.length === 0) throw new UserError(`${source}: no values; give at least one after '='`);
  return { path: formatPath(segments), segments, values, source };
}

/** The axes of the recipe's `sweep:` section, each located at its key. */
function recipeAxes(doc: Document, lc: LineCounter, file: string): SweepAxis[] {
  const section = doc.get('sweep', true);
  if (!isMap(section)) return [];
  const axes: SweepAxis[] = [];
  for (const item of section.items) {
    const key = isScalar(item.key) ? String(item.key.value) : String(item.key);
    const range = isScalar(item.key) ? item.key.range : undefined;
    const at = range ? lc.linePos(range[0]) : { line: 1, col: 1 };
    const source = `${file}:${at.line}:${at.col} sweep ${key}`;
    const segments = parseSettingPath(key);
    if (!segments) throw new UserError(`${source}: '${key}' is not a recipe path; write it like passes[0].params.sparsity or calibration.samples`);
    const values = (item.value as { toJSON?: () => unknown } | null)?.toJSON?.();
    // the schema has checked it is a non-empty list
    axes.push({ path: formatPath(segments), segments, values: values as unknown[], source });
  }
  return axes;
}

/** Why `segments` names no field of the recipe `data`, or undefined when it names one. */
function fieldProblem(segments: readonly (string | number)[], data: unknown, passes: readonly PassSpec[]): string | undefined {
  if (segments[0] === 'sweep') return 'sweep lists the axes; it is not a field a point sets';
  if (segments[0] === 'passes' && typeof segments[1] === 'number') {
    const list = isPlainObject(data) && Array.isArray(data.passes) ? data.passes : [];
    const i = segments[1];
    if (i >= list.length) return `the recipe has ${list.length} pass${list.length === 1 ? '' : 'es'} (passes[0]..passes[${list.length - 1}]); --set changes a pass, it cannot add one`;
    const entry: unknown = list[i];
    if (segments[2] === 'params' && segments.length >= 4 && isPlainObject(entry)) {
      const spec = passes.find((p) => p.id === entry.pass);
      if (!spec) return undefined; // an unknown pass id is the recipe's own error
      const params = isPlainObject(entry.params) ? entry.params : {};
      const key = String(segments[3]);
      const known = knownKeys(spec.params, params);
      if (!known.includes(key)) return `${spec.id} has no param ${JSON.stringify(key)}${didYouMean(key, known)}; its params: ${known.join(', ')}`;
      return walk(spec.params, segments.slice(3), params, formatPath(segments.slice(0, 3)));
    }
  }
  return walk(RecipeSchema, segments, data, '');
}

/** Follows `segments` through `schema` and `data`; a list index must exist in the data. */
function walk(schema: Parameters<typeof schemaAt>[0], segments: readonly (string | number)[], data: unknown, prefix: string): string | undefined {
  let value = data;
  for (let k = 1; k <= segments.length; k++) {
    const seg = segments[k - 1]!;
    if (typeof seg === 'number') {
      const n = Array.isArray(value) ? value.length : 0;
      if (seg >= n) return `${join(prefix, segments.slice(0, k - 1))} has ${n} item${n === 1 ? '' : 's'} in the recipe; index ${seg} does not exist`;
    }
    if (!schemaAt(schema, segments.slice(0, k), data)) {
      const parent = schemaAt(schema, segments.slice(0, k - 1), data);
      const known = parent ? knownKeys(parent, value) : [];
      const where = join(prefix, segments.slice(0, k - 1)) || 'a recipe';
      return `no recipe field ${JSON.stringify(String(seg))} in ${where}${known.length ? `${didYouMean(String(seg), known)}; it takes: ${known.join(', ')}` : ''}`;
    }
    value = isPlainObject(value) || Array.isArray(value) ? (value as Record<PropertyKey, unknown>)[seg] : undefined;
  }
  return undefined;
}

function join(prefix: string, segments: readonly (string | number)[]): string {
  const rest = formatPath(segments);
  return prefix && rest ? (rest.startsWith('[') ? `${prefix}${rest}` : `${prefix}.${rest}`) : prefix || rest;
}

/** A value as part of a folder name: `0.5`, `true`, `2_4` for "2:4". */
function labelValue(v: unknown): string {
  const text = typeof v === 'string' ? v : JSON.stringify(v);
  return text.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 24) || '_';
}

/** Short names for the axes: the last key of each path, longer where two would read the same. */
function axisNames(axes: readonly SweepAxis[]): string[] {
  const last = axes.map((a) => String(a.segments.filter((s) => typeof s === 'string').at(-1)));
  return axes.map((a, i) => (last.filter((n) => n === last[i]).length > 1 ? a.path.replace(/[^A-Za-z0-9._-]+/g, '') : last[i]!));
}

/** The recipe as it runs, as plain data with defaults filled. */
export function recipeIdentity(recipe: Recipe): unknown {
  return {
    version: recipe.version,
    calibration: recipe.calibration,
    passes: recipe.passes.map((p) => ({ pass: p.pass, targets: p.targets, ignore: p.ignore, params: p.params })),
    eval: recipe.eval,
    output: recipe.output,
  };
}

/**
 * The sweep of the recipe at `path` (already read as `text`): its `sweep:` axes, then the `--set`
 * axes (a `--set` of a path the section also names replaces that axis), and every point validated.
 * Every problem throws one UserError, one line per problem, before anything runs.
 */
export function expandSweep<Parsed extends ParsedParams>(
  recipe: { path: string; text: string; dir: string; sha256: string },
  sets: readonly string[],
  passes: readonly PassSpec<ParamsSchema, Parsed>[],
): Sweep<Parsed> {
  const { doc, lc } = parseRecipeYaml(recipe.text, recipe.path);
  // the base itself must be a valid recipe
  parseRecipeDocument(doc, lc, recipe.path, passes);
  const data: unknown = doc.toJS({ maxAliasCount: 1000 });

  const axes = recipeAxes(doc, lc, recipe.path);
  const seen = new Set<string>();
  for (const text of sets) {
    const axis = parseSetFlag(text);
    if (seen.has(axis.path)) throw new UserError(`${axis.source}: ${axis.path} is set twice; give all its values in one --set`);
    seen.add(axis.path);
    const replaced = axes.findIndex((a) => a.path === axis.path);
    if (replaced >= 0) axes[replaced] = axis;
    else axes.push(axis);
  }
  const problems = axes.flatMap((a) => {
    const p = fieldProblem(a.segments, data, passes);
    return p ? [`${a.source}: ${a.path} names no recipe field: ${p}`] : [];
  });
  if (problems.length) throw new UserError(problems.join('\n'));

  const names = axisNames(axes);
  const total = axes.reduce((n, a) => n * a.values.length, 1);
  const points: SweepPoint<Parsed>[] = [];
  const errors = new Set<string>();
  for (let index = 0; index < total; index++) {
    // mixed radix: the last axis varies fastest
    let rest = index;
    const picks = new Array<number>(axes.length);
    for (let a = axes.length - 1; a >= 0; a--) {
      picks[a] = rest % axes[a]!.values.length;
      rest = Math.floor(rest / axes[a]!.values.length);
    }
    const settings = axes.map((a, k): [string, unknown] => [a.path, a.values[picks[k]!]]);
    const label = settings.length ? settings.map(([, v], k) => `${names[k]}=${labelValue(v)}`).join(',') : 'base';
    const pointDoc = doc.clone();
    pointDoc.delete('sweep');
    for (const [k, a] of axes.entries()) pointDoc.setIn(a.segments, pointDoc.createNode(settings[k]![1]));
    let parsed: Recipe<Parsed>;
    try {
      parsed = parseRecipeDocument(pointDoc, lc, recipe.path, passes);
    } catch (e) {
      if (!(e instanceof RecipeError)) throw e;
      for (const issue of e.errors) errors.add(pointError(issue, axes, settings, label, recipe.path));
      continue;
    }
    const identity = recipeIdentity(parsed);
    points.push({
      index,
      settings,
      label,
      identity,
      recipe: { recipe: parsed, text: recipe.text, path: recipe.path, dir: recipe.dir, sha256: createHash('sha256').update(canonicalJson(identity)).digest('hex') },
    });
  }
  if (errors.size) throw new UserError([...errors].join('\n'));
  return { base: { path: recipe.path, sha256: recipe.sha256 }, axes, points };
}

/** A point's recipe problem: at the axis whose value caused it, else at its place in the base file. */
function pointError(issue: RecipeError['errors'][number], axes: readonly SweepAxis[], settings: readonly [string, unknown][], label: string, file: string): string {
  const k = axes.findIndex((a) => issue.path === a.path || issue.path.startsWith(`${a.path}.`) || issue.path.startsWith(`${a.path}[`));
  if (k >= 0) {
    const axis = axes[k]!;
    const value = settings[k]![1];
    const shown = typeof value === 'string' ? value : JSON.stringify(value);
    const head = axis.source.startsWith('--set') ? `--set ${axis.path}=${shown}` : `${axis.source}=${shown}`;
    return `${head}: ${issue.path === axis.path ? '' : `${issue.path}: `}${issue.message}`;
  }
  return `sweep point ${label}: ${file}:${issue.line}:${issue.col} ${issue.path ? `${issue.path}: ` : ''}${issue.message}`;
}
