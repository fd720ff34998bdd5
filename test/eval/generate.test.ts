import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GenerateReport } from '../../src/cli/generate.js';
import { generate, openCausalLm } from '../../src/eval/generate.js';
import { DataType } from '../../src/model/dtype.js';
import { readOnnx, writeOnnx } from '../../src/model/onnx-io.js';
import { FIXTURES as CARRIED, tempDir } from '../helpers.js';
import { runCli } from '../cli/run-cli.js';

const FIXTURES = resolve(__dirname, '../../fixtures');
const KV = join(FIXTURES, 'stories260K-kv/model.onnx');
const PLAIN = join(FIXTURES, 'stories260K/model.onnx');
const TOK = join(FIXTURES, 'stories260K/tok512.bin');
const PROMPT = 'Once upon a time, there was a dog';

async function json(args: string[]): Promise<GenerateReport> {
  const r = await runCli(['generate', ...args, '--tokenizer', TOK, '--threads', '1', '--json']);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out) as GenerateReport;
}

const tmp = tempDir('pare-generate-');
/** the KV fixture with layer 4's down_proj halved: a "compressed" model that drifts from the original */
const drifted = join(tmp.dir, 'drifted.onnx');
beforeAll(() => {
  const m = readOnnx(KV);
  const w = m.tensor('model.layers.4.mlp.down_proj.weight');
  const halved = new Float32Array(w.data.byteLength / 4);
  new Uint8Array(halved.buffer).set(w.data);
  for (let i = 0; i < halved.length; i++) halved[i]! *= 0.5;
  m.setInitializer({ name: 'model.layers.4.mlp.down_proj.weight', dataType: DataType.FLOAT, dims: w.dims, data: new Uint8Array(halved.buffer) });
  writeOnnx(m, drifted);
});
afterAll(() => tmp.cleanup());

