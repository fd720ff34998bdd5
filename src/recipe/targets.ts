import { UserError } from '../errors.js';

/**
 * Layer selection for a pass's `targets` and `ignore` lists. Each entry is one of:
 *   - a glob, matched against the whole layer name: `*` matches any run of characters (dots
 *     included, so `**` means the same), `?` exactly one character, everything else itself;
 *     `model.layers.*.mlp.*` selects every MLP projection, `*` selects everything.
 *   - `re:` followed by a JavaScript regular expression, also matched against the whole name:
 *     `re:.*\.(q|k|v)_proj` selects attention inputs.
 * A layer is selected when some target matches it and no ignore entry does. Order is the model's.
 */

import { compilePattern, RE_PREFIX } from '../util/pattern.js';

export { compilePattern, patternError } from '../util/pattern.js';

export interface TargetMatcher {
  readonly targets: readonly string[];
  readonly ignore: readonly string[];
  /** selected by some target and by no ignore entry */
  matches(name: string): boolean;
}

export function compileTargets(targets: readonly string[], ignore: readonly string[] = []): TargetMatcher {
  const inc = targets.map(compilePattern);
  const exc = ignore.map(compilePattern);
  return {
    targets,
    ignore,
    matches: (name) => inc.some((r) => r.test(name)) && !exc.some((r) => r.test(name)),
  };
}

/** The names selected by `targets` minus `ignore`, in input order. */
export function selectLayers(names: readonly string[], targets: readonly string[], ignore: readonly string[] = []): string[] {
  const m = compileTargets(targets, ignore);
  return names.filter((n) => m.matches(n));
}

/** How many dot-separated segments of a glob match `name` position by position. */
function segmentScore(target: string, name: string): number {
  const t = target.split('.');
  const n = name.split('.');
  let score = 0;
  for (let i = 0; i < Math.min(t.length, n.length); i++) if (compilePattern(t[i]!).test(n[i]!)) score++;
  return score;
}

/** The layer name closest to what the first glob target seems to mean, as an example. */
function closestName(targets: readonly string[], names: readonly string[]): string {
  const glob = targets.find((t) => !t.startsWith(RE_PREFIX));
  if (glob === undefined) return names[0]!;
  let best = names[0]!;
  let bestScore = -1;
  for (const n of names) {
    const s = segmentScore(glob, n);
    if (s > bestScore) [best, bestScore] = [n, s];
  }
  return best;
}

/**
 * The user error text for a pass whose targets selected nothing. `where` is the pass's recipe
 * path (`passes[0]`); `names` are the layers the pass could have changed.
 * e.g. `passes[0].targets ["model.layers.*.mlp.nope"] matched no layer (layers look like "model.layers.0.mlp.gate_proj")`
 */
export function noMatchMessage(where: string, targets: readonly string[], ignore: readonly string[], names: readonly string[]): string {
  const t = `${where}.targets ${JSON.stringify(targets)}`;
  if (names.length === 0) return `${t} matched no layer (the model has no layers this pass can change)`;
  const hit = selectLayers(names, targets);
  if (hit.length > 0) {
    return `${t} matched ${hit.length} layer${hit.length === 1 ? '' : 's'}, but ${where}.ignore ${JSON.stringify(ignore)} excludes all of them`;
  }
  return `${t} matched no layer (layers look like ${JSON.stringify(closestName(targets, names))})`;
}

/** selectLayers, throwing the noMatchMessage UserError when nothing is selected. */
export function selectLayersOrThrow(where: string, names: readonly string[], targets: readonly string[], ignore: readonly string[] = []): string[] {
  const selected = selectLayers(names, targets, ignore);
  if (selected.length === 0) throw new UserError(noMatchMessage(where, targets, ignore, names));
  return selected;
}
