/**
 * Multiple-choice knapsack: one option per layer, minimising the summed cost (predicted loss) with
 * the summed bytes within a budget. Exact: a dynamic program over the Pareto frontier of (bytes,
 * cost) pairs, layer by layer, dropping every partial allocation that another one beats on both
 * (no more bytes, no more cost), so no budget discretisation is needed.
 */

export interface Option {
  bytes: number;
  cost: number;
}

export interface Allocation {
  /** the option index chosen for each layer */
  picks: number[];
  bytes: number;
  cost: number;
}

interface State {
  bytes: number;
  cost: number;
  pick: number;
  prev: State | undefined;
}

/** The cheapest allocation within `budget` bytes, or undefined when even the smallest options exceed it. */
export function allocate(options: readonly (readonly Option[])[], budget: number): Allocation | undefined {
  // the smallest bytes the layers still to come need, so a partial allocation that cannot finish is dropped early
  const minRest = new Array<number>(options.length + 1).fill(0);
  for (let l = options.length - 1; l >= 0; l--) minRest[l] = minRest[l + 1]! + Math.min(...options[l]!.map((o) => o.bytes));
  let frontier: State[] = [{ bytes: 0, cost: 0, pick: -1, prev: undefined }];
  for (let l = 0; l < options.length; l++) {
    const next: State[] = [];
    for (const s of frontier) {
      options[l]!.forEach((o, i) => {
        const bytes = s.bytes + o.bytes;
        if (bytes + minRest[l + 1]! <= budget) next.push({ bytes, cost: s.cost + o.cost, pick: i, prev: s });
      });
    }
    next.sort((a, b) => a.bytes - b.bytes || a.cost - b.cost);
    frontier = [];
    for (const s of next) if (frontier.length === 0 || s.cost < frontier.at(-1)!.cost) frontier.push(s);
    if (frontier.length === 0) return undefined;
  }
  // the frontier's costs fall as bytes rise: its last state is the cheapest within the budget
  const best = frontier.at(-1)!;
  const picks: number[] = [];
  for (let s: State | undefined = best; s && s.pick >= 0; s = s.prev) picks.unshift(s.pick);
  return { picks, bytes: best.bytes, cost: best.cost };
}
