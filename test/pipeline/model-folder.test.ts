import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HfTokenizer } from '../../src/data/hf-tokenizer.js';
import { Llama2cTokenizer } from '../../src/data/llama2c-tokenizer.js';
import { attrInt } from '../../src/model/graph.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { ort } from '../../src/runtime/ort.js';
import { sha256File } from '../../src/util/hash.js';
import { runCli } from '../cli/run-cli.js';
import { decoderFeeds } from '../decoder-feeds.js';
import { FIXTURES, fixturePath, tempDir } from '../helpers.js';

/**
 * `pare compress … -o DIR/` writes a Hugging Face / transformers.js model folder: the files, their
 * names per dtype, config.json sizes after structured passes, external data as transformers.js
 * fetches it, model folders as inputs, and the one-line refusals that leave nothing written.
 */

const ROOT = resolve(__dirname, '../..');
const SAFETENSORS = FIXTURES.storiesSafetensors;
const KV_ONNX = fixturePath('stories260K-kv/model.onnx');
const tmp = tempDir('pare-folder-');
afterAll(() => tmp.cleanup());

function recipe(name: string, text: string): string {
  const path = join(tmp.dir, name);
  writeFileSync(path, text);
  return path;
}
const fixtures = join(ROOT, 'fixtures');
const CALIBRATION = `calibration:
  data: { kind: text, path: ${fixtures}/tinystories/valid-head.txt, tokenizer: ${fixtures}/stories260K/tok512.bin, select: "1-10", segment: 128 }
  samples: 16
`;
const EVAL = `eval:
  data: { kind: text, path: ${fixtures}/tinystories/valid-head.txt, tokenizer: ${fixtures}/stories260K/tok512.bin, select: "11-46" }
`;
const convertOnly = recipe('convert.yaml', 'version: 1\npasses: []\noutput: { dtypes: [fp32, q4] }\n');

/** Every file under `dir`, relative, sorted. */
function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, prefix: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name), `${prefix}${e.name}/`);
      else out.push(`${prefix}${e.name}`);
    }
  };
  walk(dir, '');
  return out.sort();
}

async function logitsOf(path: string, ids: number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(path);
  try {
    const out = await session.run(decoderFeeds(session, ids, 1, ids.length));
    return out.logits!.data as Float32Array;
  } finally {
    await session.release();
  }
}

const PROMPT = [1, 403, 407, 261, 378];

