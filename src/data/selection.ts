import { UserError } from '../errors.js';

/**
 * "1-10", "1,3,5-7" (1-based, inclusive) → 0-based indices in the order given. A reversed range, a
 * document picked twice or one past `count` is a user error naming `where` and the select field.
 */
export function parseSelection(text: string, count: number, where: string): number[] {
  const out: number[] = [];
  const seen = new Set<number>();
  const fail = (why: string) => new UserError(`${where}: select "${text}" ${why} (field select)`);
  for (const part of text.split(',')) {
    const [a, b = a] = part.split('-').map((s) => Number(s.trim())) as [number, number?];
    if (b < a) throw fail(`has the reversed range ${a}-${b}`);
    for (let i = a; i <= b; i++) {
      if (i < 1 || i > count) throw fail(`asks for document ${i}, the file has ${count}`);
      if (seen.has(i)) throw fail(`picks document ${i} twice`);
      seen.add(i);
      out.push(i - 1);
    }
  }
  return out;
}
