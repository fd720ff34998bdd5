import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate, openCausalLm, type CausalLm } from '../../src/eval/generate.js';
import { lmFeeds, modelIo, type ModelIo } from '../../src/model/io.js';
import { readOnnx, writeOnnx } from '../../src/model/onnx-io.js';
import { tempDir } from '../helpers.js';
import { runCli } from '../cli/run-cli.js';

/**
 * Issue #17's check: every pass on the Optimum-layout KV fixture gives the perplexity it gives on
 * the plain PyTorch export of the same model, keeps the KV-cache I/O, and decodes with the cache
 * exactly as by re-running the sequence.
 */
const ROOT = resolve(__dirname, '../..');
const PLAIN = join(ROOT, 'fixtures/stories260K/model.onnx');
const KV = join(ROOT, 'fixtures/stories260K-kv/model.onnx');
const TEXT = join(ROOT, 'fixtures/tinystories/valid-head.txt');
const TOK = join(ROOT, 'fixtures/stories260K/tok512.bin');
const tmp = tempDir('pare-kv-');
afterAll(() => tmp.cleanup());

const data = (select: string, extra = '') => `{ kind: text, path: ${TEXT}, tokenizer: ${TOK}, select: "${select}"${extra} }`;
const calibration = `calibration:\n  data: ${data('1-4', ', segment: 64')}\n  samples: 16\n`;
const evaluation = `eval:\n  data: ${data('11-22')}\n`;

const RECIPES: Record<string, string> = {
  sparsegpt: `${calibration}passes:\n  - pass: prune.sparsegpt\n    targets: ["layers.*"]\n    params: { sparsity: 0.5 }\n`,
  gptq: `${calibration}passes:\n  - pass: quantize.gptq\n    targets: ["layers.*"]\n    params: { bits: 4, granularity: channel }\n`,
  w8a8: `passes:\n  - pass: quantize.w8a8\n    targets: ["layers.*"]\n`,
  heads: `${calibration}passes:\n  - pass: prune.heads\n    targets: ["layers.*.self_attn.*"]\n    params: { sparsity: 0.25 }\n`,
  layers: `${calibration}passes:\n  - pass: prune.layers\n    targets: ["layers.*"]\n    params: { count: 1 }\n`,
  share: `${calibration}passes:\n  - pass: share.layers\n    targets: ["layers.*"]\n    params: { pairs: 1 }\n`,
  distill: `passes:\n  - pass: prune.magnitude\n    targets: ["layers.*"]\n    params: { sparsity: 0.5 }\n  - pass: distill.kd\n    targets: ["layers.*"]\n    params: { steps: 6, batch_size: 2, seq_len: 32, samples: 8, warmup: 1, start_token: 1, checkpoint_every: 0 }\n`,
};

interface Run {
  out: string;
  perplexity: number;
}

async function compress(model: string, name: string, recipe: string): Promise<Run> {
  const recipePath = join(tmp.dir, `${name}.yaml`);
  writeFileSync(recipePath, `version: 1\n${recipe}${evaluation}`);
  const out = join(tmp.dir, `${name}.onnx`);
  const report = join(tmp.dir, `${name}.json`);
  const r = await runCli(['compress', model, '-r', recipePath, '-o', out, '--report', report, '--threads', '1']);
  expect(r.code, r.err).toBe(0);
  return { out, perplexity: JSON.parse(readFileSync(report, 'utf8')).measurements.model.quality.perplexity };
}

/** Greedy tokens by re-running the whole sequence from an empty cache at every step, and the last step's logits. */
async function uncachedGreedy(lm: CausalLm, prompt: number[], steps: number): Promise<{ tokens: number[]; logits: Float32Array }> {
  const ids = [...prompt];
  let logits = new Float32Array();
  for (let s = 0; s < steps; s++) {
    const out = await lm.session.run(lmFeeds(lm.io, ids, 1, ids.length), [lm.io.outputName]);
    const all = out[lm.io.outputName]!.data as Float32Array;
    const vocab = all.length / ids.length;
    logits = all.slice((ids.length - 1) * vocab);
    ids.push(logits.indexOf(Math.max(...logits)));
  }
  return { tokens: ids.slice(prompt.length), logits };
}

