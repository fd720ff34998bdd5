import { statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { Checkpoint } from '../../src/model/checkpoint.js';
import { Model } from '../../src/model/model.js';
import { RunInterrupted } from '../../src/pass/hooks.js';
import { compress, type CompressOptions } from '../../src/pipeline/compress.js';
import { createProgress } from '../../src/pipeline/progress.js';
import { WorkDir } from '../../src/pipeline/workdir.js';
import { sha256File } from '../../src/util/hash.js';
import { tempDir } from '../helpers.js';

/**
 * The compress path loads each checkpoint once (the input, then the output as written to the work
 * dir's staging folder, before it is moved into place) and closes
 * every model it opens exactly once: the checkpoints' models, the graphs built from a safetensors
 * source (its ONNX form, the write-back's reference graph) and a resumed work-dir checkpoint.
 * Counted by spies on Checkpoint.open, Checkpoint.buildGraph, WorkDir.loadCheckpoint and Model.close.
 */

const ROOT = resolve(__dirname, '../..');
const FIXTURE = join(ROOT, 'fixtures/stories260K');
const tmp = tempDir('pare-checkpoints-');
afterAll(() => tmp.cleanup());
afterEach(() => vi.restoreAllMocks());

function recipe(name: string, passes: string, evaluate: boolean): string {
  const path = join(tmp.dir, `${name}.yaml`);
  const data = `{ kind: text, path: ${join(ROOT, 'fixtures/tinystories/valid-head.txt')}, tokenizer: ${join(FIXTURE, 'tok512.bin')}, select: "1-2", max_length: 64 }`;
  writeFileSync(path, `version: 1\npasses:\n${passes}${evaluate ? `eval:\n  data: ${data}\n` : ''}`);
  return path;
}

const TWO_PASSES = `  - pass: prune.magnitude\n    targets: ["layers.*.self_attn.*"]\n    params: { sparsity: 0.3 }\n  - pass: prune.magnitude\n    targets: ["layers.*.mlp.*"]\n    params: { sparsity: 0.5 }\n`;

function spies() {
  return {
    opened: vi.spyOn(Checkpoint, 'open'),
    built: vi.spyOn(Checkpoint.prototype, 'buildGraph'),
    resumed: vi.spyOn(WorkDir.prototype, 'loadCheckpoint'),
    closed: vi.spyOn(Model.prototype, 'close'),
  };
}

/** Every model opened through the spies, each with how often it was closed. */
function closeCounts(s: ReturnType<typeof spies>): number[] {
  const models = [
    ...s.opened.mock.results.filter((r) => r.type === 'return').map((r) => (r.value as Checkpoint).model),
    ...s.built.mock.results.map((r) => r.value as Model),
    ...s.resumed.mock.results.map((r) => r.value as Model),
  ];
  return models.map((m) => s.closed.mock.contexts.filter((c) => c === m).length);
}

/** The output's path in the work dir's staging folder, where it is written and evaluated before it is moved into place. */
const stagedAs = (out: string) => expect.stringMatching(new RegExp(`/\\.pare-work/${basename(out).replace('.', '\\.')}-[0-9a-f]{16}/staged/${basename(out).replace('.', '\\.')}$`));

const run = (model: string, recipePath: string, output: string, extra: Partial<CompressOptions> = {}) =>
  compress({ model, recipe: recipePath, output, threads: 1, mkdir: true, progress: createProgress(() => {}, false), ...extra });

describe('one Checkpoint per file on the compress path', () => {
  it('ONNX in and out, with eval: input and output loaded once each, every model closed once', async () => {
    const s = spies();
    const input = join(FIXTURE, 'model.onnx');
    const out = join(tmp.dir, 'onnx/out.onnx');
    const r = await run(input, recipe('onnx', TWO_PASSES, true), out);
    expect(s.opened.mock.calls.map((c) => c[0])).toEqual([input, stagedAs(out)]);
    expect(closeCounts(s)).toEqual([1, 1]);
    expect(r.input.sha256).toBe(sha256File(input));
    expect(r.evaluation!.reference).toMatchObject({ path: input, sha256: sha256File(input) });
    expect(r.evaluation!.model).toMatchObject({ path: out, sha256: sha256File(out) });
    expect(r.evaluation!.model.size.nonzeros).toBeLessThan(r.evaluation!.reference!.size.nonzeros);
  });

  it('safetensors in and out, with eval: the measurements name the checkpoints (not their temporary ONNX forms) and every built graph is closed once', async () => {
    const s = spies();
    const input = join(FIXTURE, 'model.safetensors');
    const out = join(tmp.dir, 'st/out.safetensors');
    const r = await run(input, recipe('st', TWO_PASSES, true), out);
    expect(s.opened.mock.calls.map((c) => c[0])).toEqual([input, stagedAs(out)]);
    // write-back's reference graph, the input's and the output's ONNX forms
    expect(s.built).toHaveBeenCalledTimes(3);
    expect(closeCounts(s)).toEqual([1, 1, 1, 1, 1]);
    expect(r.evaluation!.reference).toMatchObject({ path: input, sha256: sha256File(input) });
    expect(r.evaluation!.reference!.size.file_bytes).toBe(statSync(input).size);
    expect(r.evaluation!.model).toMatchObject({ path: out, sha256: sha256File(out) });
    expect(r.evaluation!.model.size.file_bytes).toBe(r.output!.files.reduce((a, f) => a + statSync(f).size, 0));
  });

  it('a run stopped after a pass closes the input; --resume closes the work dir checkpoint it continues from', async () => {
    const input = join(FIXTURE, 'model.onnx');
    const out = join(tmp.dir, 'resume/out.onnx');
    const recipePath = recipe('resume', TWO_PASSES, false);
    let s = spies();
    const stop = new RunInterrupted('stopped after pass 1');
    await expect(run(input, recipePath, out, { hooks: { afterPass: async () => Promise.reject(stop) } })).rejects.toBe(stop);
    expect(closeCounts(s)).toEqual([1]);
    vi.restoreAllMocks();

    s = spies();
    const r = await run(input, recipePath, out, { resume: true });
    expect(r.resumedAfter).toBe(1);
    expect(s.resumed).toHaveBeenCalledTimes(1);
    expect(closeCounts(s)).toEqual([1, 1, 1]);
    expect(r.sizes!.reference).toMatchObject({ path: input, sha256: sha256File(input) });
    expect(r.sizes!.model).toMatchObject({ path: out, sha256: sha256File(out) });
  });
});
