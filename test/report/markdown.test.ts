import { describe, expect, it } from 'vitest';
import { checkBudgets } from '../../src/report/budget.js';
import { renderReportMarkdown } from '../../src/report/markdown.js';
import { newReport } from '../../src/report/schema.js';
import { classifierMeasure, compressReport } from './reports.js';

describe('report markdown', () => {
  it('summarises reference vs model: size, dtype bytes, sparsity, perplexity with interval, latency', () => {
    const md = renderReportMarkdown(compressReport(1.2377));
    expect(md).toContain('## pare compress report');
    expect(md).toContain('| metric | reference | model | change |');
    expect(md).toContain('| parameters | 262,656 | 262,656 | ±0 |');
    expect(md).toContain('| bytes in float32 | 1.00 MiB | 1.00 MiB | ±0 |');
    expect(md).toContain('| nonzero weights | 262,656 | 150,000 | -112,656 (-42.89%) |');
    expect(md).toMatch(/\| perplexity \| 3\.397 \[3\.338, 3\.457\] \| 3\.448 \[3\.388, 3\.508\] \| \+0\.051 \(\+1\.49%\) \|/);
    expect(md).toContain('| NLL (nats/token) | 1.2229 | 1.2377 | +0.0148 (+1.21%) |');
    expect(md).toContain('| latency median (4 threads, batch 1×128) | 3.420 ms | 3.420 ms | ±0 |');
    expect(md).toContain('Perplexity over 14,721 predicted tokens in 46 sequences');
    expect(md).toContain('| KL(reference ‖ model) mean, nats | 0.0412 |');
    expect(md).toContain('| top-1 agreement with reference | 91.20% |');
  });

  it('lists passes and their layers, folding long layer tables', () => {
    const short = renderReportMarkdown(compressReport(1.2377, { layers: 4 }));
    expect(short).toContain('| 0 | prune.magnitude | layers.* | 4 | 42 ms | 172.0 KiB | 172.0 KiB | 0 |');
    expect(short).toContain('#### passes[0] prune.magnitude: 4 layers');
    expect(short).toContain('| layer | kind | shape | time | bytes before | bytes after | objective | sparsity | threshold |');
    expect(short).toContain('| model.layers.0.mlp.proj_1 | MatMul | 172×64 | 0.8 ms | 43.0 KiB | 43.0 KiB | 13.50 | 50.0% | 0.0123 |');
    expect(short).not.toContain('<details>');
    const long = renderReportMarkdown(compressReport(1.2377, { layers: 40 }));
    expect(long).toContain('<details><summary>passes[0] prune.magnitude: 40 layers</summary>');
    expect(long).toContain('| model.layers.4.mlp.proj_7 |');
  });

  it('shows warnings and budgets', () => {
    const report = compressReport(1.2377, { warnings: ['eval: latency measured with 1 thread'] });
    report.passes[0].warnings = ["layer 'lm_head' skipped: tied to the embedding"];
    report.budgets = checkBudgets(report.measurements.reference!, report.measurements.model, { max_ppl_increase: { kind: 'relative', fraction: 0.01 } });
    const md = renderReportMarkdown(report);
    expect(md).toContain('### Warnings');
    expect(md).toContain('- eval: latency measured with 1 thread');
    expect(md).toContain("- prune.magnitude: layer 'lm_head' skipped: tied to the embedding");
    expect(md).toContain('| ❌ | max_ppl_increase | 1% | +1.49% |');
  });

  it('an eval report of a classifier has a model column and top-1/top-5', () => {
    const md = renderReportMarkdown(
      newReport({
        kind: 'eval',
        input: { path: 'models/mnist-8/model.onnx', sha256: 'cd'.repeat(32), format: 'onnx' },
        data: { description: 'mnist idx t10k, 10000 images', files: [{ path: 't10k-images-idx3-ubyte', sha256: 'ee'.repeat(32) }] },
        passes: [],
        measurements: { model: classifierMeasure('models/mnist-8/model.onnx', 0.9891, 0.9998) },
        warnings: [],
        timings: { total_ms: 812 },
      }),
    );
    expect(md).toContain('## pare eval report');
    expect(md).toContain('| metric | model |');
    expect(md).toContain('| top-1 accuracy | 98.91% |');
    expect(md).toContain('| top-5 accuracy | 99.98% |');
    expect(md).toContain('Accuracy over 10,000 labelled samples.');
    expect(md).not.toContain('### Passes');
  });
});
