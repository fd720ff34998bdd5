import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Calibrator } from '../../../src/calibrate/calibrator.js';
import { calibrationFeeds } from '../../../src/calibrate/feeds.js';
import { loadDataset } from '../../../src/data/load.js';
import { linears } from '../../../src/model/linears.js';
import { attentionOutputs } from '../../../src/model/blocks.js';
import { loadModel } from '../../../src/model/load.js';
import { matMulNBitsLayers } from '../../../src/model/nbits-layers.js';
import { trainableInitializers } from '../../../src/distill/trainable.js';
import type { Model } from '../../../src/model/model.js';
import { awq } from '../../../src/quantize/awq.js';
import { gptq } from '../../../src/quantize/gptq.js';
import { gridWindow } from '../../../src/runtime/tfjs/fake-quant.js';
import { decodeNBits } from '../../../src/runtime/tfjs/matmulnbits.js';
import { OnnxExecutor } from '../../../src/runtime/tfjs/executor.js';
import { FIXTURES } from '../../helpers.js';
import { bothOutputs, expectClose, storiesTokens, type Feed } from './helpers.js';

const ROOT = resolve(__dirname, '../../..');

describe('gridWindow', () => {
  it('finds the b-bit grid inside its container: from the bottom (asymmetric) or centred (symmetric)', () => {
    const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
    expect(gridWindow(range(0, 7), [3], 0, 15)).toEqual([0, 7]); // 3-bit asymmetric in MatMulNBits' 4 bits
    expect(gridWindow(range(5, 11), [8], 0, 15)).toEqual([4, 11]); // 3-bit symmetric, re-centred on 8
    expect(gridWindow(range(-3, 3), [0], -8, 7)).toEqual([-4, 3]); // 3-bit symmetric in int4
    expect(gridWindow(range(0, 3), [1], 0, 15)).toEqual([0, 3]); // 2-bit
    expect(gridWindow(range(0, 15), [8], 0, 15)).toEqual([0, 15]); // a full 4-bit grid
    expect(gridWindow([0, 7], [9], 0, 15)).toEqual([0, 15]); // a zero point past the window widens it
    expect(gridWindow(range(-127, 127), [0], -128, 127)).toEqual([-128, 127]);
  });
});

/** the codes initializer (input 1) of every MatMulNBits */
function codeNames(model: Model): string[] {
  return (model.graph.node ?? []).filter((n) => n.op_type === 'MatMulNBits').map((n) => n.input![1]!);
}

function unpackNibbles(bytes: Uint8Array): Uint8Array {
  return Uint8Array.from({ length: bytes.length * 2 }, (_, i) => (i & 1 ? bytes[i >> 1]! >> 4 : bytes[i >> 1]! & 15));
}

