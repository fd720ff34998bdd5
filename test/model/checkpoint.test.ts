import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { UserError } from '../../src/errors.js';
import { FAMILIES, familyOf } from '../../src/model/builders/index.js';
import { Checkpoint } from '../../src/model/checkpoint.js';
import { removeBlock, decoderBlocks } from '../../src/model/blocks.js';
import { loadModel } from '../../src/model/load.js';
import { Model } from '../../src/model/model.js';
import { encodeInline, readOnnx } from '../../src/model/onnx-io.js';
import { readConfigJson } from '../../src/model/safetensors.js';
import { sha256File } from '../../src/util/hash.js';
import { tempDir } from '../helpers.js';

const ROOT = resolve(__dirname, '../..');
const ONNX = join(ROOT, 'fixtures/stories260K/model.onnx');
const SAFETENSORS = join(ROOT, 'fixtures/stories260K/model.safetensors');
const tmp = tempDir('pare-checkpoint-');
afterAll(() => tmp.cleanup());
afterEach(() => vi.restoreAllMocks());

describe('Checkpoint', () => {
  it('ONNX: the model as readOnnx reads it, hashed from the same bytes, and its own file as ONNX form', () => {
    const c = Checkpoint.open(ONNX);
    try {
      expect([c.path, c.format, c.sha256, c.config, c.safetensors]).toEqual([ONNX, 'onnx', sha256File(ONNX), undefined, undefined]);
      const scratch = vi.fn(() => join(tmp.dir, 'never.onnx'));
      expect(c.onnxPath(scratch)).toBe(ONNX);
      expect(scratch).not.toHaveBeenCalled();
      expect(Buffer.from(encodeInline(c.model)).equals(Buffer.from(encodeInline(readOnnx(ONNX))))).toBe(true);
      expect(() => c.buildGraph()).toThrow(/buildGraph\(\) is for safetensors checkpoints/);
    } finally {
      c.close();
    }
  });

  it('safetensors: config.json and family read once; the ONNX form is the graph as loaded, whatever passes did to the model', () => {
    const c = Checkpoint.open(SAFETENSORS);
    try {
      expect([c.format, c.sha256, c.config, c.safetensors!.family]).toEqual(['safetensors', sha256File(SAFETENSORS), readConfigJson(SAFETENSORS), FAMILIES.llama]);
      expect(c.safetensors!.config.bytes).toEqual(readFileSync(join(ROOT, 'fixtures/stories260K/config.json')));
      removeBlock(c.model, decoderBlocks(c.model)[2]!); // a pass changes the model in place
      const scratch = vi.fn(() => join(tmp.dir, 'reference.onnx'));
      const path = c.onnxPath(scratch);
      expect(c.onnxPath(scratch)).toBe(path);
      expect(scratch).toHaveBeenCalledTimes(1);
      const asLoaded = loadModel(SAFETENSORS);
      expect(Buffer.from(encodeInline(readOnnx(path))).equals(Buffer.from(encodeInline(asLoaded)))).toBe(true);
      asLoaded.close();
    } finally {
      c.close();
    }
  });

  it('close() closes the model once and the safetensors file with it; a second close does nothing', () => {
    const closes = vi.spyOn(Model.prototype, 'close');
    const c = Checkpoint.open(SAFETENSORS);
    c.close();
    c.close();
    expect(closes.mock.contexts).toEqual([c.model]);
    expect(() => c.safetensors!.file.read('model.norm.weight')).toThrow(/after close/);
  });

  it('a missing file, a folder and an unknown model_type are one-line user errors naming the file', () => {
    expect(() => Checkpoint.open(join(tmp.dir, 'absent.onnx'))).toThrow(new UserError(`${join(tmp.dir, 'absent.onnx')}: no such model file`));
    // a folder is read as a Hugging Face model folder
    expect(() => Checkpoint.open(tmp.dir)).toThrow(/no fp32 model in the folder \(expected onnx\/model\.onnx or model\.safetensors\)/);
    const dir = join(tmp.dir, 'bert');
    mkdirSync(dir);
    copyFileSync(SAFETENSORS, join(dir, 'model.safetensors'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'bert' }));
    expect(() => Checkpoint.open(join(dir, 'model.safetensors'))).toThrow(/bert\/config\.json: model_type "bert" has no graph builder; supported: llama, mobilellm, qwen2, qwen3, gpt2, phi3, gemma3_text/);
  });
});

describe('model families', () => {
  it('one row per model_type: Llama, MobileLLM, Qwen2, Qwen3, Phi-3 and Gemma 3 export on write-back and read quantized checkpoints, GPT-2 keeps its layout', () => {
    expect(Object.fromEntries(Object.entries(FAMILIES).map(([type, f]) => [type, [f.name, f.writeBack, f.readsQuantizationConfig]]))).toEqual({
      llama: ['Llama', 'export', true],
      mobilellm: ['Llama', 'export', true],
      qwen2: ['Qwen2', 'export', true],
      qwen3: ['Qwen3', 'export', true],
      gpt2: ['GPT-2', 'same-layout', false],
      phi3: ['Phi-3', 'export', true],
      gemma3_text: ['Gemma 3', 'export', true],
    });
  });

  it('a quantization_config on a family that does not read one is a user error', () => {
    expect(familyOf({ model_type: 'llama', quantization_config: {} }, 'c.json')).toBe(FAMILIES.llama);
    expect(() => familyOf({ model_type: 'gpt2', quantization_config: {} }, 'c.json')).toThrow(
      new UserError('c.json: quantization_config is read for Llama, Qwen2, Qwen3, Phi-3, Gemma 3 checkpoints only; export the GPT-2 model to .onnx instead'),
    );
  });
});