function ioNames(io: ModelIo): string[] {
  return [io.inputName, io.attentionMask?.name, io.positionIds?.name, ...(io.kv?.layers ?? []).flatMap((l) => [l.pastKey, l.pastValue, l.presentKey, l.presentValue])].filter((x): x is string => !!x);
}

describe('KV-cache decoders through every pass', () => {
  const prompt = [1, 403, 407, 261, 378, 412, 282];
  const fixtureIo = modelIo(readOnnx(KV));

  it('pare eval gives the plain fixture perplexity, inline and with external data', async () => {
    const external = join(tmp.dir, 'external/model.onnx');
    writeOnnx(readOnnx(KV), external, { externalData: true, externalThreshold: 1024 });
    const ppl = async (model: string) => {
      const r = await runCli(['eval', model, '--data', join(ROOT, 'fixtures/tinystories/valid-head.data.yaml'), '--no-latency', '--json', '--threads', '1']);
      expect(r.code, r.err).toBe(0);
      return JSON.parse(r.out).measurements.model.quality.perplexity as number;
    };
    const plain = await ppl(PLAIN);
    expect(plain).toBeCloseTo(3.397, 3);
    expect(Math.abs((await ppl(KV)) / plain - 1)).toBeLessThan(1e-6); // measured 0
    expect(Math.abs((await ppl(external)) / plain - 1)).toBeLessThan(1e-6);
  });

  for (const [name, recipe] of Object.entries(RECIPES)) {
    it(`${name}: same perplexity as on the plain export, KV I/O kept, cached decoding = re-running`, async () => {
      const plain = await compress(PLAIN, `${name}-plain`, recipe);
      const kv = await compress(KV, `${name}-kv`, recipe);
      expect(Math.abs(kv.perplexity / plain.perplexity - 1), `${kv.perplexity} vs ${plain.perplexity}`).toBeLessThan(1e-4);

      const lm = await openCausalLm(kv.out, 1);
      try {
        const io = lm.io;
        expect(io.kv).toBeDefined();
        if (name === 'layers') {
          // one block fewer: its cache goes and the rest are renumbered 0..3
          expect(io.kv!.layers.map((l) => l.index)).toEqual([0, 1, 2, 3]);
          expect(ioNames(io)).toEqual(ioNames({ ...fixtureIo, kv: { ...fixtureIo.kv!, layers: fixtureIo.kv!.layers.slice(0, 4) } }));
        } else {
          expect(ioNames(io)).toEqual(ioNames(fixtureIo));
        }
        expect(io.kv!.layers.map((l) => l.heads)).toEqual(io.kv!.layers.map(() => (name === 'heads' ? 3 : 4)));
        const cached = await generate(lm, prompt, { maxNewTokens: 24, sampling: { kind: 'greedy' } });
        const uncached = await uncachedGreedy(lm, prompt, cached.tokens.length);
        expect(cached.cache).toBe(true);
        expect(cached.tokens).toEqual(uncached.tokens);
      } finally {
        await lm.session.release();
      }
    });
  }
});

