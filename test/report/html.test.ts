import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { diffReports } from '../../src/report/diff.js';
import { renderHtml } from '../../src/report/html/render.js';
import type { Report } from '../../src/report/schema.js';
import { diffSweeps } from '../../src/report/sweep-diff.js';
import { mergeSweep } from '../../src/report/sweep.js';
import { runCli } from '../cli/run-cli.js';
import { tempDir } from '../helpers.js';
import { compressReport, lmMeasure, magnitudePass } from './reports.js';

const ROOT = resolve(__dirname, '../..');
const tmp = tempDir('pare-html-');
afterAll(() => tmp.cleanup());

const count = (html: string, re: RegExp) => (html.match(re) ?? []).length;

/** What a page may never hold: anything that loads from elsewhere or runs code. */
function expectSelfContained(html: string): void {
  expect(html).toContain(`<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">`);
  for (const bad of [/<script/i, /\ssrc=/i, /\shref=/i, /url\(/i, /@import/i, /<link/i, /<iframe/i, /<img/i]) expect(html).not.toMatch(bad);
}

function point(index: number, sparsity: number, nll: number, fileBytes: number, layers: number): Report {
  const r = compressReport(nll, { layers });
  const id = `sparsity=${sparsity}-${(index + 10).toString(16).padStart(8, '0')}`;
  return {
    ...r,
    measurements: { ...r.measurements, model: lmMeasure(`s/${id}/model.onnx`, nll, { fileBytes }) },
    passes: [magnitudePass(layers), { ...magnitudePass(layers - 1), id: 'quantize.rtn', layers: magnitudePass(layers - 1).layers.map((l) => ({ ...l, sparsity: undefined, bytes_after: l.bytes_before / 4 })) }],
    sweep: { id, index, count: 3, settings: [['passes[0].params.sparsity', sparsity]], base: { path: 'b.yaml', sha256: 'ee'.repeat(32) } },
  };
}

describe('renderHtml', () => {
  const sweep = mergeSweep([point(0, 0.3, 1.25, 1000, 6), point(1, 0.5, 1.4, 800, 6), point(2, 0.7, 1.9, 850, 6)].map((report, i) => ({ path: `p${i}/report.json`, report })));

  it('a sweep: one circle.point per point (front ones marked), the front line, one g.layer per layer of each pass of each point', () => {
    const html = renderHtml({ kind: 'sweep', sweep });
    expectSelfContained(html);
    expect(count(html, /<svg class="chart scatter"/g)).toBe(1);
    expect(count(html, /<circle class="point[ "]/g)).toBe(3);
    expect(count(html, /<circle class="point pareto"/g)).toBe(2);
    expect(count(html, /<polyline class="front"/g)).toBe(1);
    expect(count(html, /<circle class="reference"/g)).toBe(1);
    expect(count(html, /<svg class="chart layers" data-layers="6"/g)).toBe(3);
    expect(count(html, /<svg class="chart layers" data-layers="5"/g)).toBe(3);
    expect(count(html, /<g class="layer"/g)).toBe(3 * (6 + 5));
    expect(count(html, /<rect class="bar after"/g)).toBe(3 * (6 + 5));
    // pruning passes chart sparsity, the quantizer bits per weight: 32 / 4 = 8 after
    expect(html).toContain('>sparsity</text>');
    expect(html).toContain('>bits per weight</text>');
    expect(html).toContain('>8.00</text>');
  });

  it('names are escaped', () => {
    const r = point(0, 0.3, 1.25, 1000, 2);
    r.passes[0]!.layers[0]!.name = '<b onmouseover="x">&\'';
    const html = renderHtml({ kind: 'report', report: r });
    expect(html).not.toContain('<b onmouseover');
    expect(html).toContain('&lt;b onmouseover=&quot;x&quot;&gt;&amp;&#39;');
  });

  it('a report: summary, budget verdicts, one chart per pass', () => {
    const r = compressReport(1.3, { layers: 4 });
    r.budgets = [{ name: 'max_ppl_increase', limit: '2%', metric: 'perplexity', base: 3.397, candidate: 3.669, change: 0.08, allowed: 0.02, ok: false }];
    const html = renderHtml({ kind: 'report', report: r });
    expectSelfContained(html);
    expect(html).toContain('<h2>Budgets</h2>');
    expect(html).toContain('<span class="bad">✘ fail</span>');
    expect(count(html, /<svg class="chart layers" data-layers="4"/g)).toBe(1);
  });

  it('a diff of two reports and of two sweeps: the verdict of every budget', () => {
    const d = diffReports(compressReport(1.2377), compressReport(1.27), { max_ppl_increase: { kind: 'relative', fraction: 0.02 } });
    const html = renderHtml({ kind: 'diff', diff: d });
    expectSelfContained(html);
    expect(html).toContain('Verdict: <span class="bad">a budget failed</span>');
    const sd = diffSweeps(sweep, sweep, { max_ppl_increase: { kind: 'relative', fraction: 0 } });
    const shtml = renderHtml({ kind: 'diff', diff: sd });
    expectSelfContained(shtml);
    expect(shtml).toContain('every budget holds on all 3 points');
    // base and new marks for each point
    expect(count(shtml, /<circle class="point base"/g)).toBe(3);
    expect(count(shtml, /<circle class="point"/g)).toBe(3);
  });
});

describe('pare report html and compress --report-html', () => {
  it('compress --report-html writes the page beside the JSON report; without --report it is a usage error', async () => {
    const out = join(tmp.dir, 'm50.onnx');
    const report = join(tmp.dir, 'm50.json');
    const r = await runCli(['compress', join(ROOT, 'fixtures/stories260K/model.onnx'), '-r', join(ROOT, 'recipes/magnitude-50.yaml'), '-o', out, '--report', report, '--report-html']);
    expect(r.code).toBe(0);
    const html = readFileSync(join(tmp.dir, 'm50.html'), 'utf8');
    expectSelfContained(html);
    expect(count(html, /<svg class="chart layers" data-layers="35"/g)).toBe(1);
    expect(count(html, /<g class="layer"/g)).toBe(35);
    const page = join(tmp.dir, 'again.html');
    expect((await runCli(['report', 'html', report, '-o', page])).code).toBe(0);
    expect(readFileSync(page, 'utf8')).toBe(html);

    const bare = await runCli(['compress', join(ROOT, 'fixtures/stories260K/model.onnx'), '-r', join(ROOT, 'recipes/magnitude-50.yaml'), '-o', join(tmp.dir, 'x.onnx'), '--report-html']);
    expect(bare.code).toBe(2);
    expect(bare.err.trim()).toBe('pare: --report-html writes the page beside the JSON report; add --report <report.json>');
    expect(existsSync(join(tmp.dir, 'x.onnx'))).toBe(false);
  });
});
