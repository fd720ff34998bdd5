import type { Tokenizer } from '../../src/data/tokenizer-types.js';

/**
 * pare's text loading before it became lazy (commit ee4f083), as a plain transcription: every
 * selected document encoded first, then segments cut from their concatenation, or one sequence per
 * document truncated at max_length, or strided windows.
 */
export function eagerTextSequences(
  docs: string[],
  tokenizer: Tokenizer,
  spec: { bos: boolean; max_length: number; stride?: number; segment?: number },
): { sequences: Int32Array[]; scoreFrom: number[] } {
  const bos = spec.bos && tokenizer.bosId !== undefined;
  const encoded = docs.map((d) => tokenizer.encode(d, { bos }));
  const sequences: Int32Array[] = [];
  const scoreFrom: number[] = [];
  if (spec.segment) {
    const all = encoded.flat();
    for (let i = 0; i + spec.segment <= all.length; i += spec.segment) {
      sequences.push(Int32Array.from(all.slice(i, i + spec.segment)));
      scoreFrom.push(0);
    }
    return { sequences, scoreFrom };
  }
  for (const ids of encoded) {
    if (ids.length <= spec.max_length || spec.stride === undefined) {
      sequences.push(Int32Array.from(ids.slice(0, spec.max_length)));
      scoreFrom.push(0);
      continue;
    }
    let prevEnd = 0;
    for (let start = 0; prevEnd < ids.length; start += spec.stride) {
      const end = Math.min(start + spec.max_length, ids.length);
      sequences.push(Int32Array.from(ids.slice(start, end)));
      scoreFrom.push(prevEnd === 0 ? 0 : prevEnd - start - 1);
      prevEnd = end;
    }
  }
  return { sequences, scoreFrom };
}
