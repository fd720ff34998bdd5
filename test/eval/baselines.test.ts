import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { writeConvNet } from '../../fixtures/generate-convnet.js';
import { datasetSpecFromCli } from '../../src/data/cli-spec.js';
import { readIdx } from '../../src/data/idx.js';
import { loadDataset } from '../../src/data/load.js';
import { loadTokenizer } from '../../src/data/tokenizer.js';
import { evalReport } from '../../src/report/eval-report.js';
import type { LMQuality } from '../../src/eval/lm.js';
import type { ClassificationQuality } from '../../src/eval/classify.js';
import { ort, sessionFromFile } from '../../src/runtime/ort.js';
import { rawImages } from '../data/build.js';
import { FIXTURES, itWithShared, SHARED, SHARED_MODELS, sharedPath, tempDir } from '../helpers.js';

const tmp = tempDir('pare-baselines-');
afterAll(() => tmp.cleanup());

/**
 * The measured baselines of ../shared/README.md, reproduced through the same code `pare eval` runs:
 * on the models carried in fixtures/, and on the ../shared ones when that folder is there. Each
 * ../shared baseline has a carried test of the same data path beside it.
 */
describe('baselines of the real models', () => {
  it('stories260K: mean NLL 1.2229, perplexity 3.397 over 14,721 tokens of valid-head.txt', async () => {
    const data = await loadDataset({ kind: 'text', path: FIXTURES.validHead, tokenizer: FIXTURES.tok512, separator: '<|endoftext|>', bos: true, max_length: 512 }, tmp.dir);
    expect(data.kind === 'tokens' && data.sequences.length).toBe(46);
    const q = (await evalReport(FIXTURES.stories, data, { latency: false })).measurements.model.quality as LMQuality;
    expect(q.tokens).toBe(14721);
    expect(q.sequences).toBe(46);
    expect(q.nll.toFixed(4)).toBe('1.2229');
    expect(q.perplexity.toFixed(3)).toBe('3.397');
  });

  itWithShared('shakespeare-char: NLL 1.4570, perplexity 4.2929 over 64 windows of 256 (16,320 tokens)', async () => {
    const data = await loadDataset({ kind: 'tokens', path: 'models/shakespeare-char/val.u16.bin', dtype: 'uint16', seq_len: 256, count: 64, offset: 0 }, SHARED);
    expect(data.kind === 'tokens' && data.sequences.length).toBe(64);
    const q = (await evalReport(SHARED_MODELS.shakespeare, data, { latency: false })).measurements.model.quality as LMQuality;
    expect(q.tokens).toBe(16320);
    expect(q.nll.toFixed(4)).toBe('1.4570');
    expect(q.perplexity.toFixed(4)).toBe('4.2929');
  });

  it('stories260K on valid-head.txt as a uint16 token file: NLL 1.2685, perplexity 3.556 over 32 windows of 256 (8,160 tokens)', async () => {
    // the shakespeare-char baseline's data path (a token-id file cut into windows) on the carried model
    const tok = loadTokenizer(FIXTURES.tok512);
    const ids = readFileSync(FIXTURES.validHead, 'utf8').split('<|endoftext|>').flatMap((d) => tok.encode(d.trim(), { bos: true }));
    writeFileSync(join(tmp.dir, 'stories.u16.bin'), Uint16Array.from(ids));
    const data = await loadDataset({ kind: 'tokens', path: 'stories.u16.bin', dtype: 'uint16', seq_len: 256, count: 32, offset: 0 }, tmp.dir);
    const q = (await evalReport(FIXTURES.stories, data, { latency: false })).measurements.model.quality as LMQuality;
    expect(q.tokens).toBe(8160);
    expect(q.nll.toFixed(4)).toBe('1.2685');
    expect(q.perplexity.toFixed(3)).toBe('3.556');
  });

  itWithShared('mnist-8: 98.91 % top-1 on the 10,000 MNIST test digits', async () => {
    // as `pare eval --data t10k-images-idx3-ubyte.gz` builds it: the idx1 labels beside the images are found
    const { spec, baseDir } = datasetSpecFromCli('data/mnist/t10k-images-idx3-ubyte.gz', {}, SHARED);
    expect(spec).toMatchObject({ kind: 'idx', labels: sharedPath('data/mnist/t10k-labels-idx1-ubyte.gz'), scale: 1 });
    const data = await loadDataset(spec, baseDir);
    const q = (await evalReport(FIXTURES.mnist, data, { latency: false })).measurements.model.quality as ClassificationQuality;
    expect(q.samples).toBe(10000);
    expect((q.top1 * 100).toFixed(2)).toBe('98.91');
  });

  it('mnist-8: 98.70 % top-1 on the first 1,000 MNIST test digits (fixtures/mnist)', async () => {
    const { spec, baseDir } = datasetSpecFromCli(FIXTURES.mnistImages, {}, tmp.dir);
    expect(spec).toMatchObject({ kind: 'idx', labels: FIXTURES.mnistLabels, scale: 1 });
    const q = (await evalReport(FIXTURES.mnist, await loadDataset(spec, baseDir), { latency: false })).measurements.model.quality as ClassificationQuality;
    expect(q.samples).toBe(1000);
    expect((q.top1 * 100).toFixed(2)).toBe('98.70');
  });

  itWithShared('fixtures/mnist holds the first 1,000 digits and labels of the MNIST test set', () => {
    for (const kind of ['images', 'labels'] as const) {
      const carried = readIdx(kind === 'images' ? FIXTURES.mnistImages : FIXTURES.mnistLabels, kind);
      const full = readIdx(sharedPath(`data/mnist/t10k-${kind}-idx${kind === 'images' ? 3 : 1}-ubyte.gz`), kind);
      expect(carried.dims).toEqual([1000, ...full.dims.slice(1)]);
      expect(Buffer.compare(carried.data, full.data.subarray(0, carried.data.length))).toBe(0);
    }
  });

  it('mnist-8 on the same 1,000 digits as raw uint8 images [28, 28, 1] (nhwc) with raw labels: the same 98.70 %', async () => {
    // the raw-image path of the squeezenet-cifar10 baseline; the model wants [1, 28, 28], so samples are transposed
    const pixels = gunzipSync(readFileSync(FIXTURES.mnistImages)).subarray(16);
    const labels = gunzipSync(readFileSync(FIXTURES.mnistLabels)).subarray(8);
    writeFileSync(join(tmp.dir, 'digits.bin'), pixels);
    writeFileSync(join(tmp.dir, 'digits-labels.bin'), labels);
    const data = await loadDataset({ kind: 'images', path: 'digits.bin', labels: 'digits-labels.bin', shape: [28, 28, 1], layout: 'nhwc', scale: 1 }, tmp.dir);
    const q = (await evalReport(FIXTURES.mnist, data, { latency: false })).measurements.model.quality as ClassificationQuality;
    expect(q.samples).toBe(1000);
    expect((q.top1 * 100).toFixed(2)).toBe('98.70');
  });

  itWithShared('squeezenet-cifar10: 75.37 % top-1 on the CIFAR-10 test set', async () => {
    const data = await loadDataset(
      { kind: 'images', path: 'data/cifar10/test_x_u8_nhwc_10000x32x32x3.bin', labels: 'data/cifar10/test_y_u8_10000.bin', shape: [32, 32, 3], layout: 'nhwc', scale: 1 / 255 },
      SHARED,
    );
    const q = (await evalReport(SHARED_MODELS.squeezenet, data, { latency: false })).measurements.model.quality as ClassificationQuality;
    expect(q.samples).toBe(10000);
    expect((q.top1 * 100).toFixed(2)).toBe('75.37');
  });

  it('the generated NHWC convnet on raw uint8 images scaled by 1/255: top-1 is the share of labels equal to its own ONNX Runtime argmax', async () => {
    // squeezenet-cifar10's form (NHWC input, Softmax output, dynamic batch) with labels made from an independent run
    const n = 40;
    const model = writeConvNet(join(tmp.dir, 'convnet.onnx'));
    const bytes = rawImages(n, [32, 32, 3], 3);
    const session = await sessionFromFile(model);
    const probs = (await session.run({ input_1: new ort.Tensor('float32', Float32Array.from(bytes, (v) => v / 255), [n, 32, 32, 3]) })).loss!.data as Float32Array;
    await session.release();
    const argmax = Array.from({ length: n }, (_, i) => {
      const row = Array.from(probs.subarray(i * 10, (i + 1) * 10));
      const best = row.indexOf(Math.max(...row));
      expect(row.filter((p) => p > row[best]! - 1e-6), `image ${i} has a near tie`).toHaveLength(1);
      return best;
    });
    expect(new Set(argmax).size).toBeGreaterThan(1); // the labels say something about each image
    // every third label is wrong on purpose
    const labels = Uint8Array.from(argmax, (c, i) => (i % 3 === 2 ? (c + 1) % 10 : c));
    writeFileSync(join(tmp.dir, 'images.bin'), bytes);
    writeFileSync(join(tmp.dir, 'labels.bin'), labels);
    const data = await loadDataset({ kind: 'images', path: 'images.bin', labels: 'labels.bin', shape: [32, 32, 3], layout: 'nhwc', scale: 1 / 255 }, tmp.dir);
    const q = (await evalReport(model, data, { latency: false })).measurements.model.quality as ClassificationQuality;
    expect(q.samples).toBe(n);
    expect(q.top1).toBe(labels.filter((l, i) => l === argmax[i]).length / n);
  });
});
