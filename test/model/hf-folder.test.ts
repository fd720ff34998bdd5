import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { externalDataNameOf, folderVariant, isFolderOutput, modelFileOf, onnxFileOf, parseDtypes, readModelFolder } from '../../src/model/hf-folder.js';
import { tempDir } from '../helpers.js';

const tmp = tempDir('pare-hf-folder-');
afterAll(() => tmp.cleanup());

describe('transformers.js folder layout', () => {
  it("names each dtype's file as transformers.js 4.3 looks it up", () => {
    expect(['fp32', 'fp16', 'q8', 'q4', 'q4f16'].map((d) => onnxFileOf(parseDtypes([d], 'x')[0]!))).toEqual([
      'onnx/model.onnx',
      'onnx/model_fp16.onnx',
      'onnx/model_quantized.onnx',
      'onnx/model_q4.onnx',
      'onnx/model_q4f16.onnx',
    ]);
    expect(externalDataNameOf('model_q4.onnx')).toBe('model_q4.onnx_data');
  });

  it('reads dtype lists: quantized is q8, repeats dropped, unknown names refused with the list', () => {
    expect(parseDtypes(['fp32', ' q4', 'quantized', 'q8', 'q4'], '--dtypes')).toEqual(['fp32', 'q4', 'q8']);
    expect(() => parseDtypes(['int4'], '--dtypes')).toThrow(/--dtypes: unknown dtype 'int4'; expected fp32, fp16, q8, q4, q4f16/);
  });

  it('tells a folder output by a trailing slash or an existing directory, and refuses the ambiguous', () => {
    const dir = join(tmp.dir, 'existing');
    mkdirSync(dir);
    const file = join(tmp.dir, 'file');
    writeFileSync(file, 'x');
    expect(isFolderOutput(join(tmp.dir, 'new-folder/'))).toBe(true);
    expect(isFolderOutput(dir)).toBe(true);
    expect(isFolderOutput(join(tmp.dir, 'model.onnx'))).toBe(false);
    expect(isFolderOutput(join(tmp.dir, 'no-extension'))).toBe(false);
    expect(() => isFolderOutput(`${file}/`)).toThrow(/ends in a slash \(a model folder\) but is an existing file/);
    expect(() => isFolderOutput(join(tmp.dir, 'model.onnx/'))).toThrow(/a folder named like a model file is ambiguous/);
    const onnxDir = join(tmp.dir, 'dir.onnx');
    mkdirSync(onnxDir);
    expect(() => isFolderOutput(onnxDir)).toThrow(UserError);
  });

  it("reads a folder's fp32 model (onnx/model.onnx before model.safetensors) and what travels with it", () => {
    const dir = join(tmp.dir, 'in');
    mkdirSync(join(dir, 'onnx'), { recursive: true });
    for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors', 'onnx/model.onnx', 'onnx/model_q4.onnx']) writeFileSync(join(dir, f), '{}');
    const folder = readModelFolder(dir);
    expect(folder.model).toBe(join(dir, 'onnx/model.onnx'));
    expect(folder.generationConfig).toBe(join(dir, 'generation_config.json'));
    expect(folder.tokenizerFiles).toEqual([join(dir, 'tokenizer.json'), join(dir, 'tokenizer_config.json')]);
    expect(modelFileOf(dir)).toBe(join(dir, 'onnx/model.onnx'));
    expect(folderVariant(dir, 'q4')).toBe(join(dir, 'onnx/model_q4.onnx'));
    expect(() => folderVariant(dir, 'q4f16')).toThrow(/the folder has no q4f16 model/);
  });

  it('refuses a folder without an fp32 model, naming the files it has', () => {
    const dir = join(tmp.dir, 'only-q4');
    mkdirSync(join(dir, 'onnx'), { recursive: true });
    writeFileSync(join(dir, 'config.json'), '{}');
    writeFileSync(join(dir, 'onnx/model_q4.onnx'), '');
    expect(() => readModelFolder(dir)).toThrow(/no fp32 model in the folder \(expected onnx\/model.onnx or model.safetensors\); it has only onnx\/model_q4.onnx/);
  });
});
