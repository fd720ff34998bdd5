import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { assignShards, parseShard, shardFromEnv } from '../../src/util/shard.js';
import { seededRandom } from '../../src/util/random.js';

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return (e as Error).message;
  }
  throw new Error('expected a UserError');
}

describe('parseShard', () => {
  it('reads i/N, 1-based', () => {
    expect(parseShard('2/3')).toMatchObject({ index: 2, count: 3 });
    expect(parseShard(' 1 / 1 ')).toMatchObject({ index: 1, count: 1 });
  });

  it('4/3, 0/3, 1/0 and garbage are one-line user errors', () => {
    expect(message(() => parseShard('4/3'))).toBe('--shard 4/3: shard index must be 1..3, got 4');
    expect(message(() => parseShard('0/3'))).toBe('--shard 0/3: shard index must be 1..3, got 0');
    expect(message(() => parseShard('1/0'))).toBe('--shard 1/0: the shard count must be a whole number >= 1, got 0');
    expect(message(() => parseShard('two/3'))).toMatch(/^--shard two\/3: expected i\/N/);
    for (const t of ['4/3', 'x']) expect(message(() => parseShard(t)).split('\n')).toHaveLength(1);
  });
});

describe('shardFromEnv', () => {
  it('Kubernetes JOB_COMPLETION_INDEX is 0-based; GitLab CI_NODE_INDEX and PARE_SHARD_INDEX are 1-based', () => {
    expect(shardFromEnv({ JOB_COMPLETION_INDEX: '0', JOB_COMPLETIONS: '3' })).toMatchObject({ index: 1, count: 3 });
    expect(shardFromEnv({ JOB_COMPLETION_INDEX: '2', JOB_COMPLETIONS: '3' })).toMatchObject({ index: 3, count: 3 });
    expect(shardFromEnv({ CI_NODE_INDEX: '2', CI_NODE_TOTAL: '4' })).toMatchObject({ index: 2, count: 4 });
    expect(shardFromEnv({ PARE_SHARD_INDEX: '3', PARE_SHARD_COUNT: '3' })).toMatchObject({ index: 3, count: 3 });
  });

  it('PARE_SHARD_* wins over the engines\' own variables', () => {
    expect(shardFromEnv({ PARE_SHARD_INDEX: '1', PARE_SHARD_COUNT: '2', JOB_COMPLETION_INDEX: '1', JOB_COMPLETIONS: '2' })).toMatchObject({ index: 1, count: 2 });
  });

  it('an index without its count, nothing set, an index past the count: one-line user errors', () => {
    expect(message(() => shardFromEnv({ JOB_COMPLETION_INDEX: '1' }))).toBe(
      '--shard-from-env: JOB_COMPLETION_INDEX is 1 but JOB_COMPLETIONS is not set; set JOB_COMPLETIONS to the number of shards (Kubernetes Indexed Job (set JOB_COMPLETIONS to spec.completions))',
    );
    expect(message(() => shardFromEnv({}))).toMatch(/^--shard-from-env: none of PARE_SHARD_INDEX\/PARE_SHARD_COUNT .*JOB_COMPLETION_INDEX\/JOB_COMPLETIONS .*CI_NODE_INDEX\/CI_NODE_TOTAL .* is set; set one pair, or pass --shard i\/N$/);
    expect(message(() => shardFromEnv({ JOB_COMPLETION_INDEX: '3', JOB_COMPLETIONS: '3' }))).toBe('--shard-from-env JOB_COMPLETION_INDEX=3 JOB_COMPLETIONS=3: shard index must be 1..3, got 4');
    expect(message(() => shardFromEnv({ CI_NODE_INDEX: 'a', CI_NODE_TOTAL: '3' }))).toBe('--shard-from-env CI_NODE_INDEX=a CI_NODE_TOTAL=3: expected whole numbers');
  });
});

describe('assignShards (LPT)', () => {
  const rand = seededRandom(11);
  const items = Array.from({ length: 23 }, (_, i) => ({ id: `p${String(i).padStart(2, '0')}`, cost: 1 + Math.floor(rand() * 9) }));

  it('every item lands in exactly one shard, for every N from 1 to 30', () => {
    for (let n = 1; n <= 30; n++) {
      const shardOf = assignShards(items, n);
      expect([...shardOf.keys()].sort()).toEqual(items.map((i) => i.id).sort());
      for (const s of shardOf.values()) expect(s >= 1 && s <= n).toBe(true);
    }
  });

  it('loads differ by at most the largest cost (the greedy step gives the lightest shard each item)', () => {
    const maxCost = Math.max(...items.map((i) => i.cost));
    for (let n = 1; n <= 8; n++) {
      const shardOf = assignShards(items, n);
      const load = new Array<number>(n).fill(0);
      for (const i of items) load[shardOf.get(i.id)! - 1]! += i.cost;
      expect(Math.max(...load) - Math.min(...load)).toBeLessThanOrEqual(maxCost);
    }
  });

  it('depends only on the items, not on their order', () => {
    const shuffled = [...items].reverse();
    for (const n of [2, 3, 5]) expect([...assignShards(shuffled, n)].sort()).toEqual([...assignShards(items, n)].sort());
  });

  it('equal costs alternate by id: 6 points over 3 shards gives 2 each', () => {
    const six = Array.from({ length: 6 }, (_, i) => ({ id: `p${i}`, cost: 4 }));
    const shardOf = assignShards(six, 3);
    expect(six.map((p) => shardOf.get(p.id))).toEqual([1, 2, 3, 1, 2, 3]);
  });
});
