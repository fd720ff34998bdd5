/**
 * llama2.c's merge loop (run.c `encode`): while some adjacent pair of pieces concatenates to a
 * vocabulary piece scoring above −1e10, merge the pair whose piece scores best, the leftmost pair on
 * ties. run.c rescans every pair after each merge, O(n²) in the text length. Here the pieces form a
 * linked list and the candidate pairs a min-heap keyed by (score rank, position), so a merge costs
 * O(log n): a node keeps the position of its first piece, list order is position order, and the
 * smallest position is the leftmost pair. A merge changes the left node and removes the right one;
 * heap entries naming a node that changed since they were pushed are skipped when popped.
 *
 * `pairId(a, b)` is the piece that a followed by b spells, or −1; `rank[id]` orders pieces by score
 * (0 the best, equal scores equal ranks, −1 for pieces that never merge): see mergeRanks.
 */
export function mergeBestPairs(ids: readonly number[], pairId: (a: number, b: number) => number, rank: Int32Array): number[] {
  const n = ids.length;
  const id = Int32Array.from(ids);
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  // bumped whenever a node's piece changes or the node is merged away
  const version = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  const heap = new PairHeap(n);
  const offer = (left: number, right: number, ordered: boolean) => {
    const merged = pairId(id[left]!, id[right]!);
    if (merged !== -1 && rank[merged]! >= 0) heap.add(rank[merged]! * POSITIONS + left, right, version[left]!, version[right]!, merged, ordered);
  };
  for (let i = 0; i + 1 < n; i++) offer(i, i + 1, false);
  heap.heapify();

  while (heap.size > 0) {
    const e = heap.pop();
    const left = heap.key[e]! % POSITIONS;
    const right = heap.right[e]!;
    if (version[left] !== heap.leftVersion[e] || version[right] !== heap.rightVersion[e] || next[left] !== right) continue;
    id[left] = heap.merged[e]!;
    version[left]!++;
    version[right]!++;
    const after = next[right]!;
    next[left] = after;
    if (after !== -1) prev[after] = left;
    if (prev[left] !== -1) offer(prev[left]!, left, true);
    if (after !== -1) offer(left, after, true);
  }

  const out: number[] = [];
  for (let i = n > 0 ? 0 : -1; i !== -1; i = next[i]!) out.push(id[i]!);
  return out;
}

/** Heap keys are rank · 2³² + position: exact in a float64 for any vocabulary below 2²¹ pieces. */
const POSITIONS = 2 ** 32;

/**
 * Piece ranks for mergeBestPairs: the distinct scores above −1e10 (run.c's starting best, which a
 * merge must beat) sorted best first; a piece's rank is its score's index, −1 when it never merges.
 */
export function mergeRanks(scores: Float32Array): Int32Array {
  const distinct = [...new Set(scores)].filter((s) => s > -1e10).sort((a, b) => b - a);
  if (distinct.length >= 2 ** 21) throw new Error(`mergeRanks: ${distinct.length} distinct scores do not fit the heap key`);
  const index = new Map(distinct.map((s, i) => [s, i]));
  return Int32Array.from(scores, (s) => index.get(s) ?? -1);
}

/**
 * Binary min-heap of candidate pairs by key. Entries live in append-only typed arrays (one slot per
 * add); the heap holds entry indices with their keys beside them, so sifting reads contiguous memory.
 */
class PairHeap {
  key: Float64Array;
  right: Int32Array;
  leftVersion: Uint32Array;
  rightVersion: Uint32Array;
  merged: Int32Array;
  private heapKey: Float64Array;
  private heapEntry: Int32Array;
  private added = 0;
  size = 0;

  constructor(capacity: number) {
    const n = Math.max(capacity, 16);
    this.key = new Float64Array(n);
    this.right = new Int32Array(n);
    this.leftVersion = new Uint32Array(n);
    this.rightVersion = new Uint32Array(n);
    this.merged = new Int32Array(n);
    this.heapKey = new Float64Array(n);
    this.heapEntry = new Int32Array(n);
  }

  /** Stores an entry; `ordered` sifts it into place, otherwise heapify() must run before the next pop. */
  add(key: number, right: number, leftVersion: number, rightVersion: number, merged: number, ordered: boolean): void {
    if (this.added === this.key.length) this.grow();
    const e = this.added++;
    this.key[e] = key;
    this.right[e] = right;
    this.leftVersion[e] = leftVersion;
    this.rightVersion[e] = rightVersion;
    this.merged[e] = merged;
    if (this.size === this.heapKey.length) this.growHeap();
    if (ordered) this.siftUp(this.size++, key, e);
    else {
      this.heapKey[this.size] = key;
      this.heapEntry[this.size++] = e;
    }
  }

  /** Orders entries added unordered, in O(n). */
  heapify(): void {
    for (let i = (this.size >> 1) - 1; i >= 0; i--) this.siftDown(i, this.heapKey[i]!, this.heapEntry[i]!);
  }

  /** Removes the entry with the smallest key and returns its index into the entry arrays. */
  pop(): number {
    const top = this.heapEntry[0]!;
    const last = --this.size;
    if (last > 0) this.siftDown(0, this.heapKey[last]!, this.heapEntry[last]!);
    return top;
  }

  private siftUp(i: number, key: number, e: number): void {
    const hk = this.heapKey;
    const he = this.heapEntry;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (hk[parent]! <= key) break;
      hk[i] = hk[parent]!;
      he[i] = he[parent]!;
      i = parent;
    }
    hk[i] = key;
    he[i] = e;
  }

  private siftDown(i: number, key: number, e: number): void {
    const hk = this.heapKey;
    const he = this.heapEntry;
    const n = this.size;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && hk[child + 1]! < hk[child]!) child++;
      if (hk[child]! >= key) break;
      hk[i] = hk[child]!;
      he[i] = he[child]!;
      i = child;
    }
    hk[i] = key;
    he[i] = e;
  }

  private grow(): void {
    const n = this.key.length * 2;
    this.key = widen(this.key, n);
    this.right = widen(this.right, n);
    this.leftVersion = widen(this.leftVersion, n);
    this.rightVersion = widen(this.rightVersion, n);
    this.merged = widen(this.merged, n);
  }

  private growHeap(): void {
    this.heapKey = widen(this.heapKey, this.heapKey.length * 2);
    this.heapEntry = widen(this.heapEntry, this.heapEntry.length * 2);
  }
}

function widen<T extends Float64Array | Int32Array | Uint32Array>(a: T, n: number): T {
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a);
  return b;
}
