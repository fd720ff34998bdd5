import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Calibrator } from '../../src/calibrate/calibrator.js';
import type { Feeds } from '../../src/calibrate/feeds.js';
import { StatsCache } from '../../src/calibrate/stats-cache.js';
import type { InputStats, StatsNeeds } from '../../src/calibrate/stats.js';
import { readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import { loadModel } from '../../src/model/load.js';
import type { Model } from '../../src/model/model.js';
import { ort } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { FIXTURES, tempDir } from '../helpers.js';

const ROOT = resolve(__dirname, '../..');
const tmp = tempDir('pare-stats-cache-');
afterAll(() => tmp.cleanup());
let dirs = 0;
const freshDir = () => join(tmp.dir, `cache-${dirs++}`);

function sampleStats(tensor: string, dim: number, seed: number): InputStats {
  const rand = seededRandom(seed);
  return {
    tensor,
    dim,
    rows: 1234,
    xtx: Float64Array.from({ length: dim * dim }, () => rand() * 1e3 - 500),
    absmax: Float32Array.from({ length: dim }, () => rand() * 7),
    sqnorm: Float64Array.from({ length: dim }, () => rand() * 1e5),
    sum: Float64Array.from({ length: dim }, () => rand() * 1e3 - 500),
  };
}

const ALL: StatsNeeds = { hessian: true, absmax: true, sqnorm: true, sum: true };

describe('StatsCache entries', () => {
  it('a statistic put is read back bit for bit, counted as a hit; an absent one is a miss without a warning', () => {
    const warnings: string[] = [];
    const cache = new StatsCache(freshDir(), (w) => warnings.push(w));
    const s = sampleStats('t0', 9, 1);
    expect(cache.get('scope', 't0', ALL)).toBeUndefined();
    expect(cache.counts).toEqual({ hits: 0, misses: 4, unreadable: 0 });
    cache.put('scope', s);
    const back = cache.get('scope', 't0', ALL)!;
    expect(back).toEqual(s);
    expect(back.xtx).toBeInstanceOf(Float64Array);
    expect(back.absmax).toBeInstanceOf(Float32Array);
    expect(cache.counts).toEqual({ hits: 4, misses: 4, unreadable: 0 });
    // another scope, another tensor, or a statistic not stored: misses
    expect(cache.get('other scope', 't0', ALL)).toBeUndefined();
    expect(cache.get('scope', 't1', { hessian: true })).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  it('an entry whose bytes were changed, cut short, or that holds another key is recomputed with a warning, never used', () => {
    for (const damage of ['flip', 'truncate', 'header', 'key'] as const) {
      const warnings: string[] = [];
      const dir = freshDir();
      const cache = new StatsCache(dir, (w) => warnings.push(w));
      cache.put('scope', { tensor: 't', dim: 4, rows: 10, xtx: Float64Array.from({ length: 16 }, (_, i) => i) });
      const [name] = readdirSync(dir);
      const path = join(dir, name!);
      const bytes = readFileSync(path);
      const newline = bytes.indexOf(0x0a);
      if (damage === 'flip') bytes[newline + 9]! ^= 0x40;
      if (damage === 'header') bytes[3] = 0x7b;
      if (damage === 'key') {
        const header = JSON.parse(bytes.subarray(0, newline).toString()) as { key: string };
        header.key = header.key.replace('"t"', '"u"');
        writeFileSync(path, Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), bytes.subarray(newline + 1)]));
      } else writeFileSync(path, damage === 'truncate' ? bytes.subarray(0, bytes.length - 8) : bytes);
      expect(cache.get('scope', 't', { hessian: true }), damage).toBeUndefined();
      expect(cache.counts, damage).toEqual({ hits: 0, misses: 1, unreadable: 1 });
      expect(warnings, damage).toHaveLength(1);
      expect(warnings[0], damage).toMatch(new RegExp(`^calibration cache: entry ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is unreadable \\(.+\\); recomputing it$`));
    }
  });

  it('processes writing the same entries at once never let a reader see a partial one', async () => {
    const dir = freshDir();
    const script = `
      import { StatsCache } from ${JSON.stringify(join(ROOT, 'dist/src/calibrate/stats-cache.js'))};
      const dim = 64;
      const cache = new StatsCache(${JSON.stringify(dir)}, (w) => { console.error(w); process.exit(3); });
      for (let k = 0; k < 60; k++) cache.put('scope', { tensor: 't' + (k % 3), dim, rows: 7, xtx: Float64Array.from({ length: dim * dim }, (_, i) => i + k % 3) });
    `;
    const writers = [0, 1, 2].map(
      () =>
        new Promise<number>((done) => {
          const p = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 60_000, killSignal: 'SIGKILL' });
          p.on('exit', (code) => done(code ?? -1));
        }),
    );
    const warnings: string[] = [];
    const reader = new StatsCache(dir, (w) => warnings.push(w));
    let seen = 0;
    let finished = false;
    const all = Promise.all(writers).then((codes) => {
      finished = true;
      return codes;
    });
    while (!finished) {
      for (let t = 0; t < 3; t++) {
        const s = reader.get('scope', `t${t}`, { hessian: true });
        if (!s) continue;
        seen++;
        expect(s.xtx!.every((v, i) => v === i + t)).toBe(true);
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(await all).toEqual([0, 0, 0]);
    expect(warnings).toEqual([]);
    expect(reader.counts.unreadable).toBe(0);
    expect(seen).toBeGreaterThan(0);
  });
});

