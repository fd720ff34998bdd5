import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelProtoType } from '../../src/model/onnx-schema.js';
import { renderReportMarkdown } from '../../src/report/markdown.js';
import type { Report } from '../../src/report/schema.js';
import { webSessionFromFile } from '../../src/runtime/ort-web.js';
import { failingOperator, RuntimeFailure, runtimesFor } from '../../src/runtime/session.js';
import { runCli } from '../cli/run-cli.js';
import { npy } from '../data/build.js';
import { tempDir } from '../helpers.js';

const ROOT = resolve(__dirname, '../..');
const KV = join(ROOT, 'fixtures/stories260K-kv/model.onnx');
const TEXT = join(ROOT, 'fixtures/tinystories/valid-head.txt');
const TOK = join(ROOT, 'fixtures/stories260K/tok512.bin');
const tmp = tempDir('pare-runtimes-');
afterAll(() => tmp.cleanup());

/** x float[N, 4] -> com.microsoft.Rfft -> y: a contrib op whose kernel only the CUDA provider has, so neither CPU runtime runs it. */
function rfftModel(): string {
  const vi = (name: string) => ({ name, type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_param: 'N' }, { dim_value: 4 }] } } } });
  const bytes = ModelProtoType.encode({
    ir_version: 10,
    opset_import: [{ domain: '', version: 21 }, { domain: 'com.microsoft', version: 1 }],
    graph: { name: 'g', node: [{ op_type: 'Rfft', domain: 'com.microsoft', input: ['x'], output: ['y'], name: 'spectrum' }], input: [vi('x')], output: [vi('y')] },
  } as never).finish();
  const path = join(tmp.dir, 'rfft.onnx');
  writeFileSync(path, bytes);
  return path;
}

