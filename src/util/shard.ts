import { UserError } from '../errors.js';

/**
 * Shards of a list of work items: `--shard i/N` (1-based), or the index and count a CI matrix or a
 * Kubernetes Indexed Job hands each of its workers. Items are split by expected cost, longest
 * first (LPT), so every item lands in exactly one shard for any N and the shards finish at about
 * the same time.
 */
export interface Shard {
  /** 1-based */
  index: number;
  count: number;
  /** where it came from, for messages: `--shard 2/3`, `JOB_COMPLETION_INDEX=1 JOB_COMPLETIONS=3` */
  source: string;
}

function checked(index: number, count: number, source: string): Shard {
  if (!Number.isSafeInteger(count) || count < 1) throw new UserError(`${source}: the shard count must be a whole number >= 1, got ${count}`);
  if (!Number.isSafeInteger(index) || index < 1 || index > count) throw new UserError(`${source}: shard index must be 1..${count}, got ${index}`);
  return { index, count, source };
}

/** `2/3` -> shard 2 of 3. */
export function parseShard(text: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const source = `--shard ${text}`;
  if (!m) throw new UserError(`${source}: expected i/N with 1 <= i <= N, e.g. --shard 2/3`);
  return checked(Number(m[1]), Number(m[2]), source);
}

/** The index and count variables each engine sets, first match wins; `base` is what the engine's first index is. */
export const SHARD_ENV: readonly { index: string; count: string; base: 0 | 1; engine: string }[] = [
  { index: 'PARE_SHARD_INDEX', count: 'PARE_SHARD_COUNT', base: 1, engine: 'any (GitHub Actions: from matrix.shard and strategy.job-total)' },
  { index: 'JOB_COMPLETION_INDEX', count: 'JOB_COMPLETIONS', base: 0, engine: 'Kubernetes Indexed Job (set JOB_COMPLETIONS to spec.completions)' },
  { index: 'CI_NODE_INDEX', count: 'CI_NODE_TOTAL', base: 1, engine: 'GitLab parallel' },
];

/** The shard the environment names (see SHARD_ENV). */
export function shardFromEnv(env: Record<string, string | undefined>): Shard {
  for (const v of SHARD_ENV) {
    const index = env[v.index];
    if (index === undefined || index === '') continue;
    const count = env[v.count];
    if (count === undefined || count === '') {
      throw new UserError(`--shard-from-env: ${v.index} is ${index} but ${v.count} is not set; set ${v.count} to the number of shards (${v.engine})`);
    }
    const source = `--shard-from-env ${v.index}=${index} ${v.count}=${count}`;
    if (!/^\d+$/.test(index.trim()) || !/^\d+$/.test(count.trim())) throw new UserError(`${source}: expected whole numbers`);
    return checked(Number(index) + (1 - v.base), Number(count), source);
  }
  const pairs = SHARD_ENV.map((v) => `${v.index}/${v.count} (${v.engine})`).join(', ');
  throw new UserError(`--shard-from-env: none of ${pairs} is set; set one pair, or pass --shard i/N`);
}

/**
 * Longest processing time first: items by cost, highest first (ties by id), each to the shard with
 * the least cost so far (ties to the lowest shard). Returns each item's 1-based shard. The result
 * depends only on the items' ids and costs, so every worker computes the same assignment.
 */
export function assignShards(items: readonly { id: string; cost: number }[], count: number): Map<string, number> {
  const load = new Array<number>(count).fill(0);
  const order = [...items].sort((a, b) => b.cost - a.cost || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const shardOf = new Map<string, number>();
  for (const item of order) {
    let best = 0;
    for (let s = 1; s < count; s++) if (load[s]! < load[best]!) best = s;
    load[best]! += item.cost;
    shardOf.set(item.id, best + 1);
  }
  return shardOf;
}
