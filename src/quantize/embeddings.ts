import { z } from 'zod';
import { UserError } from '../errors.js';
import { DataType, dtypeName } from '../model/dtype.js';
import { tokenEmbedding } from '../model/embedding.js';
import { gemmBiasVector } from '../model/gemm-epilogue.js';
import { attr, attrFloat, attrInt, GraphIndex, makeNode } from '../model/graph.js';
import { insertBefore, replaceNode } from '../model/graph-edit.js';
import { addConstant, removeUnused, uniqueInitializerName } from '../model/linear-weights.js';
import { linears, type LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { packUint4, toFloat32 } from '../model/pack.js';
import { definePass, onValidFields, type LayerStat } from '../pass/pass.js';
import { ensureOpset, MS_DOMAIN } from './emit.js';
import { dequantizeMatrix, quantizeMatrix, type QuantizedMatrix } from './grid.js';
import { squaredError } from './rtn.js';

/**
 * Quantized token embeddings: the table E [vocab, hidden] is stored as 4- or 8-bit codes in blocks of
 * `block_size` along hidden, one scale (and, asymmetric, one zero point) per block, and read by
 * com.microsoft.GatherBlockQuantized, which ONNX Runtime and onnxruntime-web's wasm backend run:
 *
 *   Gather(E, ids)            -> GatherBlockQuantized(codes, ids, scales, zero_points)
 *   MatMul(x, Transpose(E))   -> MatMulNBits(x, Reshape(codes), scales, zero_points)   tied lm_head
 *
 * Both dequantize exactly scale · (q − zero) in float. The codes are laid out as MatMulNBits reads a
 * weight [N = vocab, K = hidden] (4-bit codes packed low nibble first along hidden), so a tied head
 * reads the same bytes through a Reshape to [vocab, hidden / block, block · bits / 8]: the file holds
 * the table once. An untied head keeps its own weight (quantize.rtn or quantize.gptq quantize it).
 */

const EmbeddingParams = z
  .strictObject({
    bits: z.union([z.literal(4), z.literal(8)]).default(4).describe('bits per stored embedding value'),
    block_size: z.number().int().default(32).describe('values of a row sharing one scale: a power of two from 16 to 256 that divides hidden'),
    symmetric: z.boolean().default(true).describe('symmetric grid (zero point fixed at the middle) or asymmetric (min..max, zero points stored)'),
  })
  .superRefine((p, ctx) => {
    if (p.block_size < 16 || p.block_size > 256 || (p.block_size & (p.block_size - 1)) !== 0) {
      ctx.addIssue({ code: 'custom', path: ['block_size'], message: `GatherBlockQuantized and MatMulNBits need a power of two from 16 to 256, got ${p.block_size}` });
    }
  }, onValidFields);

/** The stored form: codes [vocab, hidden·bits/8], scales [vocab, blocks], zero points [vocab, ⌈blocks·bits/8⌉] when asymmetric. */
interface StoredTable {
  codes: string;
  scales: string;
  zeros?: string;
  bytes: number;
}

function storeTable(model: Model, base: string, m: QuantizedMatrix): StoredTable {
  const blocks = m.cols / m.groupSize;
  const pack = (values: Uint8Array) => (m.bits === 8 ? values.slice() : packUint4(values));
  const codes = uniqueInitializerName(model, `${base}_q${m.bits}`);
  model.setInitializer({ name: codes, dataType: DataType.UINT8, dims: [m.rows, (m.cols * m.bits) / 8], data: pack(m.q) });
  const scales = uniqueInitializerName(model, `${base}_scales`);
  model.setInitializer({ name: scales, dataType: DataType.FLOAT, dims: [m.rows, blocks], data: new Uint8Array(m.scales.buffer.slice(m.scales.byteOffset, m.scales.byteOffset + m.scales.byteLength)) });
  let bytes = (m.rows * m.cols * m.bits) / 8 + m.scales.byteLength;
  if (m.symmetric) return { codes, scales, bytes };
  const perRow = Math.ceil((blocks * m.bits) / 8);
  const zp = new Uint8Array(m.rows * perRow);
  for (let r = 0; r < m.rows; r++) zp.set(pack(m.zeros.subarray(r * blocks, (r + 1) * blocks)).subarray(0, perRow), r * perRow);
  const zeros = uniqueInitializerName(model, `${base}_zero_points`);
  model.setInitializer({ name: zeros, dataType: DataType.UINT8, dims: [m.rows, perRow], data: zp });
  bytes += zp.byteLength;
  return { codes, scales, zeros, bytes };
}

/** The layers whose weight is the table itself (a tied lm_head), in the forms MatMulNBits can replace. */
function tiedHeads(model: Model, table: string, vocab: number, hidden: number): { heads: LinearLayer[]; skipped: string[] } {
  const heads: LinearLayer[] = [];
  const skipped: string[] = [];
  for (const l of linears(model)) {
    if (l.weight !== table) continue;
    const fits = l.kind !== 'conv' && l.outFeatures === vocab && l.inFeatures === hidden && !(l.kind === 'gemm' && attrFloat(l.node, 'alpha', 1) !== 1);
    if (fits) heads.push(l);
    else skipped.push(l.name);
  }
  return { heads, skipped };
}

export const embeddings = definePass({
  id: 'quantize.embeddings',
  summary: 'token embedding as 4/8-bit blocks read by GatherBlockQuantized; a tied lm_head reads the same codes through MatMulNBits',
  params: EmbeddingParams,
  needsCalibration: () => ({ need: 'none' }),
  graphWide: true,
  async apply(model, params, ctx) {
    const t0 = performance.now();
    const emb = tokenEmbedding(model);
    if (!emb) throw new UserError(`quantize.embeddings: ${model.path} has no token embedding (a Gather along axis 0 of a 2-D float initializer by a graph input)`);
    const { node, table, vocab, hidden } = emb;
    if (hidden % params.block_size !== 0) {
      throw new UserError(`quantize.embeddings: the embedding '${table}' is ${hidden} wide, not a multiple of ${ctx.where}.params.block_size ${params.block_size}; pick a power of two that divides ${hidden}`);
    }
    const t = model.tensor(table);
    if (t.dataType !== DataType.FLOAT) throw new UserError(`quantize.embeddings: the embedding '${table}' is stored as ${dtypeName(t.dataType)}; run quantize.embeddings on the float32 model, before quantize.f16`);
    const E = toFloat32(t.dataType, t.data, vocab * hidden);
    const { heads, skipped } = tiedHeads(model, table, vocab, hidden);
    ctx.progress.layer(0, 1 + heads.length, table);

    // quantize the rows of E in blocks along hidden
    const m = quantizeMatrix(E, vocab, hidden, { bits: params.bits, granularity: { kind: 'group', size: params.block_size }, symmetric: params.symmetric });
    const err = squaredError(E, dequantizeMatrix(m));
    const base = table.replace(/\.weight$/, '');
    const stored = storeTable(model, base, m);
    const common = [attr.int('bits', params.bits), attr.int('block_size', params.block_size)];
    ensureOpset(model, MS_DOMAIN, 1);

    // Gather(E, ids) -> GatherBlockQuantized(codes, ids, scales, zero_points)
    const gbq = makeNode(
      'GatherBlockQuantized',
      [stored.codes, node.input![1]!, stored.scales, ...(stored.zeros ? [stored.zeros] : [])],
      [...node.output!],
      `${node.name ?? base}/GatherBlockQuantized`,
      [...common, attr.int('gather_axis', 0), attr.int('quantize_axis', 1)],
      MS_DOMAIN,
    );
    replaceNode(model.graph, node, [gbq]);

    const layers: LayerStat[] = [
      {
        name: base,
        kind: 'gather',
        shape: [vocab, hidden],
        ms: 0,
        bytes_before: t.data.byteLength,
        bytes_after: stored.bytes,
        objective: err,
        extra: { op: 'GatherBlockQuantized', weight_rel_error: Math.sqrt(err / Math.max(squaredError(E, new Float32Array(E.length)), 1e-30)) },
      },
    ];

    // MatMul(x, Transpose(E)) -> MatMulNBits(x, Reshape(codes), scales, zero_points)   the same bytes
    if (heads.length) {
      const blocks = hidden / params.block_size;
      const shape = addConstant(model, `${base}_q${params.bits}_blocks_shape`, DataType.INT64, [3], [vocab, blocks, (params.block_size * params.bits) / 8]);
      const blocked = `${stored.codes}/blocks`;
      insertBefore(model.graph, heads[0]!.node, [makeNode('Reshape', [stored.codes, shape], [blocked], `${base}/Reshape_blocks`)]);
      for (const [j, head] of heads.entries()) {
        ctx.progress.layer(1 + j, 1 + heads.length, head.name);
        const inputs = [head.input, blocked, stored.scales, stored.zeros ?? ''];
        const bias = head.kind === 'gemm' ? gemmBiasVector(model, head, 'quantize.embeddings') : undefined;
        if (bias) inputs.push('', bias);
        while (inputs.at(-1) === '') inputs.pop();
        const mnb = makeNode(
          'MatMulNBits',
          inputs,
          [head.output],
          `${head.node.name ?? head.name}/MatMulNBits`,
          [attr.int('K', hidden), attr.int('N', vocab), ...common, attr.int('accuracy_level', 0)],
          MS_DOMAIN,
        );
        replaceNode(model.graph, head.node, [mnb]);
        layers.push({ name: head.name, kind: head.kind, shape: [vocab, hidden], ms: 0, bytes_before: 0, bytes_after: 0, extra: { op: 'MatMulNBits', reads: stored.codes, shared_bytes: stored.bytes } });
      }
    }
    removeUnused(model);

    const index = new GraphIndex(model.graph);
    const warnings: string[] = [];
    if (model.hasInitializer(table)) {
      const readers = (index.consumers.get(table) ?? []).map((n) => `'${n.name ?? n.op_type}'`).join(', ');
      warnings.push(`the float table '${table}' is still read by ${readers}${skipped.length ? ` (${skipped.join(', ')}: not a MatMul or transB Gemm with alpha 1)` : ''}; the file keeps it beside the quantized copy`);
    }
    layers[0]!.ms = performance.now() - t0;
    const head = heads.length ? `tied: ${heads.map((h) => h.name).join(', ')} read the quantized table (MatMulNBits, no copy)` : untiedHead(model, vocab, hidden);
    return { layers, warnings, summary: { table, bits: params.bits, block_size: params.block_size, table_bytes_before: t.data.byteLength, table_bytes_after: stored.bytes, head } };
  },
});

/** How the report describes a head that does not read the table. */
function untiedHead(model: Model, vocab: number, hidden: number): string {
  const head = linears(model).find((l) => l.outFeatures === vocab && l.inFeatures === hidden && attrInt(l.node, 'transA', 0) === 0);
  return head ? `untied: '${head.name}' keeps its own weight (quantize it with quantize.rtn or quantize.gptq)` : 'no float lm_head reads the table';
}
