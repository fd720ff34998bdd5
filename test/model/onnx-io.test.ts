import { readFileSync, writeFileSync, existsSync, readdirSync, statSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readOnnx, writeOnnx, decodeModelProto } from '../../src/model/onnx-io.js';
import { ModelProtoType, type ModelProto } from '../../src/model/onnx-schema.js';
import { Model } from '../../src/model/model.js';
import { subModel } from '../../src/model/subgraph.js';
import { toFloat32 } from '../../src/model/pack.js';
import { ort, sessionFromFile } from '../../src/runtime/ort.js';
import { writeConvNet } from '../../fixtures/generate-convnet.js';
import { FIXTURES, itWithShared, SHARED_MODELS, tempDir } from '../helpers.js';
import { UserError } from '../../src/errors.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

/** Seeded feeds from the model's declared inputs (symbolic dims become 1 or `seq`). */
function feedsFor(model: Model, seed = 1): Record<string, ort.Tensor> {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const inits = new Set((model.graph.initializer ?? []).map((t) => t.name));
  const feeds: Record<string, ort.Tensor> = {};
  for (const v of model.graph.input ?? []) {
    if (inits.has(v.name)) continue;
    const tt = v.type!.tensor_type!;
    const dims = (tt.shape?.dim ?? []).map((d, i) => (d.dim_value ? Number(d.dim_value) : i === 0 ? 2 : 7));
    const n = dims.reduce((a, b) => a * b, 1);
    if (tt.elem_type === 7) feeds[v.name!] = new ort.Tensor('int64', BigInt64Array.from({ length: n }, () => BigInt(Math.floor(rand() * 60))), dims);
    else feeds[v.name!] = new ort.Tensor('float32', Float32Array.from({ length: n }, () => rand()), dims);
  }
  return feeds;
}