describe('fake quantization of AWQ + GPTQ 3-bit g32 + MSE clipping + act_order (MatMulNBits, padded down_proj)', () => {
  it('forward equals ONNX Runtime on the stored model, and writeBack keeps every code on the 3-bit grid', async () => {
    const model = loadModel(FIXTURES.stories);
    const data = await loadDataset({ kind: 'text', path: 'tinystories/valid-head.txt', tokenizer: 'stories260K/tok512.bin', separator: '<|endoftext|>', bos: true, max_length: 512, select: '1-10', segment: 128 }, join(ROOT, 'fixtures'));
    const ctx = () => ({
      layers: linears(model).filter((l) => l.name.startsWith('layers.0.')),
      seed: 0,
      random: Math.random,
      calibration: new Calibrator(calibrationFeeds(model, data, 8), 'oneshot', 1),
      progress: { layer() {} },
      where: 'passes[0]',
    });
    const names = ctx().layers.map((l) => l.name);
    await awq.apply(model, awq.params.parse({ bits: 3, granularity: 'group', group_size: 32, symmetric: false }), ctx());
    await gptq.apply(model, gptq.params.parse({ bits: 3, granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits', mse_clip: true, act_order: true }), ctx());
    const codes = codeNames(model);
    expect(codes).toHaveLength(7);
    const padded = (model.graph.node ?? []).filter((n) => n.op_type === 'MatMulNBits' && n.name!.includes('down_proj'));
    expect(padded.map((n) => n.attribute!.find((a) => a.name === 'K')!.i)).toEqual([172]); // 6 blocks of 32, the last padded
    // the layers distill.kd's targets select among: named as the layers they replaced, weight = the codes
    const nbits = matMulNBitsLayers(model);
    expect(nbits.map((l) => [l.name, l.weight])).toEqual(names.map((n) => [n, `${n}.weight_q4`]));
    expect(attentionOutputs(model).get(0)).toBe('/layers.0/self_attn/o_proj/MatMul_output_0'); // what distill.kd's attention loss reads
    const downProj = nbits.filter((l) => l.name.endsWith('down_proj'));
    expect([...trainableInitializers(model, downProj)]).toEqual([downProj[0]!.weight]); // the other six stay frozen
    const before = new Map(codes.map((c) => [c, model.tensor(c).data.slice()]));
    const frozen = new Map((model.graph.initializer ?? []).filter((t) => !codes.includes(t.name!)).map((t) => [t.name!, model.tensor(t.name!).data.slice()]));
    const feed: Feed = { name: 'input_ids', dims: [2, 48], data: storiesTokens(2, 48) };

    const exec = await OnnxExecutor.create(model, { trainable: (n) => codes.includes(n) });
    try {
      const { got, ref } = await bothOutputs(exec, model, feed);
      const c = expectClose(got, ref, 1e-4);
      expect(c.ok, `relFro ${c.relFro}; ${c.worst}`).toBe(true); // measured 4.8e-7

      // untouched: every packed byte (padding included) comes back as the quantizer wrote it
      exec.writeBack(model);
      for (const [name, bytes] of before) expect(Buffer.compare(Buffer.from(model.tensor(name).data), Buffer.from(bytes)), name).toBe(0);

      // push every weight 5 steps up or down: the codes saturate at the ends of the 3-bit grid, not of the 4-bit container
      for (const [name, v] of exec.variables) {
        const node = model.graph.node!.find((n) => n.input![1] === name)!;
        const int = (a: string) => Number(node.attribute!.find((x) => x.name === a)!.i);
        const layout = { N: int('N'), K: int('K'), bits: int('bits'), block: int('block_size') };
        const { scale } = decodeNBits(model.tensor(name).data, new Float32Array(model.tensor(node.input![2]!).data.slice().buffer), model.tensor(node.input![3]!).data, layout);
        const w = v.dataSync() as Float32Array;
        v.assign(exec.tf.tensor(w.map((x, i) => x + (i % 3 === 0 ? -5 : 5) * scale[i]!), v.shape));
      }
      const moved = await bothOutputs(exec, model, feed); // the executor's forward before writeBack
      exec.writeBack(model);
      let changed = 0;
      for (const name of codes) {
        const q = unpackNibbles(model.tensor(name).data);
        const q0 = unpackNibbles(before.get(name)!);
        for (let i = 0; i < q.length; i++) {
          expect(q[i]).toBeLessThanOrEqual(7);
          if (q[i] !== q0[i]) changed++;
        }
      }
      expect(changed).toBeGreaterThan(20_000); // of 55,808 codes
      for (const [name, bytes] of frozen) expect(Buffer.compare(Buffer.from(model.tensor(name).data), Buffer.from(bytes)), name).toBe(0); // scales, zero points, the rest
      // what the fake-quantized forward computed is what the stored model computes
      const after = await bothOutputs(exec, model, feed);
      const m = expectClose(moved.got, after.ref, 1e-4);
      expect(m.ok, `relFro ${m.relFro}; ${m.worst}`).toBe(true); // measured 2.6e-7
    } finally {
      exec.dispose();
    }
  }, 60_000);
});
