import { type Document, isAlias, isCollection, isPair, LineCounter, type Node, parseDocument } from 'yaml';
import { UserError } from '../errors.js';
import { INPUT_LIMITS } from './read-file.js';

/**
 * YAML for recipes and dataset spec files, parsed with bounds: the text's size (the caller reads it
 * with INPUT_LIMITS.yaml), the number of aliases, the nesting depth and the number of values once
 * aliases are expanded (a "billion laughs" document of 90 aliases expands to 10⁹ values). Every
 * problem comes back with its 1-based line and column; none escapes as an exception of the yaml
 * library.
 */

export const YAML_LIMITS = {
  aliases: 100,
  depth: 64,
  /** values (scalars and collections) after alias expansion */
  values: 200_000,
} as const;

export interface YamlIssue {
  line: number;
  col: number;
  message: string;
}

/** A YAML document that cannot be read; `issues` are located, `message` is the first of them on one line. */
export class YamlError extends UserError {
  constructor(
    readonly file: string,
    readonly issues: YamlIssue[],
  ) {
    const first = issues[0]!;
    super(`${file}:${first.line}:${first.col} ${first.message}${issues.length > 1 ? ` (and ${issues.length - 1} more)` : ''}`);
    this.name = 'YamlError';
  }
}

export interface ParsedYaml {
  doc: Document;
  lc: LineCounter;
  /** the document as plain data */
  data: unknown;
}

export function parseYamlBounded(text: string, file: string): ParsedYaml {
  const lc = new LineCounter();
  if (text.length > INPUT_LIMITS.yaml) {
    throw new YamlError(file, [{ line: 1, col: 1, message: `${text.length} characters is more than a YAML file pare reads (${INPUT_LIMITS.yaml})` }]);
  }
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new YamlError(
      file,
      doc.errors.map((e) => ({ ...lc.linePos(e.pos[0]), message: `YAML syntax error: ${e.message.split('\n')[0]}` })),
    );
  }
  checkShape(doc, lc, file);
  let data: unknown;
  try {
    // the expansion is already bounded above; the library's own check stays as a second guard
    data = doc.toJS({ maxAliasCount: YAML_LIMITS.values });
  } catch (e) {
    throw new YamlError(file, [{ line: 1, col: 1, message: `YAML cannot be read (${(e as Error).message.split('\n')[0]})` }]);
  }
  return { doc, lc, data };
}

/** Aliases, depth and expanded size, measured on the document's nodes before anything is expanded. */
function checkShape(doc: Document, lc: LineCounter, file: string): void {
  let aliases = 0;
  const fail = (node: Node | undefined, message: string): never => {
    throw new YamlError(file, [{ ...lc.linePos(node?.range?.[0] ?? 0), message }]);
  };
  // per node: values it expands to and its height in collections; an alias costs what its anchor costs
  const memo = new Map<unknown, { values: number; height: number }>();
  /** `depth`: collections around `node` */
  const measure = (node: unknown, depth: number): { values: number; height: number } => {
    if (node === null || node === undefined) return { values: 0, height: 0 };
    if (isAlias(node)) {
      if (++aliases > YAML_LIMITS.aliases) fail(node, `more than ${YAML_LIMITS.aliases} YAML aliases (*name); write the values out`);
      const target = node.resolve(doc);
      const m = memo.get(target) ?? measure(target, depth);
      if (depth + m.height > YAML_LIMITS.depth) fail(node, `alias *${node.source} nests the YAML deeper than ${YAML_LIMITS.depth} levels`);
      return m;
    }
    if (isPair(node)) {
      const k = measure(node.key, depth);
      const v = measure(node.value, depth);
      return { values: k.values + v.values, height: Math.max(k.height, v.height) };
    }
    if (isCollection(node)) {
      if (depth + 1 > YAML_LIMITS.depth) fail(node, `YAML nested deeper than ${YAML_LIMITS.depth} levels`);
      let values = 1;
      let height = 0;
      for (const item of node.items) {
        const m = measure(item, depth + 1);
        values += m.values;
        height = Math.max(height, m.height);
        if (values > YAML_LIMITS.values) fail(item as Node, `YAML expands to more than ${YAML_LIMITS.values} values (through its aliases)`);
      }
      const m = { values, height: height + 1 };
      memo.set(node, m);
      return m;
    }
    // scalars (and anything else) are one value
    return { values: 1, height: 0 };
  };
  const total = measure(doc.contents, 0);
  if (total.values > YAML_LIMITS.values) fail(doc.contents as Node, `YAML expands to more than ${YAML_LIMITS.values} values (through its aliases)`);
}
