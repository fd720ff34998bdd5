import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/model/dtype.js';
import { attrInt, GraphIndex } from '../../src/model/graph.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { encodeInline, readOnnx } from '../../src/model/onnx-io.js';
import { modelSize } from '../../src/model/size.js';
import { configurePass } from '../../src/pass/pass.js';
import { embeddings } from '../../src/quantize/embeddings.js';
import { allClose, FIXTURES } from '../helpers.js';
import { storiesLogits, storiesOutputs, storiesTokens } from './models.js';

const ROOT = resolve(__dirname, '../..');
const KV = join(ROOT, 'fixtures/stories260K-kv/model.onnx');
const ctx = { layers: [], seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' };
const GATHER_OUT = '/embed_tokens/Gather_output_0';

async function quantize(path: string, params: Record<string, unknown>): Promise<{ model: Model; result: Awaited<ReturnType<ReturnType<typeof configurePass>['apply']>> }> {
  const model = readOnnx(path);
  const result = await configurePass(embeddings, params).apply(model, ctx);
  return { model, result };
}

/**
 * The stored table dequantized in float64 from the bytes alone, by GatherBlockQuantized's
 * definition: codes [vocab, hidden·bits/8] (4-bit: low nibble first), one scale per block of a
 * row, zero points packed the same way per row or 2^(bits−1) when absent; value = (q − zero) · scale.
 */
function dequantizeStored(model: Model): { table: Float64Array; vocab: number; hidden: number } {
  const node = (model.graph.node ?? []).find((n) => n.op_type === 'GatherBlockQuantized')!;
  const bits = attrInt(node, 'bits', 4);
  const block = attrInt(node, 'block_size', 128);
  const codes = model.tensor(node.input![0]!);
  const scales = model.tensor(node.input![2]!);
  const zeros = node.input![3] ? model.tensor(node.input![3]) : undefined;
  const [vocab, packed] = codes.dims as [number, number];
  const hidden = (packed * 8) / bits;
  const blocks = hidden / block;
  const s = new Float32Array(scales.data.buffer.slice(scales.data.byteOffset, scales.data.byteOffset + scales.data.byteLength));
  const nibble = (bytes: Uint8Array, row: number, rowBytes: number, i: number) => (bits === 8 ? bytes[row * rowBytes + i]! : (bytes[row * rowBytes + (i >> 1)]! >> ((i & 1) * 4)) & 15);
  const table = new Float64Array(vocab * hidden);
  for (let r = 0; r < vocab; r++) {
    for (let c = 0; c < hidden; c++) {
      const k = Math.floor(c / block);
      const zero = zeros ? nibble(zeros.data, r, zeros.dims[1]!, k) : 2 ** (bits - 1);
      table[r * hidden + c] = (nibble(codes.data, r, packed, c) - zero) * s[r * blocks + k]!;
    }
  }
  return { table, vocab, hidden };
}

/** The KV fixture with its (tied) table replaced by `table`: the float model the quantized one should equal. */
function withTable(table: Float64Array): Model {
  const model = readOnnx(KV);
  const f = Float32Array.from(table);
  model.setInitializer({ name: 'model.embed_tokens.weight', dataType: DataType.FLOAT, dims: [512, 64], data: new Uint8Array(f.buffer) });
  return model;
}

const TOKENS = { batch: 1, seq: 48, seed: 11 };
const IDS = storiesTokens(TOKENS);

describe('quantize.embeddings', () => {
  const cases: [string, Record<string, unknown>, number][] = [
    ['4-bit blocks of 32, symmetric', { bits: 4, block_size: 32 }, 512 * 32 + 512 * 2 * 4],
    ['4-bit blocks of 16, asymmetric', { bits: 4, block_size: 16, symmetric: false }, 512 * 32 + 512 * 4 * 4 + 512 * 2],
    ['8-bit blocks of 64, symmetric', { bits: 8, block_size: 64 }, 512 * 64 + 512 * 1 * 4],
    ['8-bit blocks of 32, asymmetric', { bits: 8, block_size: 32, symmetric: false }, 512 * 64 + 512 * 2 * 4 + 512 * 2],
  ];
  for (const [label, params, bytes] of cases) {
    it(`${label}: the gathered rows are the float64-dequantized table exactly; logits equal the model with that table`, async () => {
      const { model, result } = await quantize(KV, params);
      const { table } = dequantizeStored(model);
      const got = await storiesOutputs(model, [GATHER_OUT, 'logits'], TOKENS);
      const want = await storiesOutputs(withTable(table), [GATHER_OUT, 'logits'], TOKENS);
      // rows: (q − zero) · scale rounded once to float32, as GatherBlockQuantized computes it
      const rows = new Float64Array(IDS.length * 64);
      IDS.forEach((id, t) => rows.set(table.subarray(Number(id) * 64, Number(id) * 64 + 64), t * 64));
      expect(Array.from(got[GATHER_OUT]!)).toEqual(Array.from(Float32Array.from(rows)));
      // the tied head is MatMulNBits over the same codes, against MatMul over the dequantized table
      const c = allClose(got.logits!, want.logits!, 1e-5, 1e-5);
      expect(c.ok, c.worst).toBe(true);
      expect(c.relFro).toBeLessThan(1e-6); // measured 0 (MatMulNBits at accuracy_level 0 sums as MatMul does here)
      expect(result.layers[0]!.bytes_after).toBe(bytes);
      expect(result.layers[0]!.bytes_before).toBe(512 * 64 * 4);
    });
  }

  it('the tied head reads the same codes through a Reshape: the float table leaves the file', async () => {
    const { model, result } = await quantize(KV, { bits: 4, block_size: 32 });
    const nodes = model.graph.node ?? [];
    const gbq = nodes.filter((n) => n.op_type === 'GatherBlockQuantized');
    const mnb = nodes.filter((n) => n.op_type === 'MatMulNBits');
    expect(gbq).toHaveLength(1);
    expect(mnb).toHaveLength(1);
    const index = new GraphIndex(model.graph);
    const reshape = index.producer.get(mnb[0]!.input![1]!)!;
    expect(reshape.op_type).toBe('Reshape');
    expect(reshape.input![0]).toBe(gbq[0]!.input![0]);
    expect(mnb[0]!.input![2]).toBe(gbq[0]!.input![2]);
    expect([attrInt(mnb[0]!, 'K', 0), attrInt(mnb[0]!, 'N', 0), attrInt(mnb[0]!, 'bits', 0), attrInt(mnb[0]!, 'block_size', 0)]).toEqual([64, 512, 4, 32]);
    expect(model.hasInitializer('model.embed_tokens.weight')).toBe(false);
    expect(linears(model).some((l) => l.name === 'lm_head')).toBe(false);
    expect(result.layers.map((l) => [l.name, l.bytes_after])).toEqual([
      ['model.embed_tokens', 512 * 32 + 512 * 2 * 4],
      ['lm_head', 0],
    ]);
    expect(result.summary?.head).toMatch(/^tied: lm_head/);
    // parameters count the codes as the values they hold; the file loses 128 KiB − 20 KiB
    expect(modelSize(model).params).toBe(modelSize(readOnnx(KV)).params);
    expect(encodeInline(readOnnx(KV)).byteLength - encodeInline(model).byteLength).toBeGreaterThan(512 * 64 * 4 - 512 * 40 - 1024);
  });

  it('an untied head keeps its own weight and the summary says so', async () => {
    const { model, result } = await quantize(FIXTURES.stories, { bits: 8, block_size: 32 });
    expect(result.layers.map((l) => l.name)).toEqual(['model.embed_tokens']);
    expect(result.summary?.head).toBe("untied: 'lm_head' keeps its own weight (quantize it with quantize.rtn or quantize.gptq)");
    expect(linears(model).find((l) => l.name === 'lm_head')?.node.op_type).toBe('MatMul');
    expect(Array.from(await storiesLogits(model, TOKENS)).every(Number.isFinite)).toBe(true);
  });

  it('a block size that does not divide the hidden width is a user error naming the param', async () => {
    await expect(quantize(KV, { bits: 4, block_size: 128 })).rejects.toThrow(/is 64 wide, not a multiple of passes\[0\]\.params\.block_size 128/);
    expect(embeddings.parse({ block_size: 48 }).success).toBe(false);
  });
});
