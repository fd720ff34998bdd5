/**
 * src/recipe — layer 12 (above the pass families): recipe files, their schema and targets; it is
 * handed the pass list, never imports the registry.
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Document, isAlias, isMap, isScalar, isSeq, type LineCounter, type Node } from 'yaml';
import { UserError } from '../errors.js';
import { INPUT_LIMITS, readInputFile } from '../util/read-file.js';
import { parseYamlBounded, YAML_LIMITS, YamlError } from '../util/yaml.js';
import type { ParamsSchema, ParsedParams, PassSpec } from '../pass/pass-spec.js';
import { type Recipe, RecipeSchema, SCHEDULE_DISTILL_PASS } from './schema.js';
import { didYouMean, formatPath, isPlainObject, type Problem, problemsFromZod } from './issues.js';

/**
 * Recipe text -> typed Recipe. Every problem is reported at once, one line each, as
 * `recipe.yaml:12:9 passes[1].params.bits: expected 2|3|4|8, got 5`, located through the YAML
 * document's nodes: a bad value at the value, an unknown key at the key, a missing key at its
 * parent's key.
 */

export interface RecipeIssue {
  /** `passes[1].params.bits`; empty for the whole document and for YAML syntax errors */
  path: string;
  /** 1-based */
  line: number;
  col: number;
  message: string;
}

export class RecipeError extends UserError {
  constructor(
    readonly file: string,
    readonly errors: RecipeIssue[],
  ) {
    const n = errors.length;
    const lines = errors.map((e) => `${file}:${e.line}:${e.col} ${e.path ? `${e.path}: ` : ''}${e.message}`);
    super([`${file}: ${n} error${n === 1 ? '' : 's'}`, ...lines].join('\n'));
    this.name = 'RecipeError';
  }
}

/** Cross-section rules and per-pass params: pass ids exist, params fit the pass, calibration is present where needed. */
function passProblems<Parsed extends ParsedParams>(data: unknown, passes: readonly PassSpec<ParamsSchema, Parsed>[]): { problems: Problem[]; parsed: Map<number, Parsed>; parsedDistill: Map<number, Parsed> } {
  const problems: Problem[] = [];
  const parsed = new Map<number, Parsed>();
  const parsedDistill = new Map<number, Parsed>();
  if (!isPlainObject(data) || !Array.isArray(data.passes)) return { problems, parsed, parsedDistill };
  const byId = new Map<string, PassSpec<ParamsSchema, Parsed>>();
  for (const p of passes) if (!byId.has(p.id)) byId.set(p.id, p);
  const needCalibration: { index: number; id: string }[] = [];
  const hasCalibration = data.calibration !== undefined;
  data.passes.forEach((entry: unknown, i: number) => {
    if (!isPlainObject(entry) || typeof entry.pass !== 'string') return; // the schema reports these
    const spec = byId.get(entry.pass);
    if (!spec) {
      const ids = [...byId.keys()];
      problems.push({
        path: ['passes', i, 'pass'],
        at: 'value',
        message: `unknown pass ${JSON.stringify(entry.pass)}${didYouMean(entry.pass, ids)}; known passes: ${ids.join(', ') || '(none registered)'}`,
      });
      return;
    }
    if (spec.runsLast && i < (data.passes as unknown[]).length - 1) {
      problems.push({ path: ['passes', i, 'pass'], at: 'value', message: `${spec.id} must be the last pass: the passes after it would meet a float16 graph; move it to the end` });
    }
    const own = checkParams(spec, entry.params ?? {}, ['passes', i, 'params'], hasCalibration);
    if (own.parsed) parsed.set(i, own.parsed);
    problems.push(...own.problems);
    if (own.needsSection) needCalibration.push({ index: i, id: spec.id });
    if (!isPlainObject(entry.schedule)) return; // absent, or the schema's to report
    if (spec.runsLast || spec.id === SCHEDULE_DISTILL_PASS) {
      problems.push({ path: ['passes', i, 'schedule'], at: 'key', message: `${spec.id} cannot be scheduled in stages; remove schedule` });
      return;
    }
    const distillSpec = byId.get(SCHEDULE_DISTILL_PASS);
    if (!distillSpec) throw new Error(`schedule needs the pass ${SCHEDULE_DISTILL_PASS}, which is not registered`);
    const distill = checkParams(distillSpec, entry.schedule.distill ?? {}, ['passes', i, 'schedule', 'distill'], hasCalibration);
    if (distill.parsed) parsedDistill.set(i, distill.parsed);
    problems.push(...distill.problems);
    if (distill.needsSection) needCalibration.push({ index: i, id: distillSpec.id });
  });
  if (needCalibration.length > 0) {
    const first = needCalibration[0]!;
    const ids = [...new Set(needCalibration.map((n) => n.id))];
    problems.push({
      path: ['passes', first.index, 'pass'],
      at: 'value',
      message: `${ids.join(', ')} need${ids.length === 1 ? 's' : ''} calibration data, but the recipe has no calibration section; add calibration: { data: {...}, samples: 128 }`,
    });
  }
  return { problems, parsed, parsedDistill };
}