describe('pare compress -o DIR/ (a transformers.js folder)', () => {
  const dir = join(tmp.dir, 'stories/');
  const reportPath = join(tmp.dir, 'stories.json');
  let report: {
    output: { path: string; format: string; files: string[]; sha256: string };
    variants: { dtype: string; path: string; files: string[]; passes: { id: string; params: Record<string, unknown>; layers: unknown[] }[]; warnings: string[]; measure: { size: { file_bytes: number } } }[];
    warnings: string[];
  };

  beforeAll(async () => {
    const r = await runCli(['compress', SAFETENSORS, '-r', convertOnly, '-o', dir, '--tokenizer', FIXTURES.tok512, '--report', reportPath, '--threads', '1']);
    expect(r.err).not.toContain('internal error');
    expect(r.code, r.err).toBe(0);
    report = JSON.parse(readFileSync(reportPath, 'utf8'));
  }, 60_000);

  it('holds config.json, generation_config.json, the tokenizer and one file per dtype, nothing else', () => {
    expect(listing(dir)).toEqual(['config.json', 'generation_config.json', 'onnx/model.onnx', 'onnx/model_q4.onnx', 'tokenizer.json', 'tokenizer_config.json']);
    expect(report.output.format).toBe('folder');
    expect(report.output.files.map((f) => f.slice(dir.length)).sort()).toEqual(listing(dir));
    // config.json unchanged by a run without structured passes: the source's bytes
    expect(sha256File(join(dir, 'config.json'))).toBe(sha256File(fixturePath('stories260K/config.json')));
    // llama2.c's run.c stops at BOS (the next story) as well as EOS
    expect(JSON.parse(readFileSync(join(dir, 'generation_config.json'), 'utf8'))).toEqual({ bos_token_id: 1, eos_token_id: [2, 1] });
    const tok = HfTokenizer.read(join(dir, 'tokenizer.json'));
    expect(tok.encode('Once upon a time', { bos: true })).toEqual(Llama2cTokenizer.read(FIXTURES.tok512).encode('Once upon a time', { bos: true }));
  });

  it('fp32 is the model as built; q4 is 4-bit MatMulNBits in blocks of 32 on every layer, the 172-wide down_proj in a padded last block', async () => {
    const [fp32, q4] = report.variants;
    expect([fp32!.dtype, q4!.dtype]).toEqual(['fp32', 'q4']);
    expect(fp32!.passes).toEqual([]);
    expect(q4!.passes.map((p) => p.id)).toEqual(['quantize.rtn']);
    expect(q4!.passes[0]!.params).toMatchObject({ bits: 4, granularity: 'group', group_size: 32, symmetric: true, format: 'matmulnbits' });
    // 5 blocks × 7 projections + lm_head
    expect(q4!.passes[0]!.layers).toHaveLength(36);
    expect(q4!.warnings.join('\n')).not.toMatch(/kept their weights/);
    const model = readOnnx(join(dir, 'onnx/model_q4.onnx'));
    const nbits = (model.graph.node ?? []).filter((n) => n.op_type === 'MatMulNBits');
    model.close();
    expect(nbits).toHaveLength(36);
    expect(nbits.every((n) => attrInt(n, 'bits', 0) === 4 && attrInt(n, 'block_size', 0) === 32)).toBe(true);
    expect(q4!.measure.size.file_bytes).toBeLessThan(0.55 * fp32!.measure.size.file_bytes); // measured 0.494×
    // the fp32 file runs as the checkpoint does; q4 stays close
    const ref = await logitsOf(KV_ONNX, PROMPT);
    const a = await logitsOf(join(dir, 'onnx/model.onnx'), PROMPT);
    const b = await logitsOf(join(dir, 'onnx/model_q4.onnx'), PROMPT);
    expect(Math.max(...a.map((x, i) => Math.abs(x - ref[i]!)))).toBeLessThan(1e-4);
    expect(Math.max(...b.map((x, i) => Math.abs(x - ref[i]!)))).toBeGreaterThan(0);
  });

  it('pare generate and pare eval read the folder: its fp32 model (or --dtype) and its tokenizer', async () => {
    const g = await runCli(['generate', dir, '--prompt', 'Once upon a time', '--max-new-tokens', '16', '--json', '--threads', '1']);
    expect(g.code, g.err).toBe(0);
    const viaFile = await runCli(['generate', KV_ONNX, '--prompt', 'Once upon a time', '--tokenizer', FIXTURES.tok512, '--max-new-tokens', '16', '--json', '--threads', '1']);
    expect(JSON.parse(g.out).model.tokens).toEqual(JSON.parse(viaFile.out).model.tokens);
    const q = await runCli(['generate', dir, '--dtype', 'q4', '--prompt', 'Once upon a time', '--max-new-tokens', '16', '--json', '--threads', '1']);
    expect(q.code, q.err).toBe(0);
    expect(JSON.parse(q.out).model.path).toBe(join(dir, 'onnx/model_q4.onnx'));
    const e = await runCli(['eval', dir, '--data', FIXTURES.validHead, '--no-latency', '--json', '--threads', '1']);
    expect(e.code, e.err).toBe(0);
    // the measured baseline of stories260K: NLL 1.2229, perplexity 3.397
    expect(JSON.parse(e.out).measurements.model.quality.perplexity).toBeCloseTo(3.397, 3);
  }, 60_000);

  it('a model folder as input: its fp32 model is compressed, its tokenizer and configs carried over byte for byte', async () => {
    const out = join(tmp.dir, 'from-folder/');
    const r = await runCli(['compress', dir, '-r', recipe('no-passes.yaml', 'version: 1\npasses: []\n'), '-o', out, '--dtypes', 'q8', '--json', '--threads', '1']);
    expect(r.code, r.err).toBe(0);
    const json = JSON.parse(r.out);
    expect(json.input.path).toBe(join(dir, 'onnx/model.onnx'));
    expect(listing(out)).toEqual(['config.json', 'generation_config.json', 'onnx/model_quantized.onnx', 'tokenizer.json', 'tokenizer_config.json']);
    for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json']) expect(sha256File(join(out, f)), f).toBe(sha256File(join(dir, f)));
    const model = readOnnx(join(out, 'onnx/model_quantized.onnx'));
    const dq = (model.graph.node ?? []).filter((n) => n.op_type === 'DequantizeLinear');
    model.close();
    expect(dq).toHaveLength(36);
  }, 60_000);
});

