import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { readOnnx } from '../../src/model/onnx-io.js';
import { ModelProtoType } from '../../src/model/onnx-schema.js';
import { DataType } from '../../src/model/dtype.js';
import { RunInterrupted } from '../../src/pass/hooks.js';
import { expectOneLineError, hashes, ONE_PASS, pare, scratch, SMALL_EVAL, snapshot, TWO_PASSES } from './output-helpers.js';

/**
 * Issue 24 item 7 and the order of a run: outputs appear only when everything the command promises
 * is done. The model, what goes beside it and the report are moved into place together after
 * evaluation and budgets, so a run that fails late (exit 2) leaves no output that looks finished,
 * no temp file and no `.pare-work/`; a failed budget (exit 3) still writes everything; only an
 * interrupted run keeps its work folder, for --resume. (ENOSPC, the other late failure the issue
 * lists, is in output-fs-errors.test.ts; the config.json collision is refused up front in
 * output-clobber.test.ts.)
 */

const s = scratch('pare-order-');
afterAll(() => s.cleanup());
const out = join(s.dir, 'out.onnx');
const report = join(s.dir, 'report.json');

let before: Record<string, string>;
beforeEach(() => {
  before = snapshot(s.dir);
});
const nothingLeft = () => expect(snapshot(s.dir)).toEqual(before);
const added = () => Object.keys(snapshot(s.dir)).filter((f) => !(f in before)).sort();

describe('a run that fails leaves nothing behind', () => {
  it('missing eval data is refused before the first pass, naming the recipe field', async () => {
    const missing = join(s.dir, 'missing.txt');
    const recipe = s.recipe('missing-eval.yaml', `${ONE_PASS}${SMALL_EVAL(missing, s.tokenizer)}`);
    before = snapshot(s.dir);
    const inputs = hashes(s.model, recipe);
    const r = await pare(['compress', s.model, '-r', recipe, '-o', out, '--report', report]);
    expectOneLineError(r, 2, `${missing}: no such file (eval.data.path of the recipe)`);
    inputs.unchanged();
    nothingLeft();
  });

  it('eval data that fails to load after the passes: no model, no report, no .pare-work (the model is not moved into place before evaluation)', async () => {
    const badTokenizer = join(s.dir, 'bad-tok.bin');
    writeFileSync(badTokenizer, Buffer.alloc(64, 0xff));
    const recipe = s.recipe('bad-eval.yaml', `${TWO_PASSES}${SMALL_EVAL(s.text, badTokenizer)}`);
    before = snapshot(s.dir);
    const inputs = hashes(s.model, recipe, badTokenizer);
    const r = await pare(['compress', s.model, '-r', recipe, '-o', out, '--report', report]);
    expectOneLineError(r, 2, `${badTokenizer}: not a llama2.c tokenizer.bin`);
    inputs.unchanged();
    nothingLeft();
  });

  it('the same late failure after --mkdir made the output folders: the folders are removed too', async () => {
    const badTokenizer = join(s.dir, 'bad-tok.bin');
    const recipe = join(s.dir, 'bad-eval.yaml');
    const deep = join(s.dir, 'made/by/mkdir/out.onnx');
    const r = await pare(['compress', s.model, '-r', recipe, '-o', deep, '--report', join(s.dir, 'made/report.json'), '--mkdir']);
    expectOneLineError(r, 2, badTokenizer);
    nothingLeft();
  });

  it('an external-data location outside the model folder, found when the output is written', async () => {
    // an initializer no node reads, its bytes said to live in ../outside.data
    const dir = join(s.dir, 'traversal');
    const model = readOnnx(s.model);
    model.graph.initializer!.push({
      name: 'unused',
      dims: [4],
      data_type: DataType.FLOAT,
      data_location: 1,
      external_data: [
        { key: 'location', value: '../outside.data' },
        { key: 'offset', value: '0' },
        { key: 'length', value: '16' },
      ],
    });
    // encoded as it is: pare's writer would read the tensor and refuse the location itself
    mkdirSync(dir);
    writeFileSync(join(dir, 'model.onnx'), ModelProtoType.encode(model.proto as never).finish());
    writeFileSync(join(s.dir, 'outside.data'), Buffer.alloc(16));
    const recipe = s.recipe('one.yaml', ONE_PASS);
    before = snapshot(s.dir);
    const r = await pare(['compress', join(dir, 'model.onnx'), '-r', recipe, '-o', join(dir, 'out.onnx')]);
    expectOneLineError(r, 2, join(dir, 'model.onnx'));
    nothingLeft();
  });
});

describe('what a run that ends writes', () => {
  it('a failed budget (exit 3) still writes the model and the report, and removes the work folder', async () => {
    const recipe = s.recipe('budget.yaml', `${ONE_PASS}${SMALL_EVAL(s.text, s.tokenizer)}  budgets: { max_ppl_increase: 0% }\n`);
    before = snapshot(s.dir);
    const r = await pare(['compress', s.model, '-r', recipe, '-o', out, '--report', report]);
    expect(r.code, r.err).toBe(3);
    expect(r.err.trim().split('\n').every((l) => l.startsWith('budget failed: '))).toBe(true);
    expect(added()).toEqual(['out.onnx', 'report.json']);
    const json = JSON.parse(readFileSync(report, 'utf8'));
    expect(json.output.path).toBe(out);
    expect(json.measurements.model.path).toBe(out);
    expect(json.budgets.some((b: { ok: boolean }) => !b.ok)).toBe(true);
    rmSync(out);
    rmSync(report);
  });

  it('an interrupted run (a hook stopping it as a signal would) keeps only its work folder; --resume then finishes and removes it', async () => {
    const recipe = s.recipe('two.yaml', TWO_PASSES);
    before = snapshot(s.dir);
    const r = await pare(['compress', s.model, '-r', recipe, '-o', out, '--report', report], { afterPass: async () => Promise.reject(new RunInterrupted('held after pass 1')) });
    expectOneLineError(r, 130, 'pare: interrupted (held after pass 1); no output was written');
    expect(added().every((f) => f.startsWith('.pare-work/'))).toBe(true);
    expect(readdirSync(join(s.dir, '.pare-work'))).toHaveLength(1);
    expect(existsSync(out)).toBe(false);
    const resumed = await pare(['compress', s.model, '-r', recipe, '-o', out, '--report', report, '--resume']);
    expect(resumed.code, resumed.err).toBe(0);
    expect(JSON.parse(readFileSync(report, 'utf8')).passes).toHaveLength(2);
    expect(added()).toEqual(['out.onnx', 'report.json']);
    rmSync(out);
    rmSync(report);
  });
});