describe('ONNX read/write round trip', () => {
  // the real models carried in fixtures/, the generated SqueezeNet-style convnet, and the two ../shared ones
  const models: [string, () => string, typeof itWithShared][] = [
    ['stories', () => FIXTURES.stories, it],
    ['mnist', () => FIXTURES.mnist, it],
    ['convnet', () => writeConvNet(join(tmp.dir, 'convnet-in.onnx')), it],
    ['shakespeare', () => SHARED_MODELS.shakespeare, itWithShared],
    ['squeezenet', () => SHARED_MODELS.squeezenet, itWithShared],
  ];
  for (const [key, pathOf, test] of models) {
    test(`${key}: initializer bytes and ONNX Runtime outputs are identical after a round trip`, async () => {
      const path = pathOf();
      const model = readOnnx(path);
      const out = join(tmp.dir, `${key}.onnx`);
      writeOnnx(model, out);
      const back = readOnnx(out);
      const a = model.graph.initializer!;
      const b = back.graph.initializer!;
      expect(b.map((t) => t.name)).toEqual(a.map((t) => t.name));
      for (const t of a) expect(Buffer.compare(back.tensor(t.name!).data, model.tensor(t.name!).data)).toBe(0);
      // the whole protobuf re-encodes to the same bytes, so nodes, attributes, opsets and metadata survived
      expect(Buffer.compare(ModelProtoType.encode(back.proto as never).finish(), ModelProtoType.encode(model.proto as never).finish())).toBe(0);
      const feeds = feedsFor(model);
      const [r1, r2] = [await (await sessionFromFile(path)).run(feeds), await (await sessionFromFile(out)).run(feeds)];
      for (const k of Object.keys(r1)) expect(Array.from(r2[k].data as Float32Array)).toEqual(Array.from(r1[k].data as Float32Array));
    });
  }

  it('external data is read and written, and the model runs from it', async () => {
    const model = readOnnx(FIXTURES.stories);
    const out = join(tmp.dir, 'ext', 'stories.onnx');
    mkdirSync(join(tmp.dir, 'ext'), { recursive: true });
    const written = writeOnnx(model, out, { externalData: true });
    expect(written.files).toEqual([out, `${out}.data`]);
    expect(statSync(out).size).toBeLessThan(200_000);
    const back = readOnnx(out);
    const big = back.graph.initializer!.filter((t) => t.data_location === 1);
    expect(big.length).toBeGreaterThan(30);
    for (const t of model.graph.initializer!) expect(Buffer.compare(back.tensor(t.name!).data, model.tensor(t.name!).data)).toBe(0);
    const feeds = feedsFor(model);
    const r1 = await (await sessionFromFile(FIXTURES.stories)).run(feeds);
    const r2 = await (await sessionFromFile(out)).run(feeds);
    expect(Array.from(r2.logits.data as Float32Array)).toEqual(Array.from(r1.logits.data as Float32Array));
    // and back to a single file
    const inline = join(tmp.dir, 'stories-inline.onnx');
    writeOnnx(back, inline);
    expect(readOnnx(inline).graph.initializer!.every((t) => t.data_location !== 1)).toBe(true);
    back.close();
    expect(readdirSync(join(tmp.dir, 'ext')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('a spilling model keeps rewritten tensors on disk, reads them back (also through a sub-graph) and deletes the file on close', async () => {
    const model = readOnnx(FIXTURES.stories);
    const spill = join(tmp.dir, 'spill.bin');
    model.spillTo(spill, 1024);
    const rewritten = new Map<string, Uint8Array>();
    for (const t of model.graph.initializer!) {
      const host = model.tensor(t.name!);
      if (host.dataType !== 1) continue;
      const data = new Uint8Array(toFloat32(1, host.data, host.data.byteLength / 4).map((v) => v * 0.5).buffer);
      model.setInitializer({ ...host, data });
      rewritten.set(host.name, data);
    }
    const spilled = model.graph.initializer!.filter((t) => rewritten.has(t.name!) && !t.raw_data);
    expect(spilled.length).toBeGreaterThan(30);
    expect(statSync(spill).size).toBe(spilled.reduce((a, t) => a + rewritten.get(t.name!)!.byteLength, 0));
    for (const [name, data] of rewritten) expect(Buffer.compare(model.tensor(name).data, data)).toBe(0);
    const sub = subModel(model, model.graph.node!.slice(0, 3), []);
    for (const t of sub.graph.initializer!) expect(Buffer.compare(sub.tensor(t).data, model.tensor(t.name!).data)).toBe(0);
    // written out it is an ordinary model: inline bytes, the halved weights
    const out = join(tmp.dir, 'spilled.onnx');
    writeOnnx(model, out);
    const back = readOnnx(out);
    expect(back.graph.initializer!.every((t) => t.data_location !== 1)).toBe(true);
    for (const [name, data] of rewritten) expect(Buffer.compare(back.tensor(name).data, data)).toBe(0);
    model.close();
    expect(existsSync(spill)).toBe(false);
  });

  it('IR 10 fields (node/graph metadata_props, function value_info and overload, int4 tensors) survive', () => {
    const proto: ModelProto = {
      ir_version: 10,
      opset_import: [{ domain: '', version: 21 }, { domain: 'local', version: 1 }],
      producer_name: 'pare-test',
      metadata_props: [{ key: 'k', value: 'v' }],
      graph: {
        name: 'g',
        metadata_props: [{ key: 'graph-key', value: 'graph-value' }],
        node: [
          { op_type: 'DequantizeLinear', input: ['w', 's'], output: ['wf'], name: 'dq', metadata_props: [{ key: 'n', value: '1' }],
            attribute: [{ name: 'axis', type: 2, i: 0 }, { name: 'block_size', type: 2, i: 16 }] },
          { op_type: 'MatMul', input: ['x', 'wf'], output: ['y'], name: 'mm', domain: '', overload: '' },
        ],
        initializer: [
          { name: 'w', data_type: 22, dims: [32, 2], raw_data: new Uint8Array(32).map((_, i) => i * 7) },
          { name: 's', data_type: 1, dims: [2, 2], raw_data: new Uint8Array(new Float32Array([0.5, 1, 2, 4]).buffer) },
          { name: 'big', data_type: 7, dims: [1], int64_data: [{ low: -1, high: 0x7fffffff, unsigned: false }] },
        ],
        input: [{ name: 'x', type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_param: 'n' }, { dim_value: 32 }] } } }, metadata_props: [{ key: 'vi', value: 'x' }] }],
        output: [{ name: 'y', type: { tensor_type: { elem_type: 1 } } }],
      },
      functions: [
        { name: 'f', domain: 'local', overload: 'ov', input: ['a'], output: ['b'], node: [{ op_type: 'Relu', input: ['a'], output: ['b'] }],
          value_info: [{ name: 'a', type: { tensor_type: { elem_type: 1 } } }], metadata_props: [{ key: 'fk', value: 'fv' }], opset_import: [{ domain: '', version: 21 }] },
      ],
    } as ModelProto;
    const bytes = ModelProtoType.encode(proto as never).finish();
    const path = join(tmp.dir, 'ir10.onnx');
    writeFileSync(path, bytes);
    const model = readOnnx(path);
    const out = join(tmp.dir, 'ir10-out.onnx');
    writeOnnx(model, out);
    expect(Buffer.compare(readFileSync(out), Buffer.from(bytes))).toBe(0);
    const back = decodeModelProto(readFileSync(out), out) as ModelProto & { functions: { overload: string; value_info: unknown[] }[] };
    expect(back.graph!.metadata_props).toEqual([{ key: 'graph-key', value: 'graph-value' }]);
    expect(back.graph!.node![0].metadata_props).toEqual([{ key: 'n', value: '1' }]);
    expect(back.functions[0].overload).toBe('ov');
    expect(back.functions[0].value_info).toHaveLength(1);
    // an int64 beyond 2^53 keeps every bit
    expect(readOnnx(out).tensor('big').data).toEqual(new Uint8Array([255, 255, 255, 255, 255, 255, 255, 127]));
  });
});

describe('bad ONNX input', () => {
  const cases: [string, () => string, RegExp][] = [
    ['missing file', () => join(tmp.dir, 'nope.onnx'), /nope\.onnx: no such ONNX model/],
    ['directory', () => tmp.dir, /is a directory/],
    ['empty file', () => { const p = join(tmp.dir, 'empty.onnx'); writeFileSync(p, ''); return p; }, /empty file/],
    ['text file', () => { const p = join(tmp.dir, 'text.onnx'); writeFileSync(p, 'hello world, not a model\n'.repeat(20)); return p; }, /not an ONNX model/],
    ['truncated model', () => { const p = join(tmp.dir, 'cut.onnx'); writeFileSync(p, readFileSync(FIXTURES.stories).subarray(0, 5000)); return p; }, /not an ONNX model|truncated/],
  ];
  for (const [label, make, pattern] of cases) {
    it(`${label}: one-line UserError naming the file`, () => {
      const p = make();
      let err: unknown;
      try { readOnnx(p); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(UserError);
      expect((err as Error).message).toMatch(pattern);
      expect((err as Error).message).toContain(p);
      expect((err as Error).message).not.toContain('\n');
    });
  }
  it('writing never leaves a temp file behind and keeps the input', () => {
    expect(existsSync(FIXTURES.stories)).toBe(true);
  });
});