describe('model folder sizes and storage', () => {
  it('config.json follows structured passes: a dropped block, fewer heads, a narrower MLP; transformers.js-sized KV inputs', async () => {
    const out = join(tmp.dir, 'pruned/');
    const r = await runCli([
      'compress',
      SAFETENSORS,
      '-r',
      recipe('pruned.yaml', `version: 1\n${CALIBRATION}passes:\n  - pass: prune.layers\n    params: { count: 1 }\n  - pass: prune.heads\n    targets: ["layers.*.self_attn.*"]\n    params: { sparsity: 0.25, importance: weight }\n  - pass: prune.channels\n    params: { sparsity: 0.25, importance: weight }\n`),
      '-o',
      out,
      '--tokenizer',
      FIXTURES.tok512,
      '--threads',
      '1',
    ]);
    expect(r.code, r.err).toBe(0);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    const source = JSON.parse(readFileSync(fixturePath('stories260K/config.json'), 'utf8'));
    // one of 4 KV groups (2 query heads each) goes; the heads keep their size, which no longer divides hidden_size evenly
    expect(config).toEqual({ ...source, num_hidden_layers: 4, num_attention_heads: 6, num_key_value_heads: 3, head_dim: 8, intermediate_size: config.intermediate_size });
    expect(config.intermediate_size).toBeLessThan(172);
    const session = await ort.InferenceSession.create(join(out, 'onnx/model.onnx'));
    const past = session.inputMetadata.filter((m) => m.name.startsWith('past_key_values.'));
    expect(past).toHaveLength(2 * config.num_hidden_layers);
    expect(past.every((m) => m.isTensor && m.shape[1] === config.num_key_value_heads && m.shape[3] === config.head_dim)).toBe(true);
    const gate = readOnnx(join(out, 'onnx/model.onnx'));
    const widths = new Set((gate.graph.initializer ?? []).filter((t) => /mlp\.gate_proj/.test(t.name ?? '')).map((t) => Number(t.dims![0])));
    gate.close();
    expect([...widths]).toEqual([config.intermediate_size]);
    await session.release();
  }, 60_000);

  it('output.external_data: every file with its model{suffix}.onnx_data beside it, named in transformers.js_config', async () => {
    const out = join(tmp.dir, 'external/');
    const r = await runCli(['compress', KV_ONNX, '-r', recipe('ext.yaml', 'version: 1\npasses: []\noutput: { external_data: true, dtypes: [fp32, q4] }\n'), '-o', out, '--tokenizer', FIXTURES.tok512, '--threads', '1']);
    expect(r.code, r.err).toBe(0);
    expect(listing(out).filter((f) => f.startsWith('onnx/'))).toEqual(['onnx/model.onnx', 'onnx/model.onnx_data', 'onnx/model_q4.onnx', 'onnx/model_q4.onnx_data']);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(config['transformers.js_config']).toEqual({ use_external_data_format: { 'model.onnx': 1, 'model_q4.onnx': 1 } });
    const model = readOnnx(join(out, 'onnx/model_q4.onnx'));
    const locations = new Set((model.graph.initializer ?? []).flatMap((t) => (t.external_data ?? []).filter((e) => e.key === 'location').map((e) => e.value)));
    model.close();
    expect([...locations]).toEqual(['model_q4.onnx_data']);
    const a = await logitsOf(join(out, 'onnx/model.onnx'), PROMPT);
    const ref = await logitsOf(KV_ONNX, PROMPT);
    expect(a).toEqual(ref);
  }, 60_000);

  it('without --dtypes one file, the model as the recipe leaves it, named by the dtype the recipe makes; GPTQ when q4 has calibration', async () => {
    const out = join(tmp.dir, 'gptq/');
    const gptq = recipe('gptq.yaml', `version: 1\n${CALIBRATION}${EVAL}passes:\n  - pass: quantize.gptq\n    targets: ["layers.*.self_attn.*"]\n    params: { bits: 4, granularity: group, group_size: 32, format: matmulnbits }\n`);
    const r = await runCli(['compress', KV_ONNX, '-r', gptq, '-o', out, '--tokenizer', FIXTURES.tok512, '--json', '--threads', '1']);
    expect(r.code, r.err).toBe(0);
    expect(listing(out).filter((f) => f.startsWith('onnx/'))).toEqual(['onnx/model_q4.onnx']);
    const json = JSON.parse(r.out);
    expect(json.variants.map((v: { dtype: string; passes: unknown[] }) => [v.dtype, v.passes.length])).toEqual([['q4', 0]]);
    expect(json.measurements.model.path).toBe(join(out, 'onnx/model_q4.onnx'));
    expect(json.variants[0].measure.quality.perplexity).toBe(json.measurements.model.quality.perplexity);
    expect(json.measurements.model.quality.perplexity).toBeLessThan(1.1 * json.measurements.reference.quality.perplexity);

    const cal = join(tmp.dir, 'cal-q4/');
    // every dtype's file is held to the budgets: fp32 meets a 0 % perplexity budget, q4 does not (exit 3)
    const budget = `${EVAL}  budgets: { max_ppl_increase: 0% }\n`;
    const c = await runCli(['compress', KV_ONNX, '-r', recipe('cal.yaml', `version: 1\n${CALIBRATION}${budget}passes: []\noutput: { dtypes: [fp32, q4] }\n`), '-o', cal, '--tokenizer', FIXTURES.tok512, '--json', '--threads', '1']);
    expect(c.code, c.err).toBe(3);
    const cj = JSON.parse(c.out);
    expect(cj.variants[1].passes.map((p: { id: string; layers: unknown[] }) => [p.id, p.layers.length])).toEqual([['quantize.gptq', 36]]);
    expect(cj.budgets.map((b: { dtype: string; ok: boolean }) => [b.dtype, b.ok])).toEqual([['fp32', true], ['q4', false]]);
    expect(c.err).toMatch(/budget failed: q4: max_ppl_increase 0%/);
  }, 120_000);
});

