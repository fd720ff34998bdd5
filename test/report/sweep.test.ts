import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import { UserError } from '../../src/errors.js';
import { writeJsonDocument, writeReport } from '../../src/report/io.js';
import type { Report } from '../../src/report/schema.js';
import { diffSweeps } from '../../src/report/sweep-diff.js';
import { mergeSweep } from '../../src/report/sweep.js';
import { tempDir } from '../helpers.js';
import { captureIo, compressReport, lmMeasure, STORIES_DATA } from './reports.js';

const tmp = tempDir('pare-sweep-report-');
afterAll(() => tmp.cleanup());

/** A sweep point's report: sparsity s, the compressed model at `nll` and `fileBytes`. */
function point(index: number, sparsity: number, nll: number, fileBytes: number, o: { count?: number; model?: string; cache?: [number, number] } = {}): Report {
  const r = compressReport(nll);
  const id = `sparsity=${sparsity}-${(index + 10).toString(16).padStart(8, '0')}`;
  return {
    ...r,
    input: o.model ? { ...r.input, sha256: o.model } : r.input,
    output: { ...r.output!, path: `sweep/${id}/model.onnx`, sha256: `${index}`.repeat(64).slice(0, 64) },
    measurements: { ...r.measurements, model: lmMeasure(`sweep/${id}/model.onnx`, nll, { fileBytes }) },
    ...(o.cache ? { calibration_cache: { dir: 'sweep/.stats-cache', hits: o.cache[0], misses: o.cache[1], unreadable: 0 } } : {}),
    sweep: { id, index, count: o.count ?? 4, settings: [['passes[0].params.sparsity', sparsity]], base: { path: 'base.yaml', sha256: 'ee'.repeat(32) } },
  };
}

const FOUR = [point(0, 0.3, 1.25, 1000, { cache: [0, 20] }), point(1, 0.4, 1.3, 900, { cache: [20, 0] }), point(2, 0.5, 1.4, 950, { cache: [20, 0] }), point(3, 0.6, 1.6, 800, { cache: [20, 0] })];
const entries = (reports: Report[]) => reports.map((report, i) => ({ path: `dir/${i}/report.json`, report }));