describe('pare eval --runtime web: onnxruntime-web (wasm) beside onnxruntime-node', () => {
  it('stories260K perplexity in onnxruntime-web equals onnxruntime-node (1e-5), reported side by side', async () => {
    const r = await runCli(['eval', KV, '--data', TEXT, '--tokenizer', TOK, '--select', '1-12', '--runtime', 'web', '--runs', '3', '--json', '--threads', '1']);
    expect(r.code, r.err).toBe(0);
    const report = JSON.parse(r.out) as Report;
    const [node, web] = report.runtimes!;
    expect([node!.runtime, web!.runtime]).toEqual(['onnxruntime-node', 'onnxruntime-web']);
    expect(web!.version).toMatch(/^1\.30\./);
    const ppl = (x: typeof node) => (x!.model!.quality as { perplexity: number }).perplexity;
    expect(ppl(node)).toBe((report.measurements.model.quality as { perplexity: number }).perplexity);
    expect(Math.abs(ppl(web) / ppl(node) - 1)).toBeLessThan(1e-5); // measured 8e-9
    expect(web!.model!.latency!.threads).toBe(1);
    expect(renderReportMarkdown(report)).toMatch(/### Runtimes\n\n\| runtime \| model perplexity \| model latency \|\n[^\n]*\n\| onnxruntime-node 1\.30\.\d+ \| [\d.]+ \| [\d.]+ ms \(1 thread\) \|\n\| onnxruntime-web 1\.30\.\d+ \| [\d.]+ \|/);
  });

  it('a q4f16 model (GatherBlockQuantized, MatMulNBits, float16 KV cache and logits) gives the same perplexity in both (5e-4)', async () => {
    const recipe = join(tmp.dir, 'q4f16.yaml');
    writeFileSync(
      recipe,
      `version: 1\ncalibration:\n  data: { kind: text, path: ${TEXT}, tokenizer: ${TOK}, select: "1-4", segment: 128 }\n  samples: 8\npasses:\n  - pass: quantize.rtn\n    targets: ["layers.*"]\n    ignore: ["layers.*.mlp.down_proj"]\n    params: { bits: 4, granularity: group, group_size: 32, format: matmulnbits }\n  - pass: quantize.embeddings\n  - pass: quantize.f16\neval:\n  data: { kind: text, path: ${TEXT}, tokenizer: ${TOK}, select: "11-18" }\n  reference: false\n  runtime: web\n`,
    );
    const out = join(tmp.dir, 'q4f16.onnx');
    const r = await runCli(['compress', KV, '-r', recipe, '-o', out, '--json', '--threads', '1']);
    expect(r.code, r.err).toBe(0);
    const report = JSON.parse(r.out) as Report;
    const [node, web] = report.runtimes!.map((x) => (x.model!.quality as { perplexity: number }).perplexity);
    expect(Math.abs(web! / node! - 1)).toBeLessThan(5e-4); // measured 9.6e-5: the two runtimes round float16 intermediates in different places
  });

  it('a model no CPU kernel runs: the failure names the runtime, the operator and the node', async () => {
    const model = rfftModel();
    const web = await webSessionFromFile(model).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(web).toBeInstanceOf(RuntimeFailure);
    expect((web as RuntimeFailure).runtime).toBe('web');
    expect((web as RuntimeFailure).op).toEqual({ type: 'Rfft', node: 'spectrum' });
    expect((web as Error).message).toBe(`${model}: onnxruntime-web cannot run the model: operator Rfft (node 'spectrum') (Could not find an implementation for Rfft(1) node with name 'spectrum')`);

    // the CLI measures in onnxruntime-node first: its failure is the one-line user error, exit 2
    const data = join(tmp.dir, 'x.npy');
    writeFileSync(data, npy('<f4', [2, 4], new Float32Array(8)));
    const r = await runCli(['eval', model, '--data', data, '--runtime', 'web']);
    expect(r.code).toBe(2);
    expect(r.err.trim()).toBe(`pare: ${model}: onnxruntime-node cannot run the model: operator Rfft (node 'spectrum') (Could not find an implementation for Rfft(1) node with name 'spectrum')`);
  });

  it('a runtime that cannot run the model is a row of the report naming the operator', () => {
    const report = {
      schema: 'pare.report',
      version: 1,
      kind: 'eval',
      tool: { name: 'pare', version: '0', onnxruntime: '1.30.0', node: 'v20' },
      created: '2026-01-01T00:00:00Z',
      input: { path: 'm.onnx', sha256: 'ab'.repeat(32), format: 'onnx' },
      passes: [],
      measurements: { model: { path: 'm.onnx', sha256: 'ab'.repeat(32), size: { file_bytes: 1, params: 1, bytes_by_dtype: {}, params_by_dtype: {}, nonzeros: 1, sparse_bytes: 1, bits_per_weight: 32 }, quality: { task: 'causal-lm', nll: 1, perplexity: 2.718, ppl_ci95: [2.7, 2.8], tokens: 10, sequences: 1 } } },
      runtimes: [
        { runtime: 'onnxruntime-node', version: '1.30.0', model: { quality: { task: 'causal-lm', nll: 1, perplexity: 2.718, ppl_ci95: [2.7, 2.8], tokens: 10, sequences: 1 } } },
        { runtime: 'onnxruntime-web', version: '1.30.0', error: { path: 'm.onnx', message: 'Could not find an implementation for Foo(1) node with name \'f\'', op: 'Foo', node: 'f' } },
      ],
      warnings: [],
      timings: { total_ms: 1 },
    } as Report;
    expect(renderReportMarkdown(report)).toContain('| onnxruntime-web 1.30.0 | cannot run `m.onnx`: operator Foo (node `f`) |  |');
  });

  it('reads the operator from each form of ONNX Runtime error, and --runtime values', () => {
    expect(failingOperator("Could not find an implementation for Rfft(1) node with name 'n'")).toEqual({ type: 'Rfft', node: 'n' });
    expect(failingOperator('This is an invalid model. Error: No Op registered for FooBar with domain_version of 1')).toEqual({ type: 'FooBar' });
    expect(failingOperator("Non-zero status code returned while running Reshape node. Name:'/r' Status Message: bad shape")).toEqual({ type: 'Reshape', node: '/r' });
    expect(failingOperator('protobuf parsing failed')).toBeUndefined();
    expect(runtimesFor('node', '--runtime')).toEqual(['node']);
    expect(runtimesFor('web', '--runtime')).toEqual(['node', 'web']);
    expect(runtimesFor('node,web', '--runtime')).toEqual(['node', 'web']);
    expect(() => runtimesFor('webgpu', '--runtime')).toThrow("--runtime: expected node, web or node,web, got 'webgpu'");
  });
});
