import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { ort } from '../../src/runtime/ort.js';
import { sha256File } from '../../src/util/hash.js';
import { tempDir } from '../helpers.js';
import { runCli } from '../cli/run-cli.js';
import { decoderFeeds } from '../decoder-feeds.js';

const ROOT = resolve(__dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');
/** the built CLI with a hold point (test/cli/hold-entry.ts) */
const HOLD_ENTRY = join(ROOT, 'dist/test/cli/hold-entry.js');
const tmp = tempDir('pare-compress-');
afterAll(() => tmp.cleanup());

function recipe(name: string, text: string): string {
  const path = join(tmp.dir, name);
  writeFileSync(path, text);
  return path;
}

const twoPasses = recipe(
  'two-passes.yaml',
  `version: 1
passes:
  - pass: prune.magnitude
    targets: ["layers.*.self_attn.*"]
    params: { sparsity: 0.3 }
  - pass: prune.magnitude
    targets: ["layers.*.mlp.*"]
    params: { pattern: "2:4" }
`,
);

function zeroFraction(W: Float32Array): number {
  return W.filter((v) => v === 0).length / W.length;
}

describe('pare compress', () => {
  it('magnitude-50 on the embedded model: 50 % zeros in each target, lm_head untouched, runs in ORT, report written', async () => {
    const out = join(tmp.dir, 'm50.onnx');
    const report = join(tmp.dir, 'm50.json');
    const before = sha256File(MODEL);
    const r = await runCli(['compress', MODEL, '-r', join(ROOT, 'recipes/magnitude-50.yaml'), '-o', out, '--report', report]);
    expect(r.err + r.out).not.toContain('internal error');
    expect(r.code).toBe(0);
    expect(sha256File(MODEL)).toBe(before);

    const original = readOnnx(MODEL);
    const pruned = readOnnx(out);
    const layers = linears(pruned);
    expect(layers).toHaveLength(36);
    for (const l of layers) {
      const W = readWeight(pruned, l);
      if (l.name.startsWith('layers.')) expect(zeroFraction(W)).toBe(0.5);
      else expect(W).toEqual(readWeight(original, linears(original).find((o) => o.name === l.name)!));
    }
    const session = await ort.InferenceSession.create(out);
    const logits = (await session.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from([1n, 400n, 33n]), [1, 3]) })).logits;
    expect(logits.dims).toEqual([1, 3, 512]);
    expect(Array.from(logits.data as Float32Array).every(Number.isFinite)).toBe(true);

    const json = JSON.parse(readFileSync(report, 'utf8'));
    expect(json.schema).toBe('pare.report');
    expect(json.kind).toBe('compress');
    expect(json.passes[0].layers).toHaveLength(35);
    expect(json.passes[0].layers[0].sparsity).toBe(0.5);
    expect(json.measurements.reference.quality.perplexity).toBeCloseTo(3.397, 3);
    expect(json.measurements.model.quality.perplexity).toBeGreaterThan(json.measurements.reference.quality.perplexity);
    expect(json.measurements.model.size.nonzeros).toBeLessThan(json.measurements.reference.size.nonzeros);
  });

  it('same input, recipe and seed give byte-identical output (--mkdir creates the folders)', async () => {
    const a = join(tmp.dir, 'new/folder/a.onnx');
    const b = join(tmp.dir, 'b.onnx');
    expect((await runCli(['compress', MODEL, '-r', twoPasses, '-o', a, '--mkdir'])).code).toBe(0);
    expect((await runCli(['compress', MODEL, '-r', twoPasses, '-o', b])).code).toBe(0);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    expect(existsSync(join(tmp.dir, '.pare-work'))).toBe(false);
  });

  it('--stream (rewritten weights in a spill file) writes the same bytes, through sequential calibration and a second pass', async () => {
    const fixtures = join(ROOT, 'fixtures');
    const streamed = recipe(
      'sparsegpt-then-rtn.yaml',
      `version: 1
calibration:
  data: { kind: text, path: ${fixtures}/tinystories/valid-head.txt, tokenizer: ${fixtures}/stories260K/tok512.bin, select: "1-4", segment: 64 }
  samples: 8
passes:
  - pass: prune.sparsegpt
    targets: ["layers.*"]
    params: { sparsity: 0.5 }
  - pass: quantize.rtn
    targets: ["layers.*", "output"]
    params: { bits: 8 }
`,
    );
    const a = join(tmp.dir, 'streamed.onnx');
    const b = join(tmp.dir, 'in-memory.onnx');
    const r = await runCli(['compress', MODEL, '-r', streamed, '-o', a, '--stream']);
    expect(r.err + r.out).not.toContain('internal error');
    expect(r.code).toBe(0);
    expect((await runCli(['compress', MODEL, '-r', streamed, '-o', b])).code).toBe(0);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    expect(existsSync(join(tmp.dir, '.pare-work'))).toBe(false);
  });

  it('refuses -o equal to the input', async () => {
    const r = await runCli(['compress', MODEL, '-r', twoPasses, '-o', MODEL]);
    expect(r.code).toBe(2);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(r.err).toContain('never overwrites its input');
  });

  it('an output format the input cannot become is refused before any work, with one line', async () => {
    for (const [out, why] of [['x.pt', "unknown output format '.pt'"], ['x.safetensors', 'safetensors output needs a safetensors input']]) {
      const r = await runCli(['compress', MODEL, '-r', twoPasses, '-o', join(tmp.dir, out)]);
      expect(r.code).toBe(2);
      expect(r.err.trim().split('\n')).toHaveLength(1);
      expect(r.err).toContain(why);
      expect(existsSync(join(tmp.dir, out))).toBe(false);
    }
  });

  it('--dry-run prints the plan and writes nothing', async () => {
    const out = join(tmp.dir, 'dry.onnx');
    const r = await runCli(['compress', MODEL, '-r', twoPasses, '-o', out, '--dry-run', '--json']);
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.out);
    expect(plan.passes.map((p: { layers: unknown[] }) => p.layers.length)).toEqual([20, 15]);
    expect(existsSync(out)).toBe(false);
  });

  it('a recipe with three mistakes reports all three with line numbers', async () => {
    const bad = recipe(
      'bad.yaml',
      `version: 1
passes:
  - pass: prune.magnitude
    params:
      sparsity: 1.5
      pattern: "5:4"
  - pass: prune.magnitud
`,
    );
    const r = await runCli(['compress', MODEL, '-r', bad, '-o', join(tmp.dir, 'bad.onnx')]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('3 errors');
    expect(r.err).toMatch(/bad\.yaml:5:\d+ passes\[0\]\.params\.sparsity/);
    expect(r.err).toMatch(/bad\.yaml:6:\d+ passes\[0\]\.params\.pattern/);
    expect(r.err).toMatch(/bad\.yaml:7:\d+ passes\[1\]\.pass/);
  });

  it('a pass whose targets match no layer is an error naming the targets', async () => {
    const none = recipe('none.yaml', 'version: 1\npasses:\n  - pass: prune.magnitude\n    targets: ["model.decoder.*"]\n');
    const r = await runCli(['compress', MODEL, '-r', none, '-o', join(tmp.dir, 'none.onnx')]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('targets ["model.decoder.*"] matched no layer');
  });
});