describe('mergeSweep', () => {
  it('one row per point in sweep order, the front marked, cache counts summed', () => {
    const s = mergeSweep(entries([FOUR[2]!, FOUR[0]!, FOUR[3]!, FOUR[1]!]));
    expect(s.points.map((p) => p.index)).toEqual([0, 1, 2, 3]);
    // 0.5 (950 bytes, ppl e^1.4) is beaten by 0.4 (900 bytes, ppl e^1.3)
    expect(s.points.map((p) => p.pareto)).toEqual([true, true, false, true]);
    expect(s.front).toEqual({ size: 'file_bytes', quality: 'perplexity', ids: [FOUR[0]!.sweep!.id, FOUR[1]!.sweep!.id, FOUR[3]!.sweep!.id] });
    expect(s.calibration_cache).toEqual({ hits: 60, misses: 20, unreadable: 0 });
    expect(s.axes).toEqual(['passes[0].params.sparsity']);
    expect(s.reference!.quality).toMatchObject({ perplexity: Math.exp(1.2229) });
    expect(s.warnings).toEqual([]);
  });

  it('a point in two folders counts once; missing points are a warning', () => {
    const s = mergeSweep(entries([FOUR[0]!, FOUR[0]!, FOUR[1]!]));
    expect(s.points).toHaveLength(2);
    expect(s.warnings).toEqual(["merged 2 of the sweep's 4 points; the others were not run yet or their folders were not given"]);
  });

  it('points of different models or data are refused in one line, unless allowMixed', () => {
    const other = point(1, 0.4, 1.3, 900, { model: 'ff'.repeat(32) });
    expect(() => mergeSweep(entries([FOUR[0]!, other]))).toThrow(UserError);
    expect(() => mergeSweep(entries([FOUR[0]!, other]))).toThrow(/^dir\/0\/report\.json and dir\/1\/report\.json are sweeps of different models .*; merge one model's points, or pass --allow-mixed$/);
    const otherData = { ...FOUR[1]!, data: { ...STORIES_DATA, description: 'text other.txt' } };
    expect(() => mergeSweep(entries([FOUR[0]!, otherData]))).toThrow(/measured different data .*or pass --allow-mixed$/);
    const mixed = mergeSweep(entries([FOUR[0]!, other]), { allowMixed: true });
    expect(mixed.mixed!.models).toHaveLength(2);
  });

  it('a report that is not a sweep point is refused', () => {
    expect(() => mergeSweep([{ path: 'r.json', report: compressReport(1.3) }])).toThrow(/^r\.json: not a sweep point's report/);
  });

  it('the front on sparse size when asked', () => {
    const s = mergeSweep(entries(FOUR), { size: 'sparse_bytes' });
    // lmMeasure gives every point the same sparse size: the best perplexity alone is on the front
    expect(s.front.ids).toEqual([FOUR[0]!.sweep!.id]);
  });
});

describe('diffSweeps', () => {
  const base = mergeSweep(entries(FOUR));
  it('pairs points by settings and checks every budget on each pair', () => {
    const worse = mergeSweep(entries([point(0, 0.3, 1.25, 1000), point(1, 0.4, 1.35, 900), point(2, 0.5, 1.4, 950), point(4, 0.7, 2, 700, { count: 5 })]));
    const d = diffSweeps(base, worse, { max_ppl_increase: { kind: 'relative', fraction: 0.02 } });
    expect(d.points.map((p) => [p.settings[0]![1], p.ok])).toEqual([[0.3, true], [0.4, false], [0.5, true], [0.6, undefined], [0.7, undefined]]);
    expect(d.failed).toBe(true);
    expect(d.points[1]!.checks[0]).toMatchObject({ name: 'max_ppl_increase', base: Math.exp(1.3), candidate: Math.exp(1.35), ok: false });
  });

  it('pare report diff on two merged sweeps prints a row per point and exits 3 when a point fails its budget', async () => {
    const a = join(tmp.dir, 'a.json');
    const b = join(tmp.dir, 'b.json');
    writeJsonDocument(a, base);
    writeJsonDocument(b, mergeSweep(entries([point(0, 0.3, 1.25, 1000), point(1, 0.4, 1.35, 900)])));
    const c = captureIo();
    expect(await run(['report', 'diff', a, b, '--max-ppl-increase', '2%'], c.io)).toBe(3);
    expect(c.out()).toContain('## pare sweep diff');
    expect(c.out()).toContain('| ✅ | passes[0].params.sparsity=0.3 |');
    expect(c.out()).toContain('| ❌ | passes[0].params.sparsity=0.4 |');
    expect(c.out()).toContain('| removed | passes[0].params.sparsity=0.5 |');
    expect(c.err().trim().split('\n')).toEqual([`budget failed: point passes[0].params.sparsity=0.4: max_ppl_increase 2%: perplexity ${+Math.exp(1.3).toPrecision(6)} -> ${+Math.exp(1.35).toPrecision(6)} (increase +5.13%)`]);
    const same = captureIo();
    expect(await run(['report', 'diff', a, a, '--max-ppl-increase', '0%'], same.io)).toBe(0);
    expect(same.out()).toContain('every budget holds on all 4 points');
    // the diff as JSON reads back into pare report html
    const json = captureIo();
    expect(await run(['report', 'diff', a, b, '--max-ppl-increase', '2%', '--format', 'json'], json.io)).toBe(3);
    writeFileSync(join(tmp.dir, 'diff.json'), json.out());
    expect(await run(['report', 'html', join(tmp.dir, 'diff.json'), '-o', join(tmp.dir, 'diff.html')], captureIo().io)).toBe(0);
    expect(readFileSync(join(tmp.dir, 'diff.html'), 'utf8')).toContain('budgets fail on 1 of 2 points');
    const r = join(tmp.dir, 'r.json');
    writeReport(r, compressReport(1.3));
    const rd = captureIo();
    expect(await run(['report', 'diff', r, r, '--max-ppl-increase', '0%', '--format', 'json'], rd.io)).toBe(0);
    writeFileSync(join(tmp.dir, 'rdiff.json'), rd.out());
    expect(await run(['report', 'html', join(tmp.dir, 'rdiff.json'), '-o', join(tmp.dir, 'rdiff.html')], captureIo().io)).toBe(0);
    expect(readFileSync(join(tmp.dir, 'rdiff.html'), 'utf8')).toContain('Verdict: <span class="ok">every budget holds</span>');
    const mixed = captureIo();
    expect(await run(['report', 'diff', r, a], mixed.io)).toBe(2);
    expect(mixed.err().trim()).toBe(`pare: ${r} is a report and ${a} a sweep; diff two reports, or two sweeps merged by pare report merge`);
  });
});

describe('pare report merge', () => {
  it('reads each sweep folder\'s point folders, writes sweep.json and prints the table; unfinished points are a warning', async () => {
    const dir = join(tmp.dir, 'sweep');
    for (const r of FOUR.slice(0, 3)) writeReport(join(dir, r.sweep!.id, 'report.json'), r);
    writeReport(join(tmp.dir, 'other', FOUR[3]!.sweep!.id, 'report.json'), FOUR[3]!);
    writeJsonDocument(join(dir, 'unfinished', 'not-a-report.json'), {});
    const c = captureIo();
    const out = join(tmp.dir, 'sweep.json');
    expect(await run(['report', 'merge', dir, join(tmp.dir, 'other'), '-o', out], c.io)).toBe(0);
    expect(c.err()).toBe(`warning: ${join(dir, 'unfinished')}: no report.json (an unfinished point); left out\n`);
    expect(c.out()).toContain('| ★ | `sparsity=0.3-0000000a` |');
    expect(c.out()).toContain('calibration cache:** 60 hits, 20 misses');
    const show = captureIo();
    expect(await run(['report', 'show', out], show.io)).toBe(0);
    expect(show.out()).toBe(c.out());
  });

  it('merging sweeps of different models exits 2 with one line', async () => {
    const a = join(tmp.dir, 'm1', 'p0', 'report.json');
    const b = join(tmp.dir, 'm2', 'p1', 'report.json');
    writeReport(a, FOUR[0]!);
    writeReport(b, point(1, 0.4, 1.3, 900, { model: 'ff'.repeat(32) }));
    const c = captureIo();
    expect(await run(['report', 'merge', join(tmp.dir, 'm1'), join(tmp.dir, 'm2'), '-o', join(tmp.dir, 'mixed.json')], c.io)).toBe(2);
    expect(c.err().trim().split('\n')).toHaveLength(1);
    expect(c.err()).toMatch(/are sweeps of different models/);
    expect(await run(['report', 'merge', join(tmp.dir, 'm1'), join(tmp.dir, 'm2'), '-o', join(tmp.dir, 'mixed.json'), '--allow-mixed'], captureIo().io)).toBe(0);
  });
});
