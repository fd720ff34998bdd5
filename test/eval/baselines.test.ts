import { describe, expect, it } from 'vitest';
import { datasetSpecFromCli } from '../../src/data/cli-spec.js';
import { loadDataset } from '../../src/data/load.js';
import { evalReport } from '../../src/report/eval-report.js';
import type { LMQuality } from '../../src/eval/lm.js';
import type { ClassificationQuality } from '../../src/eval/classify.js';
import { SHARED, SHARED_MODELS, sharedPath } from '../helpers.js';

/** The measured baselines of ../shared/README.md, reproduced through the same code `pare eval` runs. */
describe('shared baselines', () => {
  it('stories260K: mean NLL 1.2229, perplexity 3.397 over 14,721 tokens of valid-head.txt', async () => {
    const data = await loadDataset(
      { kind: 'text', path: 'data/tinystories/valid-head.txt', tokenizer: 'models/stories260K/tok512.bin', separator: '<|endoftext|>', bos: true, max_length: 512 },
      SHARED,
    );
    expect(data.kind === 'tokens' && data.sequences.length).toBe(46);
    const q = (await evalReport(SHARED_MODELS.stories, data, { latency: false })).measurements.model.quality as LMQuality;
    expect(q.tokens).toBe(14721);
    expect(q.sequences).toBe(46);
    expect(q.nll.toFixed(4)).toBe('1.2229');
    expect(q.perplexity.toFixed(3)).toBe('3.397');
  });

  it('shakespeare-char: NLL 1.4570, perplexity 4.2929 over 64 windows of 256 (16,320 tokens)', async () => {
    const data = await loadDataset({ kind: 'tokens', path: 'models/shakespeare-char/val.u16.bin', dtype: 'uint16', seq_len: 256, count: 64, offset: 0 }, SHARED);
    expect(data.kind === 'tokens' && data.sequences.length).toBe(64);
    const q = (await evalReport(SHARED_MODELS.shakespeare, data, { latency: false })).measurements.model.quality as LMQuality;
    expect(q.tokens).toBe(16320);
    expect(q.nll.toFixed(4)).toBe('1.4570');
    expect(q.perplexity.toFixed(4)).toBe('4.2929');
  });

  it('mnist-8: 98.91 % top-1 on the 10,000 MNIST test digits', async () => {
    // as `pare eval --data t10k-images-idx3-ubyte.gz` builds it: the idx1 labels beside the images are found
    const { spec, baseDir } = datasetSpecFromCli('data/mnist/t10k-images-idx3-ubyte.gz', {}, SHARED);
    expect(spec).toMatchObject({ kind: 'idx', labels: sharedPath('data/mnist/t10k-labels-idx1-ubyte.gz'), scale: 1 });
    const data = await loadDataset(spec, baseDir);
    const q = (await evalReport(SHARED_MODELS.mnist, data, { latency: false })).measurements.model.quality as ClassificationQuality;
    expect(q.samples).toBe(10000);
    expect((q.top1 * 100).toFixed(2)).toBe('98.91');
  });

  it('squeezenet-cifar10: 75.37 % top-1 on the CIFAR-10 test set', async () => {
    const data = await loadDataset(
      { kind: 'images', path: 'data/cifar10/test_x_u8_nhwc_10000x32x32x3.bin', labels: 'data/cifar10/test_y_u8_10000.bin', shape: [32, 32, 3], layout: 'nhwc', scale: 1 / 255 },
      SHARED,
    );
    const q = (await evalReport(SHARED_MODELS.squeezenet, data, { latency: false })).measurements.model.quality as ClassificationQuality;
    expect(q.samples).toBe(10000);
    expect((q.top1 * 100).toFixed(2)).toBe('75.37');
  });
});
