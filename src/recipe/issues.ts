import type { z } from 'zod';
import { describeType, knownKeys, schemaAt } from './zod-shape.js';

/** zod issues turned into one-line recipe messages: `expected 2|3|4|8, got 5`, `unknown key; known keys: ...`. */

/** A problem before it is located: where in the data, and whether to point at the key or the value. */
export interface Problem {
  path: PropertyKey[];
  at: 'value' | 'key';
  message: string;
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out ? `.${String(seg)}` : String(seg);
  return out;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const seg of path) {
    if (!isPlainObject(v) && !Array.isArray(v)) return undefined;
    v = (v as Record<PropertyKey, unknown>)[seg];
  }
  return v;
}

/** What the user wrote, for "got ..." */
function showValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return `a list (${v.length} item${v.length === 1 ? '' : 's'})`;
  if (isPlainObject(v)) return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  return String(v);
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j]!;
      row[j] = Math.min(up + 1, row[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length]!;
}

/** ` (did you mean "sparsity"?)` when one candidate is a likely typo of `word`. */
export function didYouMean(word: string, candidates: readonly string[]): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(word.length / 3)) ? ` (did you mean ${JSON.stringify(best)}?)` : '';
}

/** zod issues -> problems with readable messages; `schema` and `data` are what was parsed, `prefix` where it sits. */
export function problemsFromZod(issues: readonly z.core.$ZodIssue[], schema: z.core.$ZodType, data: unknown, prefix: PropertyKey[]): Problem[] {
  const out: Problem[] = [];
  for (const issue of issues) {
    const path = issue.path;
    const got = valueAt(data, path);
    const expected = () => {
      const s = schemaAt(schema, path, data);
      return s ? describeType(s) : undefined;
    };
    const push = (message: string, at: Problem['at'] = 'value', p: PropertyKey[] = path) => out.push({ path: [...prefix, ...p], at, message });
    switch (issue.code) {
      case 'unrecognized_keys': {
        const known = knownKeys(schemaAt(schema, path, data), got);
        for (const key of issue.keys) {
          const hint = known.length ? `; known keys: ${known.join(', ')}${didYouMean(key, known)}` : '';
          push(`unknown key${hint}`, 'key', [...path, key]);
        }
        break;
      }
      case 'invalid_type':
      case 'invalid_value':
      case 'invalid_union': {
        // a discriminated union whose tag matches no option lists the tags
        const options = (issue as { options?: unknown[] }).options;
        const want =
          issue.code === 'invalid_value'
            ? issue.values.map(String).join('|')
            : options
              ? options.map(String).join('|')
              : (expected() ?? (issue.code === 'invalid_type' ? issue.expected : 'one of the allowed forms'));
        if (got === undefined) push(`missing required key (expected ${want})`);
        else if (path.length === 0 && prefix.length === 0 && got === null) push('recipe is empty; expected a mapping with version: 1 and passes: [...]');
        else push(`expected ${want}, got ${showValue(got)}`);
        break;
      }
      case 'too_small':
      case 'too_big': {
        const small = issue.code === 'too_small';
        const bound = Number(small ? issue.minimum : issue.maximum);
        const exact = (issue as { exact?: boolean }).exact;
        if (issue.origin === 'array' || issue.origin === 'string' || issue.origin === 'set') {
          const unit = issue.origin === 'string' ? 'character' : 'item';
          const n = Array.isArray(got) || typeof got === 'string' ? got.length : undefined;
          const rel = exact ? 'exactly' : small ? 'at least' : 'at most';
          push(`expected ${rel} ${bound} ${unit}${bound === 1 ? '' : 's'}, got ${n ?? showValue(got)}`);
        } else {
          const rel = small ? (issue.inclusive ? '>=' : '>') : issue.inclusive ? '<=' : '<';
          push(`expected ${expected() ?? `${issue.origin} ${rel} ${bound}`}, got ${showValue(got)}`);
        }
        break;
      }
      case 'not_multiple_of':
        push(`expected a multiple of ${String(issue.divisor)}, got ${showValue(got)}`);
        break;
      case 'invalid_format': {
        // a labelled type says it best; a bare string says its pattern or the schema's own message
        const want = expected();
        const pattern = issue.format === 'regex' && 'pattern' in issue ? `a string matching ${String(issue.pattern)}` : `a ${issue.format} string`;
        if (want && want !== 'string') push(`expected ${want}, got ${showValue(got)}`);
        else push(issue.message.startsWith('Invalid') ? `expected ${pattern}, got ${showValue(got)}` : `${issue.message}, got ${showValue(got)}`);
        break;
      }
      case 'custom':
        // a rule on a whole mapping (a pass's params) points at the mapping's key
        push(issue.message, path.length === 0 ? 'key' : 'value');
        break;
      default:
        push(issue.message);
    }
  }
  return out;
}
