import { describe, expect, it } from 'vitest';
import { denseChain } from '../../fixtures/generate-vision.js';
import { linears } from '../../src/model/linears.js';
import { rtn } from '../../src/quantize/rtn.js';

/**
 * Issue #25 item 3: fc layers whose input width is not a multiple of the block (250 in a keyword
 * spotter, 3136 = 64·7·7 in an MNIST CNN's head) take 4-bit MatMulNBits, the last block padded, as
 * ONNX Runtime's kernel allows. Skipped until MatMulNBits takes any K (issue #22): today these layers
 * are refused or left in float.
 */
const ctx = (layers: ReturnType<typeof linears>) => ({ layers, seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' });

describe('MatMulNBits for any K', () => {
  it('fc layers with 250 and 3136 inputs get 4-bit MatMulNBits at group 32', async () => {
    for (const features of [250, 3136]) {
      const model = denseChain(features, [32, 10]);
      const result = await rtn.apply(model, rtn.params.parse({ bits: 4, granularity: 'group', group_size: 32, format: 'matmulnbits' }), ctx(linears(model)));
      expect(result.layers.map((l) => l.name)).toEqual(['fc1', 'fc2']);
      const ops = (model.graph.node ?? []).map((n) => n.op_type);
      expect(ops.filter((o) => o === 'MatMulNBits')).toHaveLength(2);
      expect(ops).not.toContain('Gemm');
    }
  });
});