describe('pare generate', () => {
  it('greedy: the KV model (cache) and the plain model (re-run) print the same 48-token continuation', async () => {
    const kv = await json([KV, '--prompt', PROMPT, '--max-new-tokens', '48']);
    const plain = await json([PLAIN, '--prompt', PROMPT, '--max-new-tokens', '48']);
    expect(kv.model.cache).toBe(true);
    expect(plain.model.cache).toBe(false);
    expect(kv.model.tokens).toHaveLength(48);
    expect(kv.model.stop).toBe('max_new_tokens');
    expect(kv.model.tokens).toEqual(plain.model.tokens);
    expect(kv.model.text).toBe(plain.model.text);
    expect(kv.model.text.startsWith(`${PROMPT}`)).toBe(true);
    expect(kv.model.text.length).toBeGreaterThan(PROMPT.length + 60);
    // the text form: header, the text, the speed line
    const r = await runCli(['generate', KV, '--prompt', PROMPT, '--tokenizer', TOK, '--max-new-tokens', '48', '--threads', '1']);
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toBe(`${KV}  (KV cache, greedy)`);
    expect(r.out).toContain(kv.model.text);
    expect(kv.prompt.tokens).toHaveLength(11);
    expect(lines.at(-1)).toMatch(/^prefill 11 tokens in [\d.]+ ms \(\d+ tokens\/s\), decode 47 tokens in [\d.]+ ms \(\d+ tokens\/s\); stopped at 48 new tokens$/);
  });

  it('--json prints one document: prompt ids, new tokens, text, prefill and decode timings', async () => {
    const r = await json([KV, '--prompt', PROMPT, '--max-new-tokens', '20']);
    expect(r.prompt).toEqual({ text: PROMPT, tokens: r.prompt.tokens });
    expect(r.prompt.tokens[0]).toBe(1); // BOS
    expect(r.sampling).toEqual({ kind: 'greedy' });
    expect(r.max_new_tokens).toBe(20);
    expect(r.model).toMatchObject({ path: KV, cache: true, stop: 'max_new_tokens' });
    expect(r.model.tokens).toHaveLength(20);
    const t = r.model.timing;
    expect([t.prefill_tokens, t.decode_tokens]).toEqual([r.prompt.tokens.length, 19]);
    for (const v of [t.prefill_ms, t.decode_ms, t.prefill_tokens_per_s, t.decode_tokens_per_s!]) expect(v).toBeGreaterThan(0);
    expect(t.decode_tokens_per_s).toBeCloseTo(19 / (t.decode_ms / 1000), 6);
    expect(r.reference).toBeUndefined();
  });

  it('seeded sampling repeats exactly; another seed, or greedy, gives other tokens; the plain model samples the same', async () => {
    const args = ['--prompt', PROMPT, '--max-new-tokens', '32', '--temperature', '0.9', '--top-k', '40'];
    const a = await json([KV, ...args, '--seed', '7']);
    const b = await json([KV, ...args, '--seed', '7']);
    const c = await json([KV, ...args, '--seed', '8']);
    const plain = await json([PLAIN, ...args, '--seed', '7']);
    const greedy = await json([KV, '--prompt', PROMPT, '--max-new-tokens', '32']);
    expect(a.sampling).toEqual({ kind: 'sample', temperature: 0.9, topK: 40, seed: 7 });
    expect(b.model.tokens).toEqual(a.model.tokens);
    expect(plain.model.tokens).toEqual(a.model.tokens);
    expect(c.model.tokens).not.toEqual(a.model.tokens);
    expect(greedy.model.tokens).not.toEqual(a.model.tokens);
  });

  it('a .safetensors model is built with the KV cache and continues as the fixtures do', async () => {
    const st = await json([join(FIXTURES, 'stories260K/model.safetensors'), '--prompt', PROMPT, '--max-new-tokens', '32']);
    const kv = await json([KV, '--prompt', PROMPT, '--max-new-tokens', '32']);
    expect(st.model.cache).toBe(true);
    expect(st.model.tokens).toEqual(kv.model.tokens);
  });

  it('--reference prints both continuations and marks where they diverge; an identical reference says so', async () => {
    const r = await json([drifted, '--reference', PLAIN, '--prompt', PROMPT, '--max-new-tokens', '48']);
    const at = r.diverges_at!;
    expect(at).toBeGreaterThanOrEqual(0);
    expect(r.model.tokens.slice(0, at)).toEqual(r.reference!.tokens.slice(0, at));
    expect(r.model.tokens[at]).not.toBe(r.reference!.tokens[at]);
    expect(r.reference!.cache).toBe(false);
    const head = r.model.text.slice(0, r.model.diverges_at_char);
    expect(r.reference!.text.slice(0, r.reference!.diverges_at_char)).toBe(head);

    const text = await runCli(['generate', drifted, '--reference', PLAIN, '--prompt', PROMPT, '--tokenizer', TOK, '--max-new-tokens', '48', '--threads', '1']);
    expect(text.code).toBe(0);
    const lines = text.out.trimEnd().split('\n');
    expect(lines[0]).toBe(`model      ${drifted}  (KV cache, greedy)`);
    expect(lines[1]).toBe(`${head}‖${r.model.text.slice(head.length)}`);
    expect(lines[4]).toBe(`reference  ${PLAIN}  (no KV cache: the whole sequence re-run per token, greedy)`);
    expect(lines[5]).toBe(`${head}‖${r.reference!.text.slice(head.length)}`);
    expect(lines.at(-1)).toMatch(new RegExp(`^diverges at new token ${at + 1} of 48: model ${r.model.tokens[at]} ".*", reference ${r.reference!.tokens[at]} ".*" \\(‖ marks it in both texts\\)$`));

    const same = await runCli(['generate', KV, '--reference', PLAIN, '--prompt', PROMPT, '--tokenizer', TOK, '--max-new-tokens', '40', '--threads', '1']);
    expect(same.out.trimEnd().split('\n').at(-1)).toBe('identical: all 40 new tokens agree');
    expect(same.out).not.toContain('‖');
  });

  it('stops after EOS or BOS: stories260K ends a story with BOS', async () => {
    const lm = await openCausalLm(KV, 1);
    try {
      const prompt = [1, 403, 407, 261, 378];
      const free = await generate(lm, prompt, { maxNewTokens: 24, sampling: { kind: 'greedy' } });
      const eos = free.tokens[9]!;
      const stopped = await generate(lm, prompt, { maxNewTokens: 24, sampling: { kind: 'greedy' }, eosId: eos });
      expect(stopped.tokens).toEqual(free.tokens.slice(0, free.tokens.indexOf(eos) + 1));
      expect(stopped.stop).toBe('eos');
      const story = await generate(lm, prompt, { maxNewTokens: 600, sampling: { kind: 'greedy' }, eosId: 2, bosId: 1 });
      expect(story.stop).toBe('bos');
      expect(story.tokens.at(-1)).toBe(1);
      expect(story.tokens.slice(0, -1)).not.toContain(1);
    } finally {
      await lm.session.release();
    }
  });

  it('bad input is a one-line error and exit 2', async () => {
    const cases: [string[], RegExp][] = [
      [[KV, '--tokenizer', TOK], /required option '--prompt <text>'/],
      [[KV, '--prompt', 'x', '--tokenizer', join(FIXTURES, 'stories260K/tok512.model')], /tok512\.model: SentencePiece \.model files are not read directly/],
      [[KV, '--prompt', 'x', '--tokenizer', join(FIXTURES, 'stories260K/config.json')], /config\.json: not a Hugging Face tokenizer\.json/],
      [[CARRIED.mnist, '--prompt', 'x', '--tokenizer', TOK], /mnist-8\/model\.onnx: input 'Input3' is not token ids; pare generate needs a causal language model/],
      [[KV, '--prompt', 'x', '--tokenizer', TOK, '--top-k', '5'], /--top-k applies to sampling, which --temperature turns on/],
      [[KV, '--prompt', 'x', '--tokenizer', TOK, '--seed', '5'], /--seed applies to sampling/],
      [[KV, '--prompt', 'x', '--tokenizer', TOK, '--temperature', '0'], /--temperature expects a number > 0, got 0/],
      [[KV, '--prompt', 'x', '--tokenizer', TOK, '--max-new-tokens', '0'], /--max-new-tokens expects an integer ≥ 1, got 0/],
      [[join(tmp.dir, 'missing.onnx'), '--prompt', 'x', '--tokenizer', TOK], /missing\.onnx: no such model file/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(['generate', ...args]);
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(2);
      expect(r.err, args.join(' ')).toMatch(message);
      expect(r.err.trimEnd().split('\n'), r.err).toHaveLength(1);
      expect(r.out).toBe('');
    }
  });
});
