import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DataType } from '../../src/model/dtype.js';
import { loadModel } from '../../src/model/load.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx, writeOnnx } from '../../src/model/onnx-io.js';
import { ModelProtoType, type GraphProto, type ModelProto, type TensorProto } from '../../src/model/onnx-schema.js';
import { writeModelStreaming } from '../../src/model/onnx-stream.js';
import { ort, sessionFromFile } from '../../src/runtime/ort.js';
import { SHARED_MODELS, tempDir } from '../helpers.js';
import { rng } from '../reference/random.js';
import { writeOnnxInMemory } from '../reference/onnx-write-in-memory.js';

const ROOT = resolve(import.meta.dirname, '../..');
const tmp = tempDir('pare-stream-');
afterAll(() => tmp.cleanup());
let serial = 0;

/** Writes `model` with the streaming writer and the in-memory reference; every file they write must be the same bytes. */
function expectSameFiles(model: Model, opts: { externalData?: boolean; externalThreshold?: number }, what: string): string {
  const dir = join(tmp.dir, `case${serial++}`);
  const streamed = join(dir, 'stream', 'm.onnx');
  const reference = join(dir, 'ref', 'm.onnx');
  const written = writeOnnx(model, streamed, opts);
  writeOnnxInMemory(model, reference, opts);
  const names = readdirSync(join(dir, 'ref')).sort();
  expect(readdirSync(join(dir, 'stream')).sort(), what).toEqual(names);
  for (const name of names) {
    const a = readFileSync(join(dir, 'stream', name));
    const b = readFileSync(join(dir, 'ref', name));
    expect(a.byteLength, `${what}: ${name} size`).toBe(b.byteLength);
    expect(Buffer.compare(a, b), `${what}: ${name} bytes`).toBe(0);
  }
  expect(written.bytes).toBe(names.reduce((s, n) => s + readFileSync(join(dir, 'stream', n)).byteLength, 0));
  return streamed;
}

const f32 = (values: number[]) => new Uint8Array(Float32Array.from(values).buffer);
const randomF32 = (n: number, seed: number) => {
  const u = rng(seed);
  return f32(Array.from({ length: n }, () => u() - 0.5));
};
const tensorType = (elem: number, dims: (number | string)[]) => ({ tensor_type: { elem_type: elem, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } });

/**
 * y = If(cond, then: (x·W + c_small) + sub_w, else: x·W + c_small), then a Loop adding body_w three
 * times, then + b + c_big[0:8] summed: initializers as raw_data, float_data, int64_data (beyond 2⁵³),
 * float16 and an empty tensor; small and large Constant nodes; initializers and Constants inside the
 * If and Loop bodies.
 */
