/**
 * llama2.c's merge loop (run.c `encode`): while some adjacent pair of pieces concatenates to a
 * vocabulary piece scoring above −1e10, merge the pair whose piece scores best, the leftmost pair on
 * ties. run.c rescans every pair after each merge, O(n²) in the text length. Here the pieces form a
 * linked list and the candidate pairs a max-heap ordered by (score, position), so a merge costs
 * O(log n): a node keeps the position of its first piece, list order is position order, and the
 * smallest position is the leftmost pair. A merge changes the left node and removes the right one;
 * heap entries naming a node that changed since they were pushed are skipped when popped.
 *
 * `pairId(a, b)` is the piece that a followed by b spells, or −1.
 */
export function mergeBestPairs(ids: readonly number[], pairId: (a: number, b: number) => number, scores: Float32Array): number[] {
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
  const heap = new PairHeap();
  const offer = (left: number, right: number) => {
    const merged = pairId(id[left]!, id[right]!);
    // run.c starts its search at best_score = −1e10 and takes only strictly better scores
    if (merged !== -1 && scores[merged]! > -1e10) heap.push(scores[merged]!, left, right, version[left]!, version[right]!, merged);
  };
  for (let i = 0; i + 1 < n; i++) offer(i, i + 1);

  while (heap.size > 0) {
    const e = heap.pop();
    const left = heap.left[e]!;
    const right = heap.right[e]!;
    if (version[left] !== heap.leftVersion[e] || version[right] !== heap.rightVersion[e] || next[left] !== right) continue;
    id[left] = heap.merged[e]!;
    version[left]!++;
    version[right]!++;
    const after = next[right]!;
    next[left] = after;
    if (after !== -1) prev[after] = left;
    if (prev[left] !== -1) offer(prev[left]!, left);
    if (after !== -1) offer(left, after);
  }

  const out: number[] = [];
  for (let i = n > 0 ? 0 : -1; i !== -1; i = next[i]!) out.push(id[i]!);
  return out;
}

/**
 * Binary max-heap of candidate pairs: higher score first, then the smaller left position. Entries
 * live in append-only typed arrays (one slot per push); the heap orders their indices.
 */
class PairHeap {
  score = new Float64Array(1024);
  left = new Int32Array(1024);
  right = new Int32Array(1024);
  leftVersion = new Uint32Array(1024);
  rightVersion = new Uint32Array(1024);
  merged = new Int32Array(1024);
  private pushed = 0;
  private order = new Int32Array(1024);
  size = 0;

  push(score: number, left: number, right: number, leftVersion: number, rightVersion: number, merged: number): void {
    if (this.pushed === this.score.length) this.grow();
    const e = this.pushed++;
    this.score[e] = score;
    this.left[e] = left;
    this.right[e] = right;
    this.leftVersion[e] = leftVersion;
    this.rightVersion[e] = rightVersion;
    this.merged[e] = merged;
    const order = this.order;
    let i = this.size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(e, order[parent]!)) break;
      order[i] = order[parent]!;
      i = parent;
    }
    order[i] = e;
  }

  /** Removes the best entry and returns its index into the entry arrays. */
  pop(): number {
    const order = this.order;
    const top = order[0]!;
    const last = order[--this.size]!;
    const n = this.size;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const child = l + 1 < n && this.before(order[l + 1]!, order[l]!) ? l + 1 : l;
      if (!this.before(order[child]!, last)) break;
      order[i] = order[child]!;
      i = child;
    }
    order[i] = last;
    return top;
  }

  private before(a: number, b: number): boolean {
    const sa = this.score[a]!;
    const sb = this.score[b]!;
    return sa > sb || (sa === sb && this.left[a]! < this.left[b]!);
  }

  private grow(): void {
    const widen = <T extends Float64Array | Int32Array | Uint32Array>(a: T): T => {
      const b = new (a.constructor as new (n: number) => T)(a.length * 2);
      b.set(a);
      return b;
    };
    this.score = widen(this.score);
    this.left = widen(this.left);
    this.right = widen(this.right);
    this.leftVersion = widen(this.leftVersion);
    this.rightVersion = widen(this.rightVersion);
    this.merged = widen(this.merged);
    this.order = widen(this.order);
  }
}