/**
 * One pass's params at `at` (`passes[1].params`, or a schedule's `distill`): parsed by the pass's
 * schema, with a problem where they need the calibration section the recipe lacks at a param
 * (`needsSection` when the pass needs it whatever its params).
 */
function checkParams<Parsed extends ParsedParams>(
  spec: PassSpec<ParamsSchema, Parsed>,
  raw: unknown,
  at: PropertyKey[],
  hasCalibration: boolean,
): { parsed?: Parsed; problems: Problem[]; needsSection: boolean } {
  const problems: Problem[] = [];
  // a non-mapping params is the schema's to report; calibration is then judged as for any params
  const r = isPlainObject(raw) ? spec.parse(raw) : undefined;
  if (r && !r.success) problems.push(...problemsFromZod(r.error.issues, spec.params, raw, at));
  const parsed = r?.success ? r.data : undefined;
  const calibration = parsed ? parsed.calibration : spec.needsCalibration(undefined);
  if (calibration.need !== 'required' || hasCalibration) return { parsed, problems, needsSection: false };
  if (calibration.param === undefined) return { parsed, problems, needsSection: true };
  const value = parsed ? ` ${JSON.stringify(parsed.written[calibration.param])}` : '';
  problems.push({
    path: [...at, calibration.param],
    at: 'value',
    message: `${spec.id} with ${calibration.param}${value} needs calibration data, but the recipe has no calibration section; add calibration: { data: {...}, samples: 128 }${calibration.instead ? ` or set ${calibration.instead}` : ''}`,
  });
  return { parsed, problems, needsSection: false };
}

/** Line and column of a problem: the node at its path, or the nearest ancestor that exists. */
function locate(doc: Document, lc: LineCounter, p: Problem): { line: number; col: number } {
  let node: unknown = doc.contents;
  let key: Node | undefined;
  let found = 0;
  for (const seg of p.path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((it) => String(isScalar(it.key) ? it.key.value : it.key) === String(seg));
      if (!pair) break;
      key = pair.key as Node;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number' && seg < node.items.length) {
      key = undefined;
      node = node.items[seg];
    } else break;
    found++;
  }
  const range = (n: unknown) => (n && typeof n === 'object' && 'range' in n ? (n as Node).range : undefined);
  const value = range(node);
  const emptyValue = !value || value[0] === value[1];
  let offset: number;
  if (found < p.path.length) offset = range(key)?.[0] ?? value?.[0] ?? 0; // missing: point at the parent
  else if (p.at === 'key' || emptyValue) offset = range(key)?.[0] ?? value?.[0] ?? 0;
  else offset = value[0];
  return lc.linePos(offset);
}

/**
 * The recipe's YAML document with a line counter for locating problems, read within the bounds of
 * src/util/yaml.ts; a syntax error or an exceeded limit is a RecipeError at its line and column.
 */
export function parseRecipeYaml(text: string, file: string): { doc: Document; lc: LineCounter } {
  try {
    const { doc, lc } = parseYamlBounded(text, file);
    return { doc, lc };
  } catch (e) {
    if (e instanceof YamlError) throw new RecipeError(file, e.issues.map((i) => ({ path: '', ...i })));
    throw e;
  }
}

