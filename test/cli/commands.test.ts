import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateCheckpoint, llamaSpec } from '../../fixtures/generate-models.js';
import { writeConvNet } from '../../fixtures/generate-convnet.js';
import { rawImages } from '../data/build.js';
import { FIXTURES, itWithShared, SHARED_MODELS, sharedPath, tempDir } from '../helpers.js';
import { runCli } from './run-cli.js';

const ROOT = resolve(__dirname, '../..');
const tmp = tempDir('pare-cli-');
afterAll(() => tmp.cleanup());

function file(name: string, bytes: string | Uint8Array): string {
  const p = join(tmp.dir, name);
  writeFileSync(p, bytes);
  return p;
}

function oneLineError(r: { code: number; err: string }, mention: string): void {
  expect(r.code).toBe(2);
  expect(r.err.trim().split('\n')).toHaveLength(1);
  expect(r.err).toContain(mention);
  expect(r.err).not.toMatch(/\n\s+at /);
}

describe('pare inspect', () => {
  it('reports the 36 linear layers of stories260K as JSON', async () => {
    const r = await runCli(['inspect', FIXTURES.stories, '--json']);
    expect(r.code).toBe(0);
    const json = JSON.parse(r.out);
    expect(json.linears).toHaveLength(36);
  });

  it('prints tensors and the config summary of a safetensors checkpoint', async () => {
    const r = await runCli(['inspect', join(ROOT, 'fixtures/stories260K/model.safetensors')]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('hidden_size=64');
    expect(r.out).toContain('model.layers.0.self_attn.q_proj.weight');
  });

  it('bad inputs exit 2 with one line naming the file', async () => {
    oneLineError(await runCli(['inspect', join(tmp.dir, 'missing.onnx')]), 'missing.onnx');
    mkdirSync(join(tmp.dir, 'folder.onnx'));
    oneLineError(await runCli(['inspect', join(tmp.dir, 'folder.onnx')]), 'folder.onnx');
    oneLineError(await runCli(['inspect', file('text.onnx', 'this is not a protobuf at all')]), 'text.onnx');
    const header = JSON.stringify({ w: { dtype: 'F32', shape: [1000], data_offsets: [0, 4000] } });
    const lying = new Uint8Array(8 + header.length + 16);
    new DataView(lying.buffer).setBigUint64(0, BigInt(header.length), true);
    lying.set(Buffer.from(header), 8);
    oneLineError(await runCli(['inspect', file('lying.safetensors', lying)]), 'lying.safetensors');
  });
});

describe('pare eval', () => {
  it('reproduces the stories260K baseline from the embedded fixtures, with fidelity to a reference', async () => {
    const out = join(tmp.dir, 'eval.json');
    const r = await runCli(['eval', join(ROOT, 'fixtures/stories260K/model.onnx'), '--data', join(ROOT, 'fixtures/tinystories/valid-head.data.yaml'), '--reference', FIXTURES.stories, '--runs', '3', '-o', out, '--json']);
    expect(r.code, r.err).toBe(0);
    const report = JSON.parse(r.out);
    expect(report.kind).toBe('eval');
    expect(report.measurements.model.quality.perplexity.toFixed(3)).toBe('3.397');
    expect(report.measurements.model.quality.tokens).toBe(14721);
    expect(report.fidelity.top1_agreement).toBe(1);
    expect(report.fidelity.kl_mean).toBeLessThan(1e-9);
    expect(report.measurements.model.latency.threads).toBeGreaterThan(0);
    expect(report.data.files.map((f: { sha256: string }) => f.sha256)).toHaveLength(2);
  });

  itWithShared('evaluates squeezenet-cifar10 from flags: raw NHWC CIFAR-10 images with labels', async () => {
    const r = await runCli([
      'eval', SHARED_MODELS.squeezenet, '--data', sharedPath('data/cifar10/test_x_u8_nhwc_10000x32x32x3.bin'),
      '--shape', '32x32x3', '--layout', 'nhwc', '--scale', '1/255', '--labels', sharedPath('data/cifar10/test_y_u8_10000.bin'), '--limit', '500', '--no-latency', '--json',
    ]);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out).measurements.model.quality.samples).toBe(500);
  });

  it('evaluates the generated convnet from flags: raw NHWC images with labels', async () => {
    const model = writeConvNet(join(tmp.dir, 'convnet.onnx'));
    const images = file('images.bin', rawImages(60, [32, 32, 3], 1));
    const labels = file('labels.bin', Uint8Array.from({ length: 60 }, (_, i) => i % 10));
    const r = await runCli(['eval', model, '--data', images, '--shape', '32x32x3', '--layout', 'nhwc', '--scale', '1/255', '--labels', labels, '--limit', '50', '--no-latency', '--json']);
    expect(r.code, r.err).toBe(0);
    const quality = JSON.parse(r.out).measurements.model.quality;
    expect(quality.samples).toBe(50);
    expect(quality.top5).toBeGreaterThanOrEqual(quality.top1);
  });

  it('labels that do not match the images are a one-line error naming the labels file', async () => {
    const model = writeConvNet(join(tmp.dir, 'convnet.onnx'));
    const images = file('twenty-images.bin', rawImages(20, [32, 32, 3], 2));
    const labels = file('short-labels.bin', new Uint8Array(10));
    const r = await runCli(['eval', model, '--data', images, '--shape', '32x32x3', '--labels', labels, '--no-latency']);
    oneLineError(r, 'short-labels.bin');
  });

  it('a tokenizer whose vocabulary does not match the logits is a one-line error naming the tokenizer', async () => {
    // a seeded random Llama with a 65-token vocabulary (shakespeare-char's), evaluated on text tokenized for 512
    const shape = { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 65, tie_word_embeddings: true };
    const { dir } = generateCheckpoint(llamaSpec('vocab65', shape), join(tmp.dir, 'vocab65'), { onnx: false });
    const r = await runCli(['eval', join(dir, 'model.safetensors'), '--data', join(ROOT, 'fixtures/tinystories/valid-head.data.yaml'), '--no-latency']);
    oneLineError(r, 'tok512.bin');
  });

  it('data the model has no input for is a one-line error', async () => {
    const r = await runCli(['eval', FIXTURES.mnist, '--data', join(ROOT, 'fixtures/tinystories/valid-head.data.yaml'), '--no-latency']);
    oneLineError(r, 'Input3');
  });
});

describe('pare recipe', () => {
  it('validate names each pass and, with --model, how many layers it selects', async () => {
    const r = await runCli(['recipe', 'validate', join(ROOT, 'recipes/gptq-4bit.yaml'), '--model', FIXTURES.stories]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('passes[0] quantize.gptq: 35 layers');
  });

  it('passes lists every pass with params and defaults', async () => {
    const r = await runCli(['recipe', 'passes', '--json']);
    const passes = JSON.parse(r.out);
    const gptq = passes.find((p: { id: string }) => p.id === 'quantize.gptq');
    expect(gptq.needsCalibration).toBe(true);
    expect(gptq.params.find((p: { name: string }) => p.name === 'bits').default).toBe(8);
  });
});
