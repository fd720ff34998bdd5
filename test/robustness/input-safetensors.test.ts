import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli/run-cli.js';
import { FIXTURES, tempDir } from '../helpers.js';
import { expectUserError, listing, sha256 } from './input-helpers.js';

/**
 * A safetensors checkpoint's graph is built from config.json: a corrupt layer count must not build
 * a billion layers before the first missing tensor is noticed (it ran out of memory, exit 134).
 */

const tmp = tempDir('pare-st-');
afterAll(() => tmp.cleanup());

describe('config.json numbers are bounded by the checkpoint', () => {
  it('num_hidden_layers of a billion is refused at once, naming the field', async () => {
    const model = join(tmp.dir, 'model.safetensors');
    copyFileSync(FIXTURES.storiesSafetensors, model);
    const config = JSON.parse(readFileSync(FIXTURES.storiesSafetensors.replace('model.safetensors', 'config.json'), 'utf8'));
    writeFileSync(join(tmp.dir, 'config.json'), JSON.stringify({ ...config, num_hidden_layers: 1e9 }));
    const hash = sha256(model);
    const before = listing(tmp.dir);
    // inspect lists a safetensors file's tensors without building its graph; eval and compress build it
    for (const args of [['eval', model, '--data', join(__dirname, '../../fixtures/tinystories/valid-head.data.yaml'), '--no-latency'], ['compress', model, '-r', join(__dirname, '../../recipes/fp16.yaml'), '-o', join(tmp.dir, 'out.onnx')]]) {
      const t0 = performance.now();
      const r = await runCli(args);
      expect(performance.now() - t0).toBeLessThan(5000);
      expectUserError(r, `${join(tmp.dir, 'config.json')}: num_hidden_layers 1000000000 is more layers than ${model} has tensors (`);
    }
    expect(sha256(model)).toBe(hash);
    expect(listing(tmp.dir)).toEqual(before);
  });
});
