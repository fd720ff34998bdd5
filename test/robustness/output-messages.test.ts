import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { fixturePath } from '../helpers.js';
import { expectOneLineError, hashes, ONE_PASS, pare, pareChild, scratch, SMALL_EVAL, snapshot, TWO_PASSES } from './output-helpers.js';

/**
 * Issue 24 item 8: a failure's `pare:` line is the first thing on stderr (progress lines only on a
 * terminal or with --progress) and a user error is one line; a symlink loop is named as such; a
 * corrupt safetensors file is reported before its missing config.json; -o into a missing folder
 * is refused unless --mkdir asks for the folders.
 */

const s = scratch('pare-messages-');
afterAll(() => s.cleanup());
const out = join(s.dir, 'out.onnx');

let before: Record<string, string>;
beforeEach(() => {
  before = snapshot(s.dir);
});
const nothingLeft = () => expect(snapshot(s.dir)).toEqual(before);

describe('the pare: line comes first and is one line', () => {
  const badTokenizer = join(s.dir, 'bad-tok.bin');
  writeFileSync(badTokenizer, Buffer.alloc(64, 0xff));
  const late = s.recipe('late.yaml', `${ONE_PASS}${SMALL_EVAL(s.text, badTokenizer)}`);

  it('a run that fails after its passes prints only the pare: line on stderr (not a terminal)', () => {
    before = snapshot(s.dir);
    const r = pareChild(['compress', s.model, '-r', late, '-o', out], { cwd: s.dir });
    expectOneLineError(r, 2, `${badTokenizer}: not a llama2.c tokenizer.bin`);
    expect(r.out).toBe('');
    nothingLeft();
  });

  it('with --progress the progress lines come first and the pare: line is the last', () => {
    const r = pareChild(['compress', s.model, '-r', late, '-o', out, '--progress'], { cwd: s.dir });
    expect(r.code, r.err).toBe(2);
    const lines = r.err.trimEnd().split('\n');
    expect(lines.slice(0, -1).join('\n')).toContain('pass 1/1 prune.magnitude done');
    expect(lines.at(-1)).toMatch(new RegExp(`^pare: ${badTokenizer}: not a llama2.c tokenizer.bin`));
    nothingLeft();
  });

  it('a user error whose message spans lines is printed as one', async () => {
    const recipe = s.recipe('two.yaml', TWO_PASSES);
    before = snapshot(s.dir);
    const r = await pare(['compress', s.model, '-r', recipe, '-o', out], { afterPass: async () => Promise.reject(new UserError('first line\nsecond line')) });
    expectOneLineError(r, 2, 'pare: first line; second line');
    nothingLeft();
  });
});

describe('messages that name the real problem', () => {
  it('a symlink loop is reported as one by inspect, eval and compress', async () => {
    const a = join(s.dir, 'loop-a.onnx');
    const b = join(s.dir, 'loop-b.onnx');
    symlinkSync(b, a);
    symlinkSync(a, b);
    const recipe = s.recipe('loop.yaml', ONE_PASS);
    before = snapshot(s.dir);
    const loop = /loop-a\.onnx: (symbolic link loop; point it at the model file itself|cannot (read|open) (the model|the input model): too many levels of symbolic links \(a symlink loop\) \(ELOOP\); fix the link)$/;
    expectOneLineError(await pare(['inspect', a]), 2, loop);
    expectOneLineError(await pare(['eval', a, '--data', s.text, '--tokenizer', s.tokenizer]), 2, loop);
    expectOneLineError(await pare(['compress', a, '-r', recipe, '-o', out]), 2, loop);
    nothingLeft();
  });

  it('a corrupt safetensors file without config.json is reported as corrupt, by compress, eval and generate', async () => {
    const dir = join(s.dir, 'corrupt');
    mkdirSync(dir);
    const st = join(dir, 'model.safetensors');
    const bytes = readFileSync(fixturePath('stories260K/model.safetensors'));
    writeFileSync(st, bytes.subarray(0, 8 + Number(bytes.readBigUInt64LE(0)) + 100)); // the header survives, the tensors are cut off
    const recipe = s.recipe('st.yaml', ONE_PASS);
    before = snapshot(s.dir);
    const corrupt = `${st}: invalid safetensors header`;
    expectOneLineError(await pare(['compress', st, '-r', recipe, '-o', join(dir, 'out.onnx')]), 2, corrupt);
    expectOneLineError(await pare(['eval', st, '--data', s.text, '--tokenizer', s.tokenizer]), 2, corrupt);
    expectOneLineError(await pare(['generate', st, '--prompt', 'Once', '--tokenizer', s.tokenizer]), 2, corrupt);
    nothingLeft();
  });

  it('-o into a missing folder is refused, naming the folder; --mkdir creates it', async () => {
    const recipe = s.recipe('mkdir.yaml', ONE_PASS);
    before = snapshot(s.dir);
    const deep = join(s.dir, 'new/deep/out.onnx');
    const inputs = hashes(s.model, recipe);
    expectOneLineError(await pare(['compress', s.model, '-r', recipe, '-o', deep]), 2, `${deep}: folder ${join(s.dir, 'new/deep')} does not exist; create it or pass --mkdir`);
    expectOneLineError(await pare(['compress', s.model, '-r', recipe, '-o', out, '--report', join(s.dir, 'reports/r.json')]), 2, `folder ${join(s.dir, 'reports')} does not exist`);
    expectOneLineError(await pare(['eval', s.model, '--data', s.text, '--tokenizer', s.tokenizer, '-o', join(s.dir, 'reports/r.json')]), 2, `folder ${join(s.dir, 'reports')} does not exist`);
    nothingLeft();
    const r = await pare(['compress', s.model, '-r', recipe, '-o', deep, '--mkdir']);
    expect(r.code, r.err).toBe(0);
    inputs.unchanged();
    expect(readFileSync(deep).byteLength).toBeGreaterThan(0);
    rmSync(join(s.dir, 'new'), { recursive: true });
  });
});
