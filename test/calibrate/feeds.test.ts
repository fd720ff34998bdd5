import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli/run-cli.js';
import { tempDir } from '../helpers.js';

const ROOT = resolve(__dirname, '../..');
const KV = join(ROOT, 'fixtures/stories260K-kv/model.onnx');
const TEXT = join(ROOT, 'fixtures/tinystories/valid-head.txt');
const TOK = join(ROOT, 'fixtures/stories260K/tok512.bin');
const tmp = tempDir('pare-feeds-');
afterAll(() => tmp.cleanup());

describe('calibration feeds after a pass changed the KV cache', () => {
  it('prune.heads (fewer KV heads) then prune.layers (fewer, renumbered layers) then a calibrated pass run on a KV-cache model', async () => {
    const recipe = join(tmp.dir, 'r.yaml');
    writeFileSync(
      recipe,
      `version: 1\ncalibration:\n  data: { kind: text, path: ${TEXT}, tokenizer: ${TOK}, select: "1-4", segment: 64 }\n  samples: 4\npasses:\n` +
        `  - pass: prune.heads\n    targets: ["layers.*.self_attn.*"]\n    params: { sparsity: 0.25 }\n` +
        `  - pass: prune.layers\n    targets: ["layers.*"]\n    params: { count: 1 }\n` +
        `  - pass: prune.wanda\n    targets: ["layers.*"]\n    params: { sparsity: 0.5 }\n`,
    );
    const r = await runCli(['compress', KV, '-r', recipe, '-o', join(tmp.dir, 'out.onnx'), '--threads', '1']);
    expect(r.code, r.err).toBe(0);
  }, 60_000);
});
