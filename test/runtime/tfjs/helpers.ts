import { readFileSync } from 'node:fs';
import type * as tfjs from '@tensorflow/tfjs';
import { readIdx } from '../../../src/data/idx.js';
import { loadTokenizer } from '../../../src/data/tokenizer.js';
import type { Model } from '../../../src/model/model.js';
import { ort, sessionFromModel } from '../../../src/runtime/ort.js';
import type { OnnxExecutor } from '../../../src/runtime/tfjs/executor.js';
import { seededRandom } from '../../../src/util/random.js';
import { allClose, FIXTURES, sharedPath } from '../../helpers.js';
import { lmFeeds, modelIo } from '../../../src/model/io.js';
import { ortFeeds } from '../../../src/runtime/feeds.js';

/** B windows of T real TinyStories token ids (BOS first), from the first stories of valid-head.txt. */
export function storiesTokens(B: number, T: number): Int32Array {
  const tok = loadTokenizer(FIXTURES.tok512);
  const stories = readFileSync(FIXTURES.validHead, 'utf8').split('<|endoftext|>');
  const out = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const ids = tok.encode(stories[b]!.trim(), { bos: true });
    for (let t = 0; t < T; t++) out[b * T + t] = ids[t % ids.length]!;
  }
  return out;
}

/** B windows of T character ids from Tiny Shakespeare's validation split (../shared). */
export function shakespeareTokens(B: number, T: number): Int32Array {
  const buf = readFileSync(sharedPath('models/shakespeare-char/val.u16.bin'));
  const u16 = new Uint16Array(buf.buffer, buf.byteOffset, buf.byteLength / 2);
  return Int32Array.from(u16.subarray(0, B * T));
}

/** MNIST test digit `i` (< 1000, from fixtures/mnist) as raw 0..255 floats [1, 1, 28, 28]. */
export function mnistDigit(i: number): Float32Array {
  const { data } = readIdx(FIXTURES.mnistImages, 'images');
  return Float32Array.from(data.subarray(i * 784, (i + 1) * 784));
}

/** CIFAR-10 test image `i` as NHWC floats in [0, 1] (../shared). */
export function cifarImage(i: number): Float32Array {
  const buf = readFileSync(sharedPath('data/cifar10/test_x_u8_nhwc_10000x32x32x3.bin'));
  return Float32Array.from(buf.subarray(i * 3072, (i + 1) * 3072), (v) => v / 255);
}

/** A seeded 32×32 RGB image as NHWC floats in [0, 1]: a colour gradient plus noise. */
export function syntheticImage(seed: number): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: 32 * 32 * 3 }, (_, i) => {
    const [y, x, c] = [Math.floor(i / 96), Math.floor(i / 3) % 32, i % 3];
    return Math.min(1, ((c === 0 ? x : c === 1 ? y : x + y) / 64) * 0.8 + 0.2 * r());
  });
}

export interface Feed {
  name: string;
  dims: number[];
  /** int ids (int64 in ORT, int32 in tfjs) or float values */
  data: Int32Array | Float32Array;
}

/** Runs `model` in the executor and in ONNX Runtime on the same feed; returns both first outputs. */
export async function bothOutputs(exec: OnnxExecutor, model: Model, feed: Feed, ortOpts = {}): Promise<{ got: Float32Array; ref: Float32Array }> {
  const tf = exec.tf;
  const isInt = feed.data instanceof Int32Array;
  // token ids go in with whatever else the decoder takes (mask, positions, an empty KV cache)
  const host = isInt ? lmFeeds(modelIo(model), feed.data as Int32Array, feed.dims[0]!, feed.dims[1]!) : undefined;
  const got = tf.tidy(() => {
    const out = exec.run(host ? exec.feeds(host) : { [feed.name]: tf.tensor(feed.data, feed.dims, 'float32') as tfjs.Tensor });
    return Object.values(out)[0]!;
  });
  const gotData = got.dataSync() as Float32Array;
  got.dispose();
  const session = await sessionFromModel(model, ortOpts);
  const res = await session.run(host ? ortFeeds(host) : { [feed.name]: new ort.Tensor('float32', feed.data as Float32Array, feed.dims) });
  await session.release();
  return { got: gotData, ref: res[session.outputNames[0]!]!.data as Float32Array };
}

/** relative Frobenius error plus an elementwise bound; message names the worst element */
export function expectClose(got: Float32Array, ref: Float32Array, rel: number): { relFro: number; ok: boolean; worst: string } {
  const maxRef = ref.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const c = allClose(got, ref, rel, rel * maxRef);
  return { relFro: c.relFro, ok: c.ok && c.relFro <= rel, worst: c.worst };
}
