import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import { diffReports, renderDiffMarkdown } from '../../src/report/diff.js';
import { writeReport } from '../../src/report/io.js';
import type { Report } from '../../src/report/schema.js';
import { tempDir } from '../helpers.js';
import { captureIo, compressReport, STORIES_DATA } from './reports.js';

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir('pare-diff-')));
afterEach(() => cleanup());

// base: the pruned model at NLL 1.2377 (ppl 3.448); next: NLL 1.2700 (ppl 3.561, +3.28%)
const BASE_NLL = 1.2377;
const WORSE_NLL = 1.27;
const SLIGHTLY_WORSE_NLL = 1.245; // ppl 3.473, +0.73%

function write(name: string, report: Report): string {
  const path = join(dir, name);
  writeReport(path, report);
  return path;
}

async function diff(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const c = captureIo();
  const code = await run(['report', 'diff', ...args], c.io);
  return { code, out: c.out(), err: c.err() };
}

describe('report diff', () => {
  it('a perplexity rise past the budget exits 3, prints the table and names the failing row on stderr', async () => {
    const base = write('base.json', compressReport(BASE_NLL));
    const next = write('new.json', compressReport(WORSE_NLL));
    const r = await diff([base, next, '--max-ppl-increase', '2%']);
    expect(r.code).toBe(3);
    expect(r.out).toContain('| ❌ perplexity | 3.448 | 3.561 | +0.113 (+3.28%) | 2% |');
    expect(r.out).toContain('### Budget failures');
    expect(r.out).toContain('- ❌ max_ppl_increase 2%: perplexity 3.44767 -> 3.56085 (increase +3.28%)');
    expect(r.err.trim().split('\n')).toEqual(['budget failed: max_ppl_increase 2%: perplexity 3.44767 -> 3.56085 (increase +3.28%)']);
  });

  it('within budget exits 0 with nothing on stderr', async () => {
    const base = write('base.json', compressReport(BASE_NLL));
    const next = write('new.json', compressReport(SLIGHTLY_WORSE_NLL));
    const r = await diff([base, next, '--max-ppl-increase', '2%', '--max-size-increase', '0%']);
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toContain('| ✅ perplexity | 3.448 | 3.473 |');
    expect(r.out).toContain('| ✅ file size | 1.01 MiB | 1.01 MiB | ±0 | 0% |');
    expect(r.out).not.toContain('Budget failures');
    expect(r.out).toContain('all 2 budgets hold');
  });

  it('an absolute ppl budget compares in perplexity units', async () => {
    const base = write('base.json', compressReport(BASE_NLL));
    const next = write('new.json', compressReport(WORSE_NLL));
    expect((await diff([base, next, '--max-ppl-increase', '0.2'])).code).toBe(0);
    expect((await diff([base, next, '--max-ppl-increase', '0.1'])).code).toBe(3);
  });

  it('without budgets it only reports, and exits 0 even when quality got worse', async () => {
    const r = await diff([write('base.json', compressReport(BASE_NLL)), write('new.json', compressReport(WORSE_NLL))]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('| metric | base | new | change |\n');
    expect(r.out).toContain('| perplexity | 3.448 | 3.561 |');
  });

  it('reports measured on different data are a user error naming both files', async () => {
    const otherData = { ...STORIES_DATA, files: [STORIES_DATA.files[0], { path: 'fixtures/stories260K/tok512.bin', sha256: '99'.repeat(32) }] };
    const base = write('base.json', compressReport(BASE_NLL));
    const next = write('new.json', compressReport(BASE_NLL, { data: otherData }));
    const r = await diff([base, next, '--max-ppl-increase', '2%']);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toContain(`${base} and ${next} measured different data`);
    expect(r.err).toContain('sha256 999999999999');
  });

  it('a different data description is also different data', async () => {
    const base = write('base.json', compressReport(BASE_NLL));
    const next = write('new.json', compressReport(BASE_NLL, { data: { ...STORIES_DATA, description: 'text valid-head.txt docs 1-10, tok512.bin, bos, max_length 512' } }));
    expect((await diff([base, next])).code).toBe(2);
  });

  it('a budget the reports cannot check is a user error naming the report', async () => {
    const base = write('base.json', compressReport(BASE_NLL));
    const r = await diff([base, base, '--max-accuracy-drop', '0.5']);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`max_accuracy_drop: ${base} (model out/stories-50.onnx) has perplexity (a language model), not top-1 accuracy`);
  });

  it('a malformed budget flag is a user error', async () => {
    const base = write('base.json', compressReport(BASE_NLL));
    const r = await diff([base, base, '--max-ppl-increase', 'lots']);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`--max-ppl-increase: expected a percentage like "2%" or a number >= 0, got 'lots'`);
  });

  it('--format json prints one document with rows, checks and failed', async () => {
    const base = write('base.json', compressReport(BASE_NLL));
    const next = write('new.json', compressReport(WORSE_NLL));
    const r = await diff([base, next, '--max-ppl-increase', '2%', '--format', 'json']);
    expect(r.code).toBe(3);
    const doc = JSON.parse(r.out) as ReturnType<typeof diffReports>;
    expect(doc.failed).toBe(true);
    expect(doc.checks).toHaveLength(1);
    const ppl = doc.rows.find((x) => x.key === 'perplexity');
    expect(ppl).toMatchObject({ metric: 'perplexity', ok: false, limit: '2%' });
    expect(ppl!.change).toBeCloseTo(Math.exp(WORSE_NLL) - Math.exp(BASE_NLL), 12);
  });

  it('diffReports compares the models, not the references', () => {
    const d = diffReports(compressReport(BASE_NLL), compressReport(WORSE_NLL), {});
    const nll = d.rows.find((r) => r.key === 'nll')!;
    expect(nll.base).toBe(BASE_NLL);
    expect(nll.next).toBe(WORSE_NLL);
    expect(d.rows.map((r) => r.key)).toEqual(expect.arrayContaining(['file_bytes', 'params', 'bytes.float32', 'nonzeros', 'sparse_bytes', 'latency.median_ms', 'fidelity.kl_mean']));
    expect(d.failed).toBe(false);
    expect(renderDiffMarkdown(d)).toContain('| latency median (4 threads, batch 1×128) | 3.420 ms | 3.420 ms | ±0 |');
  });
});