describe('model folder refusals: one line, exit 2, nothing written', () => {
  const refuse = async (args: string[], pattern: RegExp, out?: string) => {
    const r = await runCli(['compress', ...args, '--threads', '1']);
    expect(r.err).not.toContain('internal error');
    expect(r.code, r.err).toBe(2);
    // progress lines go to stderr too; the error is one line
    const errors = r.err.split('\n').filter((l) => l.startsWith('pare: '));
    expect(errors, r.err).toHaveLength(1);
    expect(errors[0]).toMatch(pattern);
    if (out) expect(existsSync(out) ? listing(out) : []).toEqual([]);
  };

  it('an ONNX input with no config.json beside it, unless --config names one', async () => {
    const lone = join(tmp.dir, 'lone');
    mkdirSync(lone);
    copyFileSync(KV_ONNX, join(lone, 'model.onnx'));
    const out = join(tmp.dir, 'lone-out/');
    await refuse([join(lone, 'model.onnx'), '-r', convertOnly, '-o', out, '--tokenizer', FIXTURES.tok512], /needs the model's config\.json .* pass --config FILE/, out);
    const r = await runCli(['compress', join(lone, 'model.onnx'), '-r', convertOnly, '-o', out, '--tokenizer', FIXTURES.tok512, '--config', fixturePath('stories260K-kv/config.json'), '--threads', '1']);
    expect(r.code, r.err).toBe(0);
  }, 60_000);

  it('no tokenizer, no KV cache, a file output with --dtypes, an output folder holding the input', async () => {
    const out = join(tmp.dir, 'refused/');
    await refuse([KV_ONNX, '-r', convertOnly, '-o', out], /needs the tokenizer .* pass --tokenizer/, out);
    await refuse([FIXTURES.stories, '-r', convertOnly, '-o', out, '--tokenizer', FIXTURES.tok512], /transformers\.js decodes with the KV cache/, out);
    await refuse([KV_ONNX, '-r', convertOnly, '-o', join(tmp.dir, 'x.onnx')], /output\.dtypes names the files of a model folder; write -o DIR\//);
    await refuse([KV_ONNX, '-r', join(ROOT, 'recipes/magnitude-50.yaml'), '-o', join(tmp.dir, 'y.onnx'), '--dtypes', 'fp32'], /--dtypes names the files of a model folder/);
    await refuse([KV_ONNX, '-r', convertOnly, '-o', fixturePath('stories260K-kv/'), '--tokenizer', FIXTURES.tok512], /would be written over the input/);
    await refuse([KV_ONNX, '-r', convertOnly, '-o', join(tmp.dir, 'z.onnx/')], /a folder named like a model file is ambiguous/);
  });

  it('a fp32 file from a recipe that quantizes, and 4-bit from a base that holds 8-bit weights', async () => {
    const out = join(tmp.dir, 'refused-2/');
    await refuse([KV_ONNX, '-r', join(ROOT, 'recipes/gptq-4bit.yaml'), '-o', out, '--tokenizer', FIXTURES.tok512, '--dtypes', 'fp32,q4'], /output\.dtypes fp32: passes\[0\] quantize\.gptq leaves quantized weights/, out);
    // the input itself holds 8-bit weights: told from the model once the (no) passes ran, before anything is written
    const q8 = join(tmp.dir, 'q8-input');
    mkdirSync(q8);
    const int8 = recipe('int8.yaml', 'version: 1\npasses:\n  - pass: quantize.rtn\n    params: { bits: 8 }\n');
    const made = await runCli(['compress', KV_ONNX, '-r', int8, '-o', join(q8, 'model.onnx')]);
    expect(made.code, made.err).toBe(0);
    copyFileSync(fixturePath('stories260K-kv/config.json'), join(q8, 'config.json'));
    await refuse([join(q8, 'model.onnx'), '-r', convertOnly, '-o', out, '--tokenizer', FIXTURES.tok512], /output\.dtypes fp32: the model after the recipe's passes holds 8-bit weights/, out);
  }, 60_000);

  it('a recipe with no passes converts only: without dtypes to make there is nothing to do', async () => {
    const empty = recipe('empty.yaml', 'version: 1\npasses: []\n');
    await refuse([KV_ONNX, '-r', empty, '-o', join(tmp.dir, 'e.onnx')], /passes is empty and no dtypes are asked for, so there is nothing to do/);
    await refuse([KV_ONNX, '-r', empty, '-o', join(tmp.dir, 'e/'), '--tokenizer', FIXTURES.tok512], /passes is empty and no dtypes are asked for/, join(tmp.dir, 'e/'));
  });

  it('a run that fails while converting leaves nothing: no file under its name, no staging folder, no folder it made', async () => {
    const out = join(tmp.dir, 'failing/');
    // the calibration data is read when q4's GPTQ first needs it, after fp32 is staged
    const missing = recipe('missing-data.yaml', `version: 1\n${CALIBRATION.replace('valid-head.txt', 'absent.txt')}passes: []\noutput: { dtypes: [fp32, q4] }\n`);
    await refuse([KV_ONNX, '-r', missing, '-o', out, '--tokenizer', FIXTURES.tok512], /absent\.txt/);
    expect(existsSync(out)).toBe(false);
    // into an existing folder: what was there stays, nothing is added
    const kept = join(tmp.dir, 'kept');
    mkdirSync(kept);
    writeFileSync(join(kept, 'README.md'), 'mine');
    await refuse([KV_ONNX, '-r', missing, '-o', kept, '--tokenizer', FIXTURES.tok512], /absent\.txt/);
    expect(listing(kept)).toEqual(['README.md']);
    const onnxFile = join(tmp.dir, 'onnx-file');
    mkdirSync(onnxFile);
    writeFileSync(join(onnxFile, 'onnx'), '');
    await refuse([KV_ONNX, '-r', convertOnly, '-o', onnxFile, '--tokenizer', FIXTURES.tok512], /onnx: is a file where the model folder needs a folder/);
  }, 60_000);

  it('--dry-run lists the folder and writes nothing', async () => {
    const out = join(tmp.dir, 'dry/');
    const r = await runCli(['compress', KV_ONNX, '-r', convertOnly, '-o', out, '--tokenizer', FIXTURES.tok512, '--dry-run']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('onnx/model_q4.onnx  q4: quantize.rtn');
    expect(r.out).toContain('tokenizer.json, tokenizer_config.json, generation_config.json, config.json');
    expect(existsSync(out)).toBe(false);
  });
});
