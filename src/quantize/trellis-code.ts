/**
 * Bitshift trellis codes (QTIP, Tseng et al. 2024, "QTIP: Quantization with Trellises and
 * Incoherence Processing"): a sequence of N values is stored as one bitstream of (L − k) + k·N bits,
 * and value n decodes as c(state_n), state_n = the L bits of the stream starting at bit k·n (read
 * most significant bit first). Consecutive states share L − k bits, so the stream is a path through
 * a trellis of 2^L states with 2^k edges each, and the encoder picks the path that minimises the
 * squared error with the Viterbi algorithm: k bits a value, with the distortion of a codebook of
 * 2^L entries instead of 2^k.
 *
 * The codebook is computed, not stored ("1MAD"): x = (a·s + b) mod 2³², c(s) = (sum of x's four
 * bytes − 510) / 147.8, an approximately standard normal value (a sum of four near-uniform bytes)
 * that ONNX Runtime computes at load with integer Mul/Add/Div/Mod (trellis-onnx.ts).
 */

export const MAD_A = 34038481;
export const MAD_B = 76625530;
const MAD_MEAN = 510;
const MAD_STD = 147.8;
const TWO32 = 4294967296;

/** c(s) for every state s < 2^L (float32, as ORT computes it: float(byte sum − 510) · (1 / 147.8)). */
export function madCodebook(L: number): Float32Array {
  const c = new Float32Array(1 << L);
  const inv = Math.fround(1 / MAD_STD);
  for (let s = 0; s < c.length; s++) {
    const x = (MAD_A * s + MAD_B) % TWO32; // exact in float64: a·s < 2^53 for s < 2^26
    const sum = (x & 0xff) + ((x >>> 8) & 0xff) + ((x >>> 16) & 0xff) + Math.floor(x / 16777216);
    c[s] = Math.fround(Math.fround(sum - MAD_MEAN) * inv);
  }
  return c;
}

export interface TrellisShape {
  /** state bits L */
  L: number;
  /** bits per value k */
  k: number;
}

/** The state a path takes after `state` when the next k bits are `b`. */
export function nextState(state: number, b: number, { L, k }: TrellisShape): number {
  return ((state << k) | b) & ((1 << L) - 1);
}

/**
 * Viterbi: the states s_0 … s_{n−1} (each from its predecessor by `nextState`) minimising
 * Σ (target_n − c(s_n))². With `start`, s_0 must follow `start`; without, s_0 is free (its first
 * L − k bits are stored as the stream's head). Returns the states and the squared error.
 */
export function viterbi(target: ArrayLike<number>, code: Float32Array, shape: TrellisShape, start?: number): { states: Int32Array; error: number } {
  const { L, k } = shape;
  const S = 1 << L;
  const U = 1 << (L - k);
  const n = target.length;
  const states = new Int32Array(n);
  if (n === 0) return { states, error: 0 };
  let cost = new Float64Array(S);
  let next = new Float64Array(S);
  const t0 = target[0]!;
  if (start === undefined) for (let s = 0; s < S; s++) cost[s] = (t0 - code[s]!) ** 2;
  else {
    cost.fill(Infinity);
    const base = (start << k) & (S - 1);
    for (let b = 0; b < 1 << k; b++) cost[base | b] = (t0 - code[base | b]!) ** 2;
  }
  // back[i·U + u]: the high k bits of the best predecessor of the states whose low bits are u, at step i
  const back = new Uint8Array(n * U);
  const best = new Float64Array(U);
  const shift = L - k;
  for (let i = 1; i < n; i++) {
    best.fill(Infinity);
    const row = i * U;
    for (let j = 0; j < 1 << k; j++) {
      const off = j << shift;
      for (let u = 0; u < U; u++) {
        const c = cost[off | u]!;
        if (c < best[u]!) {
          best[u] = c;
          back[row + u] = j;
        }
      }
    }
    const t = target[i]!;
    for (let s = 0; s < S; s++) {
      const d = t - code[s]!;
      next[s] = best[s >> k]! + d * d;
    }
    [cost, next] = [next, cost];
  }
  let end = 0;
  for (let s = 1; s < S; s++) if (cost[s]! < cost[end]!) end = s;
  const error = cost[end]!;
  states[n - 1] = end;
  for (let i = n - 1; i > 0; i--) {
    const u = states[i]! >> k;
    states[i - 1] = (back[i * U + u]! << shift) | u;
  }
  return { states, error };
}

/** Bits of one stream: L − k head bits, then k a value. */
export function streamBits(count: number, { L, k }: TrellisShape): number {
  return L - k + k * count;
}

/**
 * The stream (MSB-first bytes, two zero bytes of padding so every state's three bytes exist) of a
 * path: the first state's L bits, then the low k bits of each later state.
 */
export function packStates(states: Int32Array, shape: TrellisShape): Uint8Array {
  const { L, k } = shape;
  const bits = streamBits(states.length, shape);
  const out = new Uint8Array(Math.ceil(bits / 8) + 2);
  let pos = 0;
  const put = (value: number, width: number) => {
    for (let b = width - 1; b >= 0; b--, pos++) if ((value >> b) & 1) out[pos >> 3]! |= 0x80 >> (pos & 7);
  };
  if (states.length === 0) return out;
  put(states[0]!, L);
  for (let i = 1; i < states.length; i++) put(states[i]! & ((1 << k) - 1), k);
  return out;
}

/** state_n = the L bits from bit k·n, as trellis-onnx.ts computes it at load. */
export function unpackStates(stream: Uint8Array, count: number, { L, k }: TrellisShape): Int32Array {
  const states = new Int32Array(count);
  for (let n = 0; n < count; n++) {
    const o = k * n;
    const byte = o >> 3;
    const v = (stream[byte]! << 16) | (stream[byte + 1]! << 8) | stream[byte + 2]!;
    states[n] = (v >> (24 - L - (o & 7))) & ((1 << L) - 1);
  }
  return states;
}