describe('shipped recipes on every form of the model', () => {
  it('select the same layers in the plain export, the safetensors build and the Optimum-layout export', async () => {
    // a conversion-only recipe (web.yaml: passes: [], output.dtypes) selects no layers and writes a folder
    const recipes = readdirSync(join(ROOT, 'recipes')).filter((f) => f.endsWith('.yaml') && !/^passes: \[\]$/m.test(readFileSync(join(ROOT, 'recipes', f), 'utf8')));
    expect(recipes.length).toBeGreaterThan(10);
    for (const file of recipes) {
      const plans = [];
      for (const model of [PLAIN, join(ROOT, 'fixtures/stories260K/model.safetensors'), KV]) {
        const r = await runCli(['compress', model, '-r', join(ROOT, 'recipes', file), '-o', join(tmp.dir, 'dry.onnx'), '--dry-run', '--json']);
        expect(r.code, `${file} on ${model}: ${r.err}`).toBe(0);
        plans.push((JSON.parse(r.out).passes as { pass: string; layers: { name: string }[] }[]).map((p) => [p.pass, p.layers.map((l) => l.name)]));
      }
      expect(plans[1], `${file}: safetensors build`).toEqual(plans[0]);
      expect(plans[2], `${file}: KV-cache export`).toEqual(plans[0]);
    }
  });
});

describe('KV-cache bad input', () => {
  let base: ReturnType<typeof readOnnx>;
  beforeAll(() => {
    base = readOnnx(KV);
  });
  const broken = (edit: (m: ReturnType<typeof readOnnx>) => void): string => {
    const m = readOnnx(KV);
    edit(m);
    const path = join(tmp.dir, `broken-${Math.random().toString(36).slice(2)}.onnx`);
    writeOnnx(m, path);
    return path;
  };
  const evalFails = async (path: string, pattern: RegExp) => {
    const out = join(tmp.dir, 'never.json');
    const r = await runCli(['eval', path, '--data', join(ROOT, 'fixtures/tinystories/valid-head.data.yaml'), '--no-latency', '-o', out]);
    expect(r.code, r.err).toBe(2);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(r.err).toMatch(pattern);
    expect(() => readFileSync(out)).toThrow();
  };

  it('past and present names that do not pair up', async () => {
    expect(base.graph.output!.some((o) => o.name === 'present.2.value')).toBe(true);
    const path = broken((m) => {
      const o = m.graph.output!.find((x) => x.name === 'present.2.value')!;
      const producer = m.graph.node!.find((n) => n.output?.includes('present.2.value'))!;
      o.name = 'present.2.val';
      producer.output = producer.output!.map((x) => (x === 'present.2.value' ? 'present.2.val' : x));
    });
    await evalFails(path, /'past_key_values\.2\.key' has no partner: the KV cache needs output present\.2\.value/);
  });

  it('a past tensor whose head count disagrees with the attention it feeds', async () => {
    const path = broken((m) => {
      for (const v of m.graph.input!.filter((x) => x.name?.startsWith('past_key_values.1.'))) v.type!.tensor_type!.shape!.dim![1] = { dim_value: 2 };
    });
    await evalFails(path, /input 'past_key_values\.1\.key' declares 2 KV heads of size 8, but the attention it feeds .* computes 4 heads of size 8/);
  });

  it('a mask input of an unexpected dtype', async () => {
    const path = broken((m) => {
      m.graph.input!.find((x) => x.name === 'attention_mask')!.type!.tensor_type!.elem_type = 1;
    });
    await evalFails(path, /input 'attention_mask' is float32; pare fills masks of int64, int32 or bool/);
  });

  it('position_ids in a shape pare cannot fill', async () => {
    const path = broken((m) => {
      m.graph.input!.find((x) => x.name === 'position_ids')!.type!.tensor_type!.shape!.dim!.unshift({ dim_value: 3 });
    });
    await evalFails(path, /input 'position_ids' is int64\[3, \?, \?\]; pare fills position_ids as int64 or int32 \[batch, sequence\]/);
  });

  it('an input pare cannot fill is named', async () => {
    const path = broken((m) => {
      m.graph.input!.push({ name: 'token_type_ids', type: { tensor_type: { elem_type: 7, shape: { dim: [{ dim_param: 'b' }, { dim_param: 's' }] } } } });
    });
    await evalFails(path, /input 'token_type_ids' cannot be filled/);
  });
});
