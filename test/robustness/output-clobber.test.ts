import { copyFileSync, linkSync, mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { readOnnx, writeOnnx } from '../../src/model/onnx-io.js';
import { fixturePath } from '../helpers.js';
import { expectOneLineError, hashes, ONE_PASS, pare, scratch, SMALL_EVAL, snapshot } from './output-helpers.js';

/**
 * Issue 24 item 1: no output of a run may be one of its inputs, however the path is spelled
 * (symlink, hard link, `..`), nor another output, nor inside the work folder the run deletes.
 * Each refusal is exit 2 before any pass, one line naming both paths; the inputs keep their
 * sha256 and the folder holds exactly what it held.
 */

const s = scratch('pare-clobber-');
afterAll(() => s.cleanup());
const recipe = s.recipe('r.yaml', `${ONE_PASS}${SMALL_EVAL(s.text, s.tokenizer)}`);
const out = join(s.dir, 'out.onnx');

let before: Record<string, string>;
beforeEach(() => {
  before = snapshot(s.dir);
});
const nothingWritten = () => expect(snapshot(s.dir)).toEqual(before);

async function refused(args: string[], ...mentions: (string | RegExp)[]): Promise<void> {
  const inputs = hashes(s.model, recipe, s.text, s.tokenizer);
  const r = await pare(args);
  expectOneLineError(r, 2, ...mentions);
  expect(r.err).not.toContain('pass 1/');
  inputs.unchanged();
  nothingWritten();
}

describe('compress: an output that is an input is refused before any pass', () => {
  it('--report naming the model', async () => {
    await refused(['compress', s.model, '-r', recipe, '-o', out, '--report', s.model], `${s.model}: the report (--report) would overwrite the input model`);
  });

  it('--report naming the model by another spelling (x/../model.onnx) names both paths', async () => {
    const spelled = join(s.dir, 'nowhere/../model.onnx');
    await refused(['compress', s.model, '-r', recipe, '-o', out, '--report', spelled], `${spelled}: the report (--report) would overwrite the input model (${s.model})`);
  });

  it('--report naming the recipe', async () => {
    await refused(['compress', s.model, '-r', recipe, '-o', out, '--report', recipe], `${recipe}: the report (--report) would overwrite the recipe (${recipe})`);
  });

  it('--report naming the recipe\'s eval text and tokenizer', async () => {
    await refused(['compress', s.model, '-r', recipe, '-o', out, '--report', s.text], `would overwrite eval.data.path of the recipe (${s.text})`);
    await refused(['compress', s.model, '-r', recipe, '-o', out, '--report', s.tokenizer], `would overwrite eval.data.tokenizer of the recipe (${s.tokenizer})`);
  });

  it('--report equal to -o, and to the external data file -o writes beside it', async () => {
    await refused(['compress', s.model, '-r', recipe, '-o', out, '--report', out], `${out}: the report (--report) names the same file as the output model (-o), ${out}`);
    await refused(['compress', s.model, '-r', recipe, '-o', out, '--report', `${out}.data`], `${out}.data: the report (--report) names the same file as the external data of the output model`);
  });

  it('-o as a symlink to the model, a hard link of it, or a path through ..', async () => {
    const sym = join(s.dir, 'sym.onnx');
    const hard = join(s.dir, 'hard.onnx');
    symlinkSync(s.model, sym);
    linkSync(s.model, hard);
    before = snapshot(s.dir);
    for (const o of [sym, hard, join(s.dir, 'x/../model.onnx')]) {
      await refused(['compress', s.model, '-r', recipe, '-o', o], `${o}: the output model (-o) would overwrite the input model (${s.model})`);
    }
  });

  it('-o whose external data file would be the input model\'s external data', async () => {
    const dir = join(s.dir, 'external');
    writeOnnx(readOnnx(s.model), join(dir, 'x.onnx'), { externalData: true });
    renameSync(join(dir, 'x.onnx'), join(dir, 'in.onnx')); // its tensors still name x.onnx.data
    before = snapshot(s.dir);
    const data = join(dir, 'x.onnx.data');
    const inputs = hashes(join(dir, 'in.onnx'), data);
    const r = await pare(['compress', join(dir, 'in.onnx'), '-r', recipe, '-o', join(dir, 'x.onnx')]);
    expectOneLineError(r, 2, `${data}: the external data of the output model would overwrite external data of the input model (${data})`);
    inputs.unchanged();
    nothingWritten();
    // and --report naming it
    const r2 = await pare(['compress', join(dir, 'in.onnx'), '-r', recipe, '-o', out, '--report', data]);
    expectOneLineError(r2, 2, `${data}: the report (--report) would overwrite external data of the input model`);
    inputs.unchanged();
    nothingWritten();
  });

  it('a safetensors output beside its input would replace the input\'s config.json', async () => {
    const dir = join(s.dir, 'hf');
    mkdirSync(dir);
    for (const f of ['model.safetensors', 'config.json']) copyFileSync(fixturePath('stories260K', f), join(dir, f));
    before = snapshot(s.dir);
    const inputs = hashes(join(dir, 'model.safetensors'), join(dir, 'config.json'));
    const r = await pare(['compress', join(dir, 'model.safetensors'), '-r', recipe, '-o', join(dir, 'small.safetensors')]);
    expectOneLineError(r, 2, `${join(dir, 'config.json')}: the config.json of the output model would overwrite the config.json of the input model`);
    inputs.unchanged();
    nothingWritten();
  });

  it('an input inside the work folder, and an output inside it, are refused', async () => {
    const work = join(s.dir, '.pare-work');
    mkdirSync(work);
    copyFileSync(s.model, join(work, 'kept.onnx'));
    before = snapshot(s.dir);
    const kept = hashes(join(work, 'kept.onnx'));
    const r = await pare(['compress', join(work, 'kept.onnx'), '-r', recipe, '-o', out]);
    expectOneLineError(r, 2, `${join(work, 'kept.onnx')}: the input model lies inside pare's work folder ${work}`);
    kept.unchanged();
    nothingWritten();
    await refused(['compress', s.model, '-r', recipe, '-o', out, '--report', join(work, 'r.json')], `${join(work, 'r.json')}: the report (--report) lies inside pare's work folder ${work}`);
  });

  it('a distill.kd teacher named as the report', async () => {
    const teacher = join(s.dir, 'teacher.onnx');
    copyFileSync(s.model, teacher);
    const kd = s.recipe('kd.yaml', `passes:\n  - pass: distill.kd\n    targets: ["layers.*"]\n    params: { steps: 1, teacher: teacher.onnx }\n`);
    before = snapshot(s.dir);
    const r = await pare(['compress', s.model, '-r', kd, '-o', out, '--report', teacher]);
    expectOneLineError(r, 2, `${teacher}: the report (--report) would overwrite passes[0].params.teacher of the recipe`);
    nothingWritten();
  });
});

describe('eval: -o that is an input is refused before anything is measured', () => {
  const data = ['--data', s.text, '--tokenizer', s.tokenizer, '--select', '1', '--max-length', '32', '--no-latency'];

  it('-o naming the model', async () => {
    await refused(['eval', s.model, ...data, '-o', s.model], `${s.model}: the report (-o) would overwrite the model (${s.model})`);
  });

  it('-o naming the data, the tokenizer or the reference model', async () => {
    await refused(['eval', s.model, ...data, '-o', s.text], `${s.text}: the report (-o) would overwrite the --data file`);
    await refused(['eval', s.model, ...data, '-o', s.tokenizer], `${s.tokenizer}: the report (-o) would overwrite the dataset's tokenizer`);
    const reference = join(s.dir, 'reference.onnx');
    copyFileSync(s.model, reference);
    before = snapshot(s.dir);
    await refused(['eval', s.model, ...data, '--reference', reference, '-o', reference], `${reference}: the report (-o) would overwrite the reference model (--reference)`);
  });

  it('-o naming a dataset spec file', async () => {
    const spec = join(s.dir, 'eval.yaml');
    writeFileSync(spec, 'kind: text\npath: valid-head.txt\ntokenizer: tok512.bin\nselect: "1"\nmax_length: 32\n');
    before = snapshot(s.dir);
    await refused(['eval', s.model, '--data', spec, '-o', spec], `${spec}: the report (-o) would overwrite the --data file`);
  });

  it('a report beside them is written, and the inputs are unchanged', async () => {
    const inputs = hashes(s.model, s.text, s.tokenizer);
    const report = join(s.dir, 'eval.json');
    const r = await pare(['eval', s.model, ...data, '-o', report]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toBe('');
    inputs.unchanged();
    expect(Object.keys(snapshot(s.dir)).filter((f) => !(f in before))).toEqual(['eval.json']);
  });
});
