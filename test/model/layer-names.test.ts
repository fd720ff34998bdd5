import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decoderBlocks } from '../../src/model/blocks.js';
import { loadModel } from '../../src/model/load.js';
import { canonicalLayerName, linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx } from '../../src/model/onnx-io.js';

const ROOT = resolve(__dirname, '../..');
const EXPORT = join(ROOT, 'fixtures/stories260K/model.onnx');
const SAFETENSORS = join(ROOT, 'fixtures/stories260K/model.safetensors');

/** The PyTorch export with every node path under `/model/`, as Optimum's Llama exports name them (lm_head stays outside). */
function optimumNamed(): Model {
  const m = readOnnx(EXPORT);
  for (const n of m.graph.node ?? []) {
    if (n.name?.startsWith('/') && !n.name.startsWith('/lm_head/')) n.name = `/model${n.name}`;
  }
  return m;
}

describe('canonical layer names', () => {
  it('leave out the wrappers exports put in front of the layers', () => {
    expect(canonicalLayerName('/model/layers.3/self_attn/q_proj/MatMul', 'onnx::MatMul_1')).toBe('layers.3.self_attn.q_proj');
    expect(canonicalLayerName('/layers.3/self_attn/q_proj/MatMul', 'x')).toBe('layers.3.self_attn.q_proj');
    expect(canonicalLayerName('/transformer/h.0/attn/c_attn/Gemm', 'x')).toBe('h.0.attn.c_attn');
    expect(canonicalLayerName('', 'model.layers.1.mlp.up_proj.weight')).toBe('layers.1.mlp.up_proj');
    expect(canonicalLayerName('/lm_head/MatMul', 'x')).toBe('lm_head');
    // a name that is only a wrapper is kept, and other node names are kept whole
    expect(canonicalLayerName('/model/MatMul', 'x')).toBe('model');
    expect(canonicalLayerName('Times212', 'x')).toBe('Times212');
  });

  it('are the same for a model built from safetensors, its plain export and an Optimum-named export', () => {
    const names = (m: Model) => linears(m).map((l) => l.name).sort();
    const exported = names(readOnnx(EXPORT));
    expect(names(loadModel(SAFETENSORS))).toEqual(exported);
    expect(names(optimumNamed())).toEqual(exported);
    expect(exported).toContain('layers.4.mlp.down_proj');
  });

  it('decoder blocks are found under /model/ too', () => {
    const plain = decoderBlocks(readOnnx(EXPORT));
    const wrapped = decoderBlocks(optimumNamed());
    expect(wrapped.map((b) => [b.index, b.input, b.output])).toEqual(plain.map((b) => [b.index, b.input, b.output]));
    expect(plain).toHaveLength(5);
  });
});
