import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AutoModelForCausalLM, AutoTokenizer, env, pipeline, type Tensor } from '@huggingface/transformers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli/run-cli.js';
import { FIXTURES, tempDir } from '../helpers.js';

/**
 * The real client: transformers.js (@huggingface/transformers 4.3, on onnxruntime-node in Node)
 * loads the folder pare writes for stories260K, local files only, and its greedy continuation
 * equals `pare generate` on the same folder token for token, in every dtype (fp32, fp16, q8, q4,
 * q4f16): through
 * AutoModelForCausalLM.generate and through pipeline('text-generation').
 */

const ROOT = resolve(__dirname, '../..');
const tmp = tempDir('pare-tjs-');
afterAll(() => tmp.cleanup());

const DTYPES = ['fp32', 'fp16', 'q8', 'q4', 'q4f16'];
/** the second prompt's story ends (BOS) after 210 tokens: generation_config.json must stop there too */
const PROMPTS: [string, number][] = [
  ['Once upon a time', 48],
  ['The cat', 256],
];

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

interface PareGeneration {
  prompt: { tokens: number[] };
  model: { tokens: number[]; text: string; stop: string };
}

async function pareGenerate(dir: string, dtype: string, prompt: string, maxNewTokens: number): Promise<PareGeneration> {
  const r = await runCli(['generate', dir, '--dtype', dtype, '--prompt', prompt, '--max-new-tokens', String(maxNewTokens), '--json', '--threads', '1']);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out);
}

/** transformers.js: tokenizer and model from the folder, greedy; the new tokens. */
async function tjsGenerate(dir: string, dtype: string, prompt: string, maxNewTokens: number): Promise<{ prompt: number[]; tokens: number[] }> {
  const tokenizer = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
  const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype: dtype as 'fp32', local_files_only: true });
  try {
    const inputs = tokenizer(prompt);
    const out = (await model.generate({ ...inputs, max_new_tokens: maxNewTokens, do_sample: false })) as Tensor;
    const ids = Array.from(out.data as BigInt64Array, Number);
    const promptIds = Array.from((inputs.input_ids as Tensor).data as BigInt64Array, Number);
    return { prompt: promptIds, tokens: ids.slice(promptIds.length) };
  } finally {
    await model.dispose();
  }
}

beforeAll(() => {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = '/';
});

describe('transformers.js runs the folder pare writes for stories260K', () => {
  const dir = join(tmp.dir, 'stories260K/');

  beforeAll(async () => {
    const r = await runCli([
      'compress',
      FIXTURES.storiesSafetensors,
      '-r',
      recipe('web.yaml', `version: 1\n${CALIBRATION}passes: []\n`),
      '-o',
      dir,
      '--dtypes',
      DTYPES.join(','),
      '--tokenizer',
      FIXTURES.tok512,
      '--threads',
      '1',
    ]);
    expect(r.code, r.err).toBe(0);
  }, 60_000);

  for (const dtype of ['fp32', 'fp16', 'q8', 'q4', 'q4f16']) {
    const name = `AutoModelForCausalLM.generate in ${dtype} equals pare generate token for token, stopping where it stops`;
    const test = async () => {
      const stops: string[] = [];
      for (const [prompt, max] of PROMPTS) {
        const pare = await pareGenerate(dir, dtype, prompt, max);
        const tjs = await tjsGenerate(dir, dtype, prompt, max);
        expect(tjs.prompt).toEqual(pare.prompt.tokens);
        expect(tjs.tokens).toEqual(pare.model.tokens);
        expect(tjs.tokens.length).toBeGreaterThanOrEqual(32);
        stops.push(pare.model.stop);
      }
      // a story ended (BOS), and transformers.js stopped there too
      if (dtype === 'fp32') expect(stops).toEqual(['max_new_tokens', 'bos']);
    };
    it(name, test, 60_000);
  }

  it("pipeline('text-generation') in fp32 and q4 gives pare generate's text", async () => {
    for (const dtype of ['fp32', 'q4']) {
      const generator = await pipeline('text-generation', dir, { dtype: dtype as 'fp32', local_files_only: true });
      try {
        const [prompt, max] = PROMPTS[0]!;
        const out = (await generator(prompt, { max_new_tokens: max, do_sample: false })) as { generated_text: string }[];
        const pare = await pareGenerate(dir, dtype, prompt, max);
        expect(out[0]!.generated_text).toBe(pare.model.text);
      } finally {
        await generator.dispose();
      }
    }
  }, 60_000);
});

it('transformers.js sizes its KV cache from the config.json pare writes after structured pruning', async () => {
  const dir = join(tmp.dir, 'pruned/');
  const pruned = recipe(
    'pruned.yaml',
    `version: 1\n${CALIBRATION}passes:\n  - pass: prune.layers\n    params: { count: 1 }\n  - pass: prune.heads\n    targets: ["layers.*.self_attn.*"]\n    params: { sparsity: 0.25, importance: weight }\n`,
  );
  const r = await runCli(['compress', FIXTURES.storiesSafetensors, '-r', pruned, '-o', dir, '--tokenizer', FIXTURES.tok512, '--threads', '1']);
  expect(r.code, r.err).toBe(0);
  const pare = await pareGenerate(dir, 'fp32', 'Once upon a time', 40);
  const tjs = await tjsGenerate(dir, 'fp32', 'Once upon a time', 40);
  expect(tjs.tokens).toEqual(pare.model.tokens);
}, 60_000);