function syntheticModel(): ModelProto {
  const thenBranch: GraphProto = {
    name: 'then',
    node: [
      { op_type: 'Constant', output: ['then_c'], name: 'then_const', attribute: [{ name: 'value', type: 4, t: { dims: [8], data_type: DataType.FLOAT, raw_data: randomF32(8, 5) } }] },
      { op_type: 'Add', input: ['y2', 'sub_w'], output: ['then_a'], name: 'then_add' },
      { op_type: 'Add', input: ['then_a', 'then_c'], output: ['then_out'], name: 'then_add2' },
    ],
    initializer: [{ name: 'sub_w', dims: [8], data_type: DataType.FLOAT, raw_data: randomF32(8, 6) }],
    output: [{ name: 'then_out', type: tensorType(DataType.FLOAT, [2, 8]) }],
  };
  const elseBranch: GraphProto = {
    name: 'else',
    node: [{ op_type: 'Identity', input: ['y2'], output: ['else_out'], name: 'else_id' }],
    output: [{ name: 'else_out', type: tensorType(DataType.FLOAT, [2, 8]) }],
  };
  const body: GraphProto = {
    name: 'body',
    node: [
      { op_type: 'Identity', input: ['cond_in'], output: ['cond_out'], name: 'body_cond' },
      { op_type: 'Add', input: ['v_in', 'body_w'], output: ['v_out'], name: 'body_add' },
    ],
    initializer: [{ name: 'body_w', dims: [8], data_type: DataType.FLOAT, float_data: [1, 2, 3, 4, 5, 6, 7, 8] }],
    input: [
      { name: 'iter', type: tensorType(DataType.INT64, []) },
      { name: 'cond_in', type: tensorType(DataType.BOOL, []) },
      { name: 'v_in', type: tensorType(DataType.FLOAT, [2, 8]) },
    ],
    output: [
      { name: 'cond_out', type: tensorType(DataType.BOOL, []) },
      { name: 'v_out', type: tensorType(DataType.FLOAT, [2, 8]) },
    ],
  };
  return {
    ir_version: 8,
    producer_name: 'pare-test',
    opset_import: [{ domain: '', version: 17 }],
    metadata_props: [{ key: 'k', value: 'v' }],
    graph: {
      name: 'synthetic',
      doc_string: 'streaming writer test',
      node: [
        { op_type: 'Constant', output: ['c_small'], name: 'c_small', attribute: [{ name: 'value', type: 4, t: { dims: [8], data_type: DataType.FLOAT, raw_data: randomF32(8, 2) } }] },
        { op_type: 'Constant', output: ['c_big'], name: 'c_big', attribute: [{ name: 'value', type: 4, t: { dims: [64, 8], data_type: DataType.FLOAT, raw_data: randomF32(512, 3) } }] },
        { op_type: 'MatMul', input: ['x', 'W'], output: ['y1'], name: 'mm' },
        { op_type: 'Add', input: ['y1', 'c_small'], output: ['y2'], name: 'add' },
        { op_type: 'If', input: ['cond'], output: ['y3'], name: 'if', attribute: [{ name: 'then_branch', type: 5, g: thenBranch }, { name: 'else_branch', type: 5, g: elseBranch }] },
        { op_type: 'Loop', input: ['trips', '', 'y3'], output: ['y4'], name: 'loop', attribute: [{ name: 'body', type: 5, g: body }] },
        { op_type: 'Add', input: ['y4', 'b'], output: ['y5'], name: 'add_b' },
        { op_type: 'ReduceSum', input: ['c_big', 'axes0'], output: ['c_sum'], name: 'sum_c' },
        { op_type: 'Add', input: ['y5', 'c_sum'], output: ['y6'], name: 'add_c' },
        { op_type: 'Cast', input: ['h'], output: ['h32'], name: 'cast_h', attribute: [{ name: 'to', type: 2, i: DataType.FLOAT }] },
        { op_type: 'Mul', input: ['y6', 'h32'], output: ['y'], name: 'mul_h' },
      ],
      initializer: [
        { name: 'W', dims: [8, 8], data_type: DataType.FLOAT, raw_data: randomF32(64, 1) },
        { name: 'b', dims: [8], data_type: DataType.FLOAT, float_data: [0.5, -1, 2, 0, 1, 1, -2, 3] },
        { name: 'trips', dims: [], data_type: DataType.INT64, int64_data: [3] },
        { name: 'axes0', dims: [1], data_type: DataType.INT64, raw_data: new Uint8Array(8) },
        { name: 'h', dims: [8], data_type: DataType.FLOAT16, raw_data: new Uint8Array(new Uint16Array(8).fill(0x3c00).buffer) },
        { name: 'big', dims: [1], data_type: DataType.INT64, int64_data: [{ low: -1, high: 0x7fffffff, unsigned: false }] },
        { name: 'empty', dims: [0, 8], data_type: DataType.FLOAT, raw_data: new Uint8Array(0) },
      ] as TensorProto[],
      input: [
        { name: 'x', type: tensorType(DataType.FLOAT, [2, 8]) },
        { name: 'cond', type: tensorType(DataType.BOOL, []) },
      ],
      output: [{ name: 'y', type: tensorType(DataType.FLOAT, [2, 8]) }],
    },
  } as ModelProto;
}

function syntheticFile(): string {
  const path = join(tmp.dir, `synthetic${serial++}.onnx`);
  writeFileSync(path, ModelProtoType.encode(syntheticModel() as never).finish());
  return path;
}