function tokenFeeds(model: Model, samples: number, length: number): Feeds[] {
  const rand = seededRandom(5);
  const name = model.graph.input![0]!.name!;
  return Array.from({ length: samples }, () => {
    const ids = BigInt64Array.from({ length }, (_, i) => BigInt(i === 0 ? 1 : Math.floor(rand() * 512)));
    return { [name]: new ort.Tensor('int64', ids, [1, length]) };
  });
}

/** Every block's statistics of one calibrated pass over stories260K's block layers, each block scaled after its statistics are taken. */
async function passStats(mode: 'oneshot' | 'sequential', cache: StatsCache | undefined): Promise<Map<string, InputStats>[]> {
  const model = loadModel(FIXTURES.stories);
  try {
    const layers = linears(model).filter((l) => l.name.startsWith('layers.'));
    const cal = new Calibrator(tokenFeeds(model, 3, 40), mode, 1, { cache });
    cal.beginPass('the model as the pass finds it');
    const out: Map<string, InputStats>[] = [];
    for await (const { group, stats } of cal.blocks(model, layers, { hessian: true, sqnorm: true })) {
      out.push(new Map(group.layers.map((l) => [l.input, stats.get(l.input)!])));
      for (const l of group.layers) writeWeight(model, l, readWeight(model, l).map((w) => w * 0.9));
    }
    return out;
  } finally {
    model.close();
  }
}

describe('Calibrator with a cache', () => {
  it('oneshot: a second run finds all 20 input tensors × 2 statistics and gets the same bits', async () => {
    const reference = await passStats('oneshot', undefined);
    const cache = new StatsCache(freshDir(), () => {});
    const first = await passStats('oneshot', cache);
    expect(cache.counts).toEqual({ hits: 0, misses: 40, unreadable: 0 });
    const second = await passStats('oneshot', cache);
    expect(cache.counts).toEqual({ hits: 40, misses: 40, unreadable: 0 });
    expect(first).toEqual(reference);
    expect(second).toEqual(reference);
  });

  it('sequential: only block 0 is shared (4 tensors × 2); every block\'s statistics equal the uncached run\'s', async () => {
    const reference = await passStats('sequential', undefined);
    const cache = new StatsCache(freshDir(), () => {});
    await passStats('sequential', cache);
    expect(cache.counts).toEqual({ hits: 0, misses: 8, unreadable: 0 });
    const second = await passStats('sequential', cache);
    expect(cache.counts).toEqual({ hits: 8, misses: 8, unreadable: 0 });
    expect(second).toEqual(reference);
  });

  it('only the first request of a pass uses the cache: a later collect sees the changed model', async () => {
    const model = loadModel(FIXTURES.stories);
    try {
      const layers = linears(model).filter((l) => l.name.startsWith('layers.0.'));
      const cache = new StatsCache(freshDir(), () => {});
      const cal = new Calibrator(tokenFeeds(model, 2, 24), 'oneshot', 1, { cache });
      cal.beginPass('scope');
      await cal.collect(model, layers, { absmax: true });
      expect(cache.counts).toEqual({ hits: 0, misses: 4, unreadable: 0 });
      await cal.collect(model, layers, { absmax: true });
      expect(cache.counts).toEqual({ hits: 0, misses: 4, unreadable: 0 });
      cal.beginPass('scope');
      await cal.collect(model, layers, { absmax: true });
      expect(cache.counts).toEqual({ hits: 4, misses: 4, unreadable: 0 });
    } finally {
      model.close();
    }
  });
});
