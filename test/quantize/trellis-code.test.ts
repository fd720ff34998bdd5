import { describe, expect, it } from 'vitest';
import { MAD_A, MAD_B, madCodebook, nextState, packStates, streamBits, type TrellisShape, unpackStates, viterbi } from '../../src/quantize/trellis-code.js';
import { gaussianMatrix, rng } from '../reference/random.js';

/**
 * quantize.trellis's code (trellis-code.ts), each property against something computed here
 * independently: Viterbi against brute force over every bit string, the stream layout against a bit
 * string built by hand, the 1MAD codebook against BigInt arithmetic, and the rate–distortion of the
 * whole code against Lloyd–Max's scalar quantizer and Shannon's bound.
 */

/** Σ (t_n − c(s_n))², summed in order */
function pathError(target: ArrayLike<number>, states: ArrayLike<number>, code: Float32Array): number {
  let e = 0;
  for (let n = 0; n < target.length; n++) e += (target[n]! - code[states[n]!]!) ** 2;
  return e;
}

/** every state follows its predecessor: its high L − k bits are the predecessor's low L − k bits */
function isPath(states: ArrayLike<number>, { L, k }: TrellisShape, start?: number): boolean {
  const mask = (1 << L) - 1;
  for (let n = 0; n < states.length; n++) {
    const prev = n === 0 ? start : states[n - 1]!;
    if (prev === undefined) continue;
    if (((prev << k) & mask) !== (states[n]! & ~((1 << k) - 1) & mask)) return false;
  }
  return true;
}

/**
 * The least squared error over every stream, by enumeration. Free start: the stream is
 * (L − k) + k·n bits and state n is its L bits from bit k·n. With `start`: the k·n bits follow
 * start's L bits, i.e. the stream is start's low L − k bits, then the k·n enumerated ones.
 */
function bruteForce(target: ArrayLike<number>, code: Float32Array, { L, k }: TrellisShape, start?: number): number {
  const n = target.length;
  const free = start === undefined ? L - k + k * n : k * n;
  const total = L - k + k * n;
  const head = start === undefined ? 0 : (start & ((1 << (L - k)) - 1)) * 2 ** free;
  const mask = 2 ** L;
  let best = Infinity;
  for (let x = 0; x < 2 ** free; x++) {
    const bits = head + x; // ≤ 2^21 here: plain integers
    let e = 0;
    for (let i = 0; i < n; i++) {
      const s = Math.floor(bits / 2 ** (total - k * i - L)) % mask;
      e += (target[i]! - code[s]!) ** 2;
    }
    if (e < best) best = e;
  }
  return best;
}

describe('trellis Viterbi', () => {
  const shapes: TrellisShape[] = [
    { L: 4, k: 1 },
    { L: 4, k: 2 },
    { L: 6, k: 2 },
    { L: 6, k: 3 },
  ];
  for (const shape of shapes) {
    it(`L=${shape.L}, k=${shape.k}: viterbi's error is brute force's minimum over every stream, lengths 1…6, free and fixed start (relative 1e-12)`, () => {
      const code = madCodebook(shape.L);
      const random = rng(shape.L * 10 + shape.k);
      for (let n = 1; n <= 6; n++) {
        const target = Array.from(gaussianMatrix(n, 100 * shape.L + 10 * shape.k + n), (v) => 1.3 * v);
        const free = viterbi(target, code, shape);
        expect(free.states.length).toBe(n);
        expect(isPath(free.states, shape)).toBe(true);
        const exact = bruteForce(target, code, shape);
        expect(Math.abs(free.error - exact)).toBeLessThanOrEqual(1e-12 * exact);
        expect(Math.abs(pathError(target, free.states, code) - free.error)).toBeLessThanOrEqual(1e-12 * exact);
        for (let trial = 0; trial < 3; trial++) {
          const start = Math.floor(random() * (1 << shape.L));
          const fixed = viterbi(target, code, shape, start);
          expect(isPath(fixed.states, shape, start)).toBe(true);
          const exactFixed = bruteForce(target, code, shape, start);
          expect(exactFixed).toBeGreaterThanOrEqual(exact);
          expect(Math.abs(fixed.error - exactFixed)).toBeLessThanOrEqual(1e-12 * exactFixed);
          expect(Math.abs(pathError(target, fixed.states, code) - fixed.error)).toBeLessThanOrEqual(1e-12 * exactFixed);
        }
      }
    });
  }

  it('an empty target has no states and no error', () => {
    expect(viterbi([], madCodebook(4), { L: 4, k: 2 })).toEqual({ states: new Int32Array(0), error: 0 });
  });
});

/** the stream's bits as the header describes them: the first state's L bits, then each later state's low k bits, MSB first */
function expectedBits(states: Int32Array, { L, k }: TrellisShape): number[] {
  const bits: number[] = [];
  for (let b = L - 1; b >= 0; b--) bits.push((states[0]! >> b) & 1);
  for (let n = 1; n < states.length; n++) for (let b = k - 1; b >= 0; b--) bits.push((states[n]! >> b) & 1);
  return bits;
}