async function run(path: string, cond: boolean): Promise<number[]> {
  const session = await sessionFromFile(path);
  const x = new ort.Tensor('float32', new Float32Array(randomF32(16, 9).buffer), [2, 8]);
  const out = await session.run({ x, cond: new ort.Tensor('bool', Uint8Array.of(cond ? 1 : 0), []) });
  return Array.from(out.y!.data as Float32Array);
}

describe('streaming ONNX writer writes the bytes the in-memory encoder did', () => {
  it('a model with Constant nodes, If/Loop subgraphs with their own initializers, typed-field, float16, int64 beyond 2⁵³ and empty tensors', async () => {
    const path = syntheticFile();
    const model = readOnnx(path);
    const inline = expectSameFiles(model, {}, 'inline');
    // inline re-encodes the input exactly, and ONNX Runtime runs it to the same outputs
    expect(Buffer.compare(readFileSync(inline), readFileSync(path))).toBe(0);
    const external = expectSameFiles(model, { externalData: true, externalThreshold: 16 }, 'external, threshold 16');
    const ext = readOnnx(external);
    expect(ext.graph.initializer!.filter((t) => t.data_location === 1).map((t) => t.name).sort()).toEqual(['W', 'b', 'c_big', 'c_small', 'h']);
    expect(ext.graph.node!.some((n) => n.op_type === 'Constant' && n.output![0] === 'c_small')).toBe(false);
    for (const cond of [true, false]) expect(await run(external, cond)).toEqual(await run(path, cond));
    // a model read from external data, written inline and external again
    expectSameFiles(ext, {}, 'external input, inline output');
    expectSameFiles(ext, { externalData: true, externalThreshold: 40 }, 'external input, external output');
    ext.close();
    model.close();
  });

  it('spilled tensors (--stream) are read from the spill file as they are written', async () => {
    const model = readOnnx(syntheticFile());
    model.spillTo(join(tmp.dir, `spill${serial++}.bin`), 16);
    model.setInitializer({ name: 'W', dataType: DataType.FLOAT, dims: [8, 8], data: randomF32(64, 11) });
    model.setInitializer({ name: 'b', dataType: DataType.FLOAT, dims: [8], data: randomF32(8, 12) });
    model.setInitializer({ name: 'extra', dataType: DataType.FLOAT, dims: [4], data: randomF32(4, 13) });
    expect(model.initializer('W')!.raw_data).toBeUndefined();
    expectSameFiles(model, {}, 'spilled, inline');
    expectSameFiles(model, { externalData: true, externalThreshold: 20 }, 'spilled, external');
    model.close();
  });

  it('the stories260K fixture as ONNX and as safetensors (tensors read from the checkpoint file), inline and external', () => {
    for (const file of ['fixtures/stories260K/model.onnx', 'fixtures/stories260K/model.safetensors']) {
      const model = loadModel(join(ROOT, file));
      expectSameFiles(model, {}, `${file} inline`);
      expectSameFiles(model, { externalData: true }, `${file} external`);
      model.close();
    }
  });

  for (const [key, path] of Object.entries(SHARED_MODELS)) {
    it.skipIf(!existsSync(path))(`${key} from ../shared, inline and external${existsSync(path) ? '' : ' (skipped: not present)'}`, () => {
      const model = readOnnx(path);
      expectSameFiles(model, {}, `${key} inline`);
      expectSameFiles(model, { externalData: true, externalThreshold: 256 }, `${key} external`);
      model.close();
    });
  }

  it('a tensor whose bytes do not match its declared length fails the write and leaves no file', () => {
    const proto = syntheticModel();
    const target = join(tmp.dir, 'bad', 'bad.onnx');
    const t = proto.graph!.initializer![0]!;
    expect(() => writeModelStreaming(target, proto, [{ proto: { ...t, raw_data: undefined }, raw: { length: 256, read: () => new Uint8Array(255) } }])).toThrow(/tensor 'W': read 255 bytes of raw_data, expected 256/);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(join(tmp.dir, 'bad'))).toEqual([]);
  });
});
