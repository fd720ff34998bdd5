import { UserError } from '../errors.js';

/**
 * Name patterns (recipe targets, pass params that name nodes): a glob matched against the whole
 * name, `*` any run of characters (dots included), `?` one character; or `re:` followed by a
 * JavaScript regular expression, also matched against the whole name.
 */

export const RE_PREFIX = 're:';

function globSource(glob: string): string {
  let out = '';
  for (const ch of glob) {
    if (ch === '*') out += out.endsWith('.*') ? '' : '.*';
    else if (ch === '?') out += '.';
    else out += ch.replace(/[.+^${}()|[\]\\/-]/g, '\\$&');
  }
  return out;
}

/** Why a pattern does not compile, or undefined when it does. */
export function patternError(pattern: string): string | undefined {
  if (!pattern.startsWith(RE_PREFIX)) return undefined;
  try {
    new RegExp(pattern.slice(RE_PREFIX.length));
    return undefined;
  } catch (e) {
    // "Invalid regular expression: /(/: Unterminated group" -> "Unterminated group"
    const why = (e as Error).message.replace(/^.*: /, '');
    return `invalid regular expression ${JSON.stringify(pattern)}: ${why}`;
  }
}

/** A glob or `re:` pattern as an anchored RegExp. */
export function compilePattern(pattern: string): RegExp {
  const err = patternError(pattern);
  if (err) throw new UserError(`${err}. Fix the pattern, or drop the re: prefix to use a glob.`);
  const source = pattern.startsWith(RE_PREFIX) ? pattern.slice(RE_PREFIX.length) : globSource(pattern);
  return new RegExp(`^(?:${source})$`);
}