describe('trellis stream', () => {
  const shapes: TrellisShape[] = [{ L: 2, k: 1 }, { L: 4, k: 4 }, { L: 9, k: 3 }, { L: 12, k: 2 }, { L: 16, k: 5 }];
  for (let k = 1; k <= 8; k++) shapes.push({ L: 17, k });
  for (const shape of shapes) {
    it(`L=${shape.L}, k=${shape.k}: packStates lays out the bits of a random path as described, in ceil(bits/8) + 2 bytes, and unpackStates reads the path back (exact)`, () => {
      const random = rng(shape.L * 100 + shape.k);
      for (const count of [1, 2, 3, 8, 77, 1000]) {
        const states = new Int32Array(count);
        states[0] = Math.floor(random() * (1 << shape.L));
        for (let n = 1; n < count; n++) states[n] = nextState(states[n - 1]!, Math.floor(random() * (1 << shape.k)), shape);
        const stream = packStates(states, shape);
        const bits = expectedBits(states, shape);
        expect(bits.length).toBe(streamBits(count, shape));
        expect(stream.length).toBe(Math.ceil(bits.length / 8) + 2);
        const got: number[] = [];
        for (let p = 0; p < stream.length * 8; p++) got.push((stream[p >> 3]! >> (7 - (p & 7))) & 1);
        expect(got).toEqual([...bits, ...new Array<number>(stream.length * 8 - bits.length).fill(0)]);
        expect(unpackStates(stream, count, shape)).toEqual(states);
      }
    });
  }
});

describe('1MAD codebook', () => {
  it('c(s)·147.8 + 510 is the byte sum of (MAD_A·s + MAD_B) mod 2^32 computed with BigInt, for every s < 2^12 (exact), and c(s) is float32((sum − 510)/147.8) within 2 float32 ulps', () => {
    const code = madCodebook(12);
    expect(code.length).toBe(4096);
    for (let s = 0; s < 4096; s++) {
      const x = (BigInt(MAD_A) * BigInt(s) + BigInt(MAD_B)) % 2n ** 32n;
      let sum = 0;
      for (let byte = 0n; byte < 4n; byte++) sum += Number((x >> (8n * byte)) & 0xffn);
      expect(Math.round(code[s]! * 147.8 + 510)).toBe(sum);
      const exact = (sum - 510) / 147.8;
      expect(Math.abs(code[s]! - exact)).toBeLessThanOrEqual(2 * 2 ** -23 * Math.abs(exact));
    }
  });

  it('a smaller codebook is a prefix of a larger one (c(s) does not depend on L)', () => {
    expect(madCodebook(8)).toEqual(madCodebook(12).subarray(0, 256));
    expect(madCodebook(17).subarray(0, 1 << 16)).toEqual(madCodebook(16));
  });

  it('over 2^16 states the code is standardised: |mean| < 2e-3, |variance − 1| < 2e-3, |x| ≤ 510/147.8', () => {
    const code = madCodebook(16);
    let mean = 0;
    for (const v of code) mean += v;
    mean /= code.length;
    let variance = 0;
    for (const v of code) variance += (v - mean) ** 2;
    variance /= code.length;
    expect(Math.abs(mean)).toBeLessThan(2e-3); // measured −3.9e-4
    expect(Math.abs(variance - 1)).toBeLessThan(2e-3); // measured 1.00018
    for (const v of code) expect(Math.abs(v)).toBeLessThanOrEqual(Math.fround(510 / 147.8));
  });
});

describe('trellis rate–distortion on 4096 N(0,1) samples', () => {
  const samples = gaussianMatrix(4096, 2024);
  const mse = (L: number, k: number) => viterbi(samples, madCodebook(L), { L, k }).error / samples.length;
  // Lloyd–Max's optimal fixed-rate scalar quantizer of N(0,1) (Max 1960) and Shannon's D(R) = 4^−k
  // measured at L=12: k=2 0.0766, k=3 0.0199, k=4 0.00561; at L=8, k=2: 0.0893
  const lloydMax: Record<number, number> = { 2: 0.1175, 3: 0.03454, 4: 0.009497 };
  for (const k of [2, 3, 4]) {
    it(`k=${k}, L=12: Shannon's 4^-${k} < viterbi's MSE < Lloyd–Max's ${lloydMax[k]}`, () => {
      const d = mse(12, k);
      expect(d).toBeGreaterThan(4 ** -k);
      expect(d).toBeLessThan(lloydMax[k]!);
    });
  }

  it('k=2: the MSE falls when L grows from 8 to 12', () => {
    const d8 = mse(8, 2);
    const d12 = mse(12, 2);
    expect(d12).toBeLessThan(d8);
  });
});
