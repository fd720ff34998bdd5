import { cpSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readDocument, readReport } from '../../src/report/io.js';
import type { Report } from '../../src/report/schema.js';
import type { SweepReport } from '../../src/report/sweep.js';
import { HOLD_ENTRY, runPare } from '../cli/pare-process.js';
import { runCli } from '../cli/run-cli.js';
import { tempDir } from '../helpers.js';
import { CHROMIUM, NO_CHROMIUM, pngSize, probePage, runChromium } from '../report/chromium.js';

/**
 * pare sweep end to end on stories260K: examples/sweep-recipe.yaml (oneshot SparseGPT at three
 * sparsities, then 8- or 4-bit RTN; 8 calibration segments, 6 stories scored), 6 points.
 */
const ROOT = resolve(__dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');
const RECIPE = join(ROOT, 'examples/sweep-recipe.yaml');
const AXES = ['--set', 'passes[0].params.sparsity=0.2,0.35,0.5', '--set', 'passes[1].params.bits=8,4'];
/** stories260K's block linears read 4 input tensors per block (q/k/v share one, gate/up one), 5 blocks */
const HESSIANS = 20;

const tmp = tempDir('pare-sweep-');
afterAll(() => tmp.cleanup());
const A = join(tmp.dir, 'unsharded');
const B = join(tmp.dir, 'sharded');

function pointReports(dir: string): Report[] {
  return readdirSync(dir)
    .filter((f) => !f.startsWith('.'))
    .map((f) => readReport(join(dir, f, 'report.json')))
    .sort((a, b) => a.sweep!.index - b.sweep!.index);
}

async function merged(dir: string, out: string): Promise<SweepReport> {
  const r = await runCli(['report', 'merge', dir, '-o', out]);
  expect(r.code, r.err).toBe(0);
  const doc = readDocument(out);
  if (doc.kind !== 'sweep') throw new Error('expected a sweep');
  return doc.sweep;
}

/** What must agree between two runs of one point: everything but timings, latency and paths. */
function numbers(s: SweepReport) {
  return s.points.map((p) => ({ id: p.id, index: p.index, settings: p.settings, output: p.output!.sha256, size: p.model.size, quality: p.model.quality, fidelity: p.fidelity, pareto: p.pareto, budgets: p.budgets }));
}

describe('pare sweep on stories260K', () => {
  it('runs the 6 points of the --set product into one folder each; the first computes the Hessians, the other 5 find them in the cache', async () => {
    const r = await runCli(['sweep', MODEL, '-r', RECIPE, ...AXES, '-o', A, '--threads', '1']);
    expect(r.code, r.err).toBe(0);
    const reports = pointReports(A);
    expect(reports.map((p) => p.sweep!.id.replace(/-[0-9a-f]{8}$/, ''))).toEqual(['sparsity=0.2,bits=8', 'sparsity=0.2,bits=4', 'sparsity=0.35,bits=8', 'sparsity=0.35,bits=4', 'sparsity=0.5,bits=8', 'sparsity=0.5,bits=4']);
    for (const p of reports) {
      expect(existsSync(join(A, p.sweep!.id, 'model.onnx'))).toBe(true);
      expect(p.passes[0]!.params.sparsity).toBe(p.sweep!.settings[0]![1]);
      expect(p.passes[1]!.params.bits).toBe(p.sweep!.settings[1]![1]);
    }
    expect(reports.map((p) => [p.calibration_cache!.hits, p.calibration_cache!.misses, p.calibration_cache!.unreadable])).toEqual([[0, HESSIANS, 0], ...Array(5).fill([HESSIANS, 0, 0])]);
    // progress: point i/N, with an ETA once a point has finished
    for (let i = 1; i <= 6; i++) expect(r.err).toContain(`point ${i}/6 `);
    expect(r.err).toMatch(/point 2\/6 \S+ · ETA \d+\.\ds/);
    // the recipe's own sweep: section names the same 6 points
    const dry = await runCli(['sweep', MODEL, '-r', RECIPE, '-o', A, '--dry-run', '--json']);
    expect((JSON.parse(dry.out) as { points: { id: string }[] }).points.map((p) => p.id)).toEqual(reports.map((p) => p.sweep!.id));
  });

  it('calibration.hessian_precision is part of the statistics cache scope: float64 points do not reuse float32 Hessians', async () => {
    const dir = join(tmp.dir, 'precision');
    const r = await runCli(['sweep', MODEL, '-r', RECIPE, '--set', 'calibration.hessian_precision=float32,float64', '--set', 'passes[0].params.sparsity=0.2,0.5', '--set', 'passes[1].params.bits=8', '-o', dir, '--threads', '1']);
    expect(r.code, r.err).toBe(0);
    const reports = pointReports(dir);
    // points in order: (0.2, float32), (0.2, float64), (0.5, float32), (0.5, float64); each precision computes its own Hessians once
    expect(reports.map((p) => p.sweep!.id.replace(/-[0-9a-f]{8}$/, ''))).toEqual(['sparsity=0.2,bits=8,hessian_precision=float32', 'sparsity=0.2,bits=8,hessian_precision=float64', 'sparsity=0.5,bits=8,hessian_precision=float32', 'sparsity=0.5,bits=8,hessian_precision=float64']);
    expect(reports.map((p) => [p.calibration_cache!.hits, p.calibration_cache!.misses])).toEqual([
      [0, HESSIANS],
      [0, HESSIANS],
      [HESSIANS, 0],
      [HESSIANS, 0],
    ]);
  });

  it('as 3 shards in 3 processes into one folder: 2 points each, and merging gives the same points with the same bytes and numbers', async () => {
    const shards = await Promise.all([1, 2, 3].map((i) => runPare(['sweep', MODEL, '-r', RECIPE, ...AXES, '-o', B, '--shard', `${i}/3`, '--threads', '1'], { timeoutMs: 180_000 })));
    for (const s of shards) {
      expect(s.code, s.err).toBe(0);
      expect(s.out).toContain('ran 2, already finished 0');
    }
    const a = await merged(A, join(tmp.dir, 'a.json'));
    const b = await merged(B, join(tmp.dir, 'b.json'));
    expect(b.points).toHaveLength(6);
    expect(numbers(b)).toEqual(numbers(a));
    expect(a.front.ids.length).toBeGreaterThan(0);
    expect(a.calibration_cache).toEqual({ hits: 5 * HESSIANS, misses: HESSIANS, unreadable: 0 });
    for (const p of a.points) expect(readFileSync(join(B, p.id, 'model.onnx')).equals(readFileSync(join(A, p.id, 'model.onnx')))).toBe(true);
  });

  it('a second run of the same sweep does no work', async () => {
    const files = readdirSync(A).filter((f) => !f.startsWith('.')).flatMap((f) => ['model.onnx', 'report.json'].map((n) => join(A, f, n)));
    const before = files.map((f) => [statSync(f).mtimeMs, readFileSync(f)] as const);
    const r = await runCli(['sweep', MODEL, '-r', RECIPE, ...AXES, '-o', A, '--threads', '1']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('ran 0, already finished 6');
    expect(r.err).not.toMatch(/point \d/);
    files.forEach((f, i) => {
      expect(statSync(f).mtimeMs).toBe(before[i]![0]);
      expect(readFileSync(f).equals(before[i]![1])).toBe(true);
    });
  });

  it('--resume continues an interrupted point from its last pass, with the same bytes', async () => {
    const C = join(tmp.dir, 'resumed');
    const one = ['--set', 'passes[0].params.sparsity=0.35', '--set', 'passes[1].params.bits=4'];
    const stateSaved = () => existsSync(C) && readdirSync(C).some((p) => existsSync(join(C, p, '.pare-work')) && readdirSync(join(C, p, '.pare-work')).some((w) => existsSync(join(C, p, '.pare-work', w, 'state.json'))));
    const held = await runPare(['sweep', MODEL, '-r', RECIPE, ...one, '-o', C, '--threads', '1'], { entry: [HOLD_ENTRY, 'pass', '1'], killWhen: stateSaved });
    expect(held.signal).toBe('SIGKILL');
    const [id] = readdirSync(C).filter((f) => !f.startsWith('.'));
    expect(existsSync(join(C, id!, 'report.json'))).toBe(false);
    const r = await runCli(['sweep', MODEL, '-r', RECIPE, ...one, '-o', C, '--threads', '1', '--resume']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toContain('resuming after pass 1/2');
    expect(readFileSync(join(C, id!, 'model.onnx')).equals(readFileSync(join(A, id!, 'model.onnx')))).toBe(true);
  });

  it('an unreadable cache entry is recomputed with a one-line warning, never trusted', async () => {
    const cache = join(tmp.dir, 'cache-copy');
    cpSync(join(A, '.stats-cache'), cache, { recursive: true });
    const entries = readdirSync(cache);
    expect(entries).toHaveLength(HESSIANS);
    const damaged = join(cache, entries[0]!);
    const bytes = readFileSync(damaged);
    bytes[bytes.length - 3]! ^= 0xff;
    writeFileSync(damaged, bytes);
    const point = ['--set', 'passes[0].params.sparsity=0.6', '--set', 'passes[1].params.bits=8'];
    const r = await runCli(['sweep', MODEL, '-r', RECIPE, ...point, '-o', join(tmp.dir, 'damaged'), '--cache', cache, '--threads', '1']);
    expect(r.code, r.err).toBe(0);
    const warnings = r.err.split('\n').filter((l) => l.includes('warning:'));
    expect(warnings).toEqual([`  warning: calibration cache: entry ${damaged} is unreadable (checksum mismatch); recomputing it`]);
    const [report] = pointReports(join(tmp.dir, 'damaged'));
    expect(report!.calibration_cache).toMatchObject({ hits: HESSIANS - 1, misses: 1, unreadable: 1 });
    const clean = await runCli(['sweep', MODEL, '-r', RECIPE, ...point, '-o', join(tmp.dir, 'no-cache'), '--no-cache', '--threads', '1']);
    expect(clean.code, clean.err).toBe(0);
    const [fresh] = pointReports(join(tmp.dir, 'no-cache'));
    expect(fresh!.calibration_cache).toBeUndefined();
    expect(report!.output!.sha256).toBe(fresh!.output!.sha256);
    // the entry was written again, whole
    expect(readFileSync(damaged).equals(readFileSync(join(A, '.stats-cache', entries[0]!)))).toBe(true);
  });

  (CHROMIUM ? it : it.skip)(`the sweep's HTML report in headless Chromium: loads without errors or fetches, one mark per point, one bar per layer, a screenshot${CHROMIUM ? '' : ` (${NO_CHROMIUM})`}`, async () => {
    const html = join(tmp.dir, 'sweep.html');
    expect((await runCli(['report', 'html', join(tmp.dir, 'a.json'), '-o', html])).code).toBe(0);
    const sweep = readDocument(join(tmp.dir, 'a.json'));
    if (sweep.kind !== 'sweep') throw new Error('expected a sweep');
    const probe = await probePage(html, tmp.dir);
    expect(probe.errors).toEqual([]);
    expect(probe.resources).toEqual([]);
    expect(probe.points).toBe(6);
    expect(probe.pareto).toBe(sweep.sweep.front.ids.length);
    // a chart per pass of every point: 35 SparseGPT layers, 30 RTN layers (down_proj ignored)
    expect(probe.charts.map((c) => c.rows)).toEqual(sweep.sweep.points.flatMap((p) => p.passes.map((q) => q.layers.length)));
    expect(probe.charts.map((c) => c.rows)).toEqual(Array(6).fill([35, 30]).flat());
    for (const c of probe.charts) expect(c.bars).toBe(c.rows);
    const png = join(tmp.dir, 'sweep.png');
    const shot = await runChromium(['--window-size=1100,1000', `--screenshot=${png}`, `file://${html}`]);
    expect(shot.code, shot.stderr.slice(-1000)).toBe(0);
    expect(pngSize(png)).toEqual({ width: 1100, height: 1000 });
  });
});

describe('pare sweep: bad input is one line, exit 2, before anything runs', () => {
  const out = join(tmp.dir, 'never');
  const expectOneLine = (r: { code: number; err: string }, text: string | RegExp) => {
    expect(r.code).toBe(2);
    const lines = r.err.trim().split('\n');
    expect(lines).toHaveLength(1);
    if (typeof text === 'string') expect(lines[0]).toBe(text);
    else expect(lines[0]).toMatch(text);
    expect(existsSync(out)).toBe(false);
  };

  it('a --set path that names no recipe field', async () => {
    expectOneLine(await runCli(['sweep', MODEL, '-r', RECIPE, '--set', 'passes[0].params.sparsty=0.3', '-o', out]), /^pare: --set passes\[0\]\.params\.sparsty=0\.3: passes\[0\]\.params\.sparsty names no recipe field: prune\.sparsegpt has no param "sparsty" \(did you mean "sparsity"\?\)/);
  });

  it('a --set value of the wrong type', async () => {
    expectOneLine(await runCli(['sweep', MODEL, '-r', RECIPE, '--set', 'passes[1].params.bits=8,6', '-o', out]), 'pare: --set passes[1].params.bits=6: expected 2|3|4|8, got 6');
  });

  it("a --set value that does not fit the model's layers (checked for every point before the first runs)", async () => {
    const r = await runCli(['sweep', MODEL, '-r', RECIPE, '--set', 'passes[0].params.pattern=2:4,4:8', '-o', out]);
    expectOneLine(r, new RegExp(`^pare: sweep point sparsity=0\\.2,bits=8,pattern=4_8: ${RECIPE.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+ passes\\[0\\]\\.params\\.pattern: prune\\.sparsegpt: 'layers\\.0\\.mlp\\.down_proj' has 172 inputs, not a multiple of 8 for pattern 4:8`));
  });

  it('--shard 4/3', async () => {
    expectOneLine(await runCli(['sweep', MODEL, '-r', RECIPE, '--shard', '4/3', '-o', out]), 'pare: --shard 4/3: shard index must be 1..3, got 4');
  });

  it('--shard-from-env with an index but no count', async () => {
    const env = { PATH: process.env.PATH, HOME: process.env.HOME, JOB_COMPLETION_INDEX: '1' };
    const r = await runPare(['sweep', MODEL, '-r', RECIPE, '--shard-from-env', '-o', out], { env });
    expectOneLine({ code: r.code ?? -1, err: r.err }, /^pare: --shard-from-env: JOB_COMPLETION_INDEX is 1 but JOB_COMPLETIONS is not set/);
  });

  it('pare compress refuses a recipe with a sweep: section', async () => {
    const r = await runCli(['compress', MODEL, '-r', RECIPE, '-o', join(out, 'x.onnx')]);
    expectOneLine(r, `pare: ${RECIPE}: has a sweep: section; run it with pare sweep (pare compress runs one recipe), or remove the section`);
  });
});