/** Runs the built CLI as a child, kills it once the first pass's checkpoint is saved. */
function runUntilCheckpoint(args: string[], signal: NodeJS.Signals): Promise<number | null> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [HOLD_ENTRY, 'pass', '1', ...args, '--progress'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => {
      err += String(d);
      if (err.includes('pass 1/2 prune.magnitude done')) setTimeout(() => child.kill(signal), 300);
    });
    child.on('exit', (code, sig) => done(code ?? (sig === 'SIGKILL' ? null : -1)));
    child.on('error', fail);
  });
}

describe('interrupted runs', () => {
  it('kill -9 after a pass leaves no output; --resume finishes with the same bytes as a clean run', async () => {
    const clean = join(tmp.dir, 'clean.onnx');
    expect((await runCli(['compress', MODEL, '-r', twoPasses, '-o', clean])).code).toBe(0);
    const out = join(tmp.dir, 'killed.onnx');
    await runUntilCheckpoint(['compress', MODEL, '-r', twoPasses, '-o', out], 'SIGKILL');
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(join(tmp.dir, '.pare-work')).length).toBe(1);
    const r = await runCli(['compress', MODEL, '-r', twoPasses, '-o', out, '--resume', '--progress']);
    expect(r.code).toBe(0);
    expect(r.err).toContain('resuming after pass 1/2');
    expect(readFileSync(out).equals(readFileSync(clean))).toBe(true);
  });

  it('SIGINT exits 130 and leaves neither output nor temp files', async () => {
    const out = join(tmp.dir, 'interrupted.onnx');
    const code = await runUntilCheckpoint(['compress', MODEL, '-r', twoPasses, '-o', out], 'SIGINT');
    expect(code).toBe(130);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(tmp.dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('safetensors in and out', () => {
  const ST = join(ROOT, 'fixtures/stories260K/model.safetensors');
  it('compress a safetensors checkpoint back to safetensors + config.json; it reloads with the pruned weights', async () => {
    const out = join(tmp.dir, 'hf-out/model.safetensors');
    const r = await runCli(['compress', ST, '-r', twoPasses, '-o', out, '--mkdir']);
    expect(r.code, r.err).toBe(0);
    expect(existsSync(join(tmp.dir, 'hf-out/config.json'))).toBe(true);
    const { openSafetensors } = await import('../../src/model/safetensors.js');
    const st = openSafetensors(out);
    const q = new Float32Array(st.read('model.layers.1.self_attn.q_proj.weight').buffer);
    expect(zeroFraction(q)).toBeCloseTo(0.3, 2);
    st.close();
    // the same recipe on the ONNX export gives the same function
    const onnxOut = join(tmp.dir, 'hf-out.onnx');
    expect((await runCli(['compress', MODEL, '-r', twoPasses, '-o', onnxOut])).code).toBe(0);
    const a = await ort.InferenceSession.create(onnxOut);
    const { loadModel } = await import('../../src/model/load.js');
    const { sessionFromModel } = await import('../../src/runtime/ort.js');
    const b = await sessionFromModel(loadModel(out));
    const la = (await a.run(decoderFeeds(a, [1, 400, 33, 7], 1, 4))).logits!.data as Float32Array;
    const lb = (await b.run(decoderFeeds(b, [1, 400, 33, 7], 1, 4))).logits!.data as Float32Array;
    let num = 0;
    let den = 0;
    for (let i = 0; i < la.length; i++) [num, den] = [num + (la[i]! - lb[i]!) ** 2, den + la[i]! ** 2];
    expect(Math.sqrt(num / den)).toBeLessThan(1e-5);
  });

  it('a factored result cannot be written as safetensors: one-line error, no output', async () => {
    const q = recipe('svd.yaml', 'version: 1\npasses:\n  - pass: decompose.svd\n    targets: ["layers.*.mlp.*"]\n    params: { ratio: 0.3 }\n');
    const out = join(tmp.dir, 'q/model.safetensors');
    const r = await runCli(['compress', ST, '-r', q, '-o', out, '--mkdir']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('write the output as .onnx');
    expect(existsSync(out)).toBe(false);
  });
});