function locatedError(doc: Document, lc: LineCounter, file: string, problems: readonly Problem[]): RecipeError {
  const seen = new Set<string>();
  const errors: RecipeIssue[] = [];
  for (const p of problems) {
    const e = { path: formatPath(p.path), ...locate(doc, lc, p), message: p.message };
    const id = `${e.line}:${e.col} ${e.path}: ${e.message}`;
    if (seen.has(id)) continue;
    seen.add(id);
    errors.push(e);
  }
  errors.sort((a, b) => a.line - b.line || a.col - b.col);
  return new RecipeError(file, errors);
}

/**
 * Parse and validate a recipe. `file` is only used in messages. Throws RecipeError (a UserError)
 * listing every problem; returns the recipe with each pass's params parsed by its own schema.
 */
export function parseRecipe<Parsed extends ParsedParams>(text: string, file: string, passes: readonly PassSpec<ParamsSchema, Parsed>[]): Recipe<Parsed> {
  const { doc, lc } = parseRecipeYaml(text, file);
  return parseRecipeDocument(doc, lc, file, passes);
}

/**
 * parseRecipe on a YAML document already parsed (and perhaps edited: a sweep point's settings);
 * problems are located through the document's nodes, so an edited value keeps its place in the file.
 */
export function parseRecipeDocument<Parsed extends ParsedParams>(doc: Document, lc: LineCounter, file: string, passes: readonly PassSpec<ParamsSchema, Parsed>[]): Recipe<Parsed> {
  // the document was measured when it was read (a sweep adds a few scalars); the library's count stays as a guard
  const data: unknown = doc.toJS({ maxAliasCount: YAML_LIMITS.values });

  const problems: Problem[] = [];
  const r = RecipeSchema.safeParse(data);
  if (!r.success) problems.push(...problemsFromZod(r.error.issues, RecipeSchema, data, []));
  const checked = passProblems(data, passes);
  problems.push(...checked.problems);
  if (problems.length > 0 || !r.success) throw locatedError(doc, lc, file, problems);
  return {
    ...r.data,
    passes: r.data.passes.map(({ schedule, ...entry }, i) => {
      const parsed = checked.parsed.get(i)!;
      if (!schedule) return { ...entry, params: parsed.written, parsed };
      const distill = checked.parsedDistill.get(i)!;
      return { ...entry, params: parsed.written, parsed, schedule: { blocks_per_stage: schedule.blocks_per_stage, distill: { params: distill.written, parsed: distill } } };
    }),
  };
}

export interface LoadedRecipe<Parsed extends ParsedParams = ParsedParams> {
  recipe: Recipe<Parsed>;
  /** the file as read, for the report and the work dir */
  text: string;
  /** hex sha256 of the file's bytes */
  sha256: string;
  path: string;
  /** relative dataset paths resolve against this folder */
  dir: string;
}

/** Problems found after parsing (a pass's params against the model's layers), located in the recipe text like parse errors. */
export function recipeErrorAt(recipe: Pick<LoadedRecipe, 'text' | 'path'>, problems: readonly Problem[]): RecipeError {
  const { doc, lc } = parseRecipeYaml(recipe.text, recipe.path);
  return locatedError(doc, lc, recipe.path, problems);
}

export function loadRecipe<Parsed extends ParsedParams>(path: string, passes: readonly PassSpec<ParamsSchema, Parsed>[]): LoadedRecipe<Parsed> {
  try {
    if (statSync(path).isDirectory()) throw new UserError(`recipe ${path} is a directory; pass the recipe's .yaml file`);
  } catch (e) {
    if (e instanceof UserError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`recipe ${path} not found; check the path (examples are in recipes/)`);
  }
  // a regular file only, read up to the YAML cap: a recipe is a short text file
  const bytes = readInputFile(path, 'recipe', { maxBytes: INPUT_LIMITS.yaml, fix: 'a recipe is a short YAML file' });
  const text = bytes.toString('utf8');
  return {
    recipe: parseRecipe(text, path, passes),
    text,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    path,
    dir: dirname(resolve(path)),
  };
}
