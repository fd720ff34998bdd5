import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../src/model/load.js';
import { runCli } from '../cli/run-cli.js';
import { FIXTURES, tempDir } from '../helpers.js';

const tmp = tempDir('pare-kd-nbits-');
afterAll(() => tmp.cleanup());

describe('distill.kd on a MatMulNBits student inside pare compress', () => {
  it('targets select the quantized layers by their old names; the others stay frozen; codes stay on the 3-bit grid', async () => {
    const recipe = join(tmp.dir, 'r.yaml');
    writeFileSync(
      recipe,
      `version: 1
passes:
  - pass: quantize.rtn
    targets: ["layers.*"]
    params: { bits: 3, granularity: group, group_size: 32, symmetric: false, format: matmulnbits }
  - pass: distill.kd
    targets: ["layers.*.mlp.*"]
    params: { steps: 2, batch_size: 2, seq_len: 16, samples: 4, start_token: 1, checkpoint_every: 0, warmup: 0 }
`,
    );
    const out = join(tmp.dir, 'm.onnx');
    const report = join(tmp.dir, 'r.json');
    const r = await runCli(['compress', FIXTURES.stories, '-r', recipe, '-o', out, '--report', report]);
    expect(r.code, r.err).toBe(0);
    const kd = JSON.parse(readFileSync(report, 'utf8')).passes[1];
    const mlp = [0, 1, 2, 3, 4].flatMap((i) => ['gate_proj', 'down_proj', 'up_proj'].map((p) => `layers.${i}.mlp.${p}`));
    expect(kd.layers.map((l: { name: string }) => l.name).sort()).toEqual(mlp.sort());
    expect(kd.summary.lr).toBe(1e-3); // the default for quantized codes
    const model = loadModel(out);
    for (const n of model.graph.node!.filter((x) => x.op_type === 'MatMulNBits')) {
      const bytes = model.tensor(n.input![1]!).data;
      for (const b of bytes) expect(Math.max(b & 15, b >> 4)).toBeLessThanOrEqual(7);
    }
    model.close();
  }, 60_000);
});
