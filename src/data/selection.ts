/** "1-10", "1,3,5-7" (1-based, inclusive) → 0-based indices in order; out of range is reported by the caller. */
export function parseSelection(text: string): number[] {
  const out: number[] = [];
  for (const part of text.split(',')) {
    const [a, b] = part.split('-').map((s) => Number(s.trim()));
    for (let i = a!; i <= (b ?? a!); i++) out.push(i - 1);
  }
  return out;
}
