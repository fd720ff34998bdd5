import { seededRandom } from '../util/random.js';

/** How the next token is chosen from a row of logits. */
export type Sampling = { kind: 'greedy' } | { kind: 'sample'; temperature: number; topK?: number; seed: number };

/**
 * A picker over rows of logits: greedy takes the first largest logit; sampling draws from
 * softmax(logits / temperature) restricted to the top-k logits (ties broken by the lower id),
 * in float64, with one seeded uniform draw per token, so a seed repeats its tokens exactly.
 */
export function tokenPicker(s: Sampling): (logits: ArrayLike<number>) => number {
  if (s.kind === 'greedy') return argmax;
  const random = seededRandom(s.seed);
  return (logits) => sampleToken(logits, s.temperature, s.topK, random());
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/** The token whose cumulative probability first passes `u` ∈ [0, 1). */
export function sampleToken(logits: ArrayLike<number>, temperature: number, topK: number | undefined, u: number): number {
  const ids = Array.from({ length: logits.length }, (_, i) => i);
  const k = Math.min(topK ?? ids.length, ids.length);
  if (k < ids.length) ids.sort((a, b) => logits[b]! - logits[a]! || a - b).splice(k);
  let max = -Infinity;
  for (const i of ids) max = Math.max(max, logits[i]!);
  const weights = ids.map((i) => Math.exp((logits[i]! - max) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let acc = 0;
  for (let j = 0; j < ids.length; j++) {
    acc += weights[j]! / total;
    if (u < acc) return ids[j]!;
  }
  return ids[ids.length - 1]!;
}
