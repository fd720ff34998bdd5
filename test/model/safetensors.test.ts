import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { DataType, byteLength, elementCount } from '../../src/model/dtype.js';
import { openSafetensors, readConfigJson, writeSafetensors } from '../../src/model/safetensors.js';
import { fixturePath } from '../helpers.js';

const STORIES = fixturePath('stories260K');
const STORIES_ST = path.join(STORIES, 'model.safetensors');

const dir = mkdtempSync(path.join(tmpdir(), 'pare-safetensors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A safetensors file from a raw header (object or string) and a data buffer of `dataBytes` bytes. */
function craft(name: string, header: unknown, dataBytes: number): string {
  const h = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.byteLength));
  const file = path.join(dir, name);
  writeFileSync(file, Buffer.concat([len, h, Buffer.alloc(dataBytes, 7)]));
  return file;
}

/** Opening `file` fails with a one-line UserError naming the file and matching `pattern`. */
function expectUserError(file: string, pattern: RegExp, fn: () => unknown = () => openSafetensors(file)) {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(UserError);
  const msg = (err as Error).message;
  expect(msg).toContain(file);
  expect(msg).not.toMatch(/\n/);
  expect(msg).toMatch(pattern);
}

function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

describe('writeSafetensors / openSafetensors', () => {
  it('round-trips every dtype with identical bytes, shapes, order and metadata', () => {
    const dtypes: [string, number][] = [
      ['F32', DataType.FLOAT],
      ['F16', DataType.FLOAT16],
      ['BF16', DataType.BFLOAT16],
      ['F64', DataType.DOUBLE],
      ['I8', DataType.INT8],
      ['U8', DataType.UINT8],
      ['I16', DataType.INT16],
      ['U16', DataType.UINT16],
      ['I32', DataType.INT32],
      ['U32', DataType.UINT32],
      ['I64', DataType.INT64],
      ['U64', DataType.UINT64],
      ['BOOL', DataType.BOOL],
    ];
    const tensors = dtypes.map(([st, dt], i) => {
      const shape = i % 3 === 0 ? [3, 5] : i % 3 === 1 ? [7] : [2, 1, 3];
      let data = randomBytes(byteLength(dt, elementCount(shape)), i + 1);
      if (dt === DataType.BOOL) data = data.map((b) => b & 1);
      return { name: `t${String(i).padStart(2, '0')}.${st}`, dataType: dt, shape, data };
    });
    tensors.push({ name: 'scalar', dataType: DataType.FLOAT, shape: [], data: randomBytes(4, 99) });
    tensors.push({ name: 'empty', dataType: DataType.INT32, shape: [0, 4], data: new Uint8Array(0) });
    tensors.push({ name: '10', dataType: DataType.UINT8, shape: [1], data: Uint8Array.of(42) }); // integer-like name
    const file = path.join(dir, 'roundtrip.safetensors');
    writeSafetensors(file, tensors, { format: 'pt', note: 'x' });

    const raw = readFileSync(file);
    const n = Number(raw.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    expect(raw.subarray(8, 8 + n).toString().startsWith('{"__metadata__"')).toBe(true);

    const st = openSafetensors(file);
    try {
      expect(st.metadata).toEqual({ format: 'pt', note: 'x' });
      expect(st.dataStart).toBe(8 + n);
      expect([...st.tensors.keys()]).toEqual(tensors.map((t) => t.name)); // data laid out in the given order
      for (const t of tensors) {
        const e = st.tensors.get(t.name)!;
        expect(e.dataType).toBe(t.dataType);
        expect(e.shape).toEqual(t.shape);
        expect(Buffer.from(st.read(t.name)).equals(Buffer.from(t.data))).toBe(true);
      }
      for (const [st_, dt] of dtypes) expect([...st.tensors.values()].find((e) => e.dataType === dt)!.dtype).toBe(st_);
      expectUserError(file, /no tensor named 'nope'/, () => st.read('nope'));
    } finally {
      st.close();
    }
    expect(() => st.read('scalar')).toThrow(/after close/);
  });

  it('writes byte-identical files for identical input and no metadata block when none is given', () => {
    const t = [{ name: 'a', dataType: DataType.FLOAT, shape: [2], data: randomBytes(8, 1) }];
    const a = path.join(dir, 'det-a.safetensors');
    const b = path.join(dir, 'det-b.safetensors');
    writeSafetensors(a, t);
    writeSafetensors(b, t);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    const st = openSafetensors(a);
    expect(st.metadata).toEqual({});
    st.close();
    expect(readFileSync(a).toString('latin1')).not.toContain('__metadata__');
  });

  it('refuses int4 and tells the caller to pack into U8', () => {
    const file = path.join(dir, 'int4.safetensors');
    expectUserError(file, /int4 tensor 'q'.*pack it into a U8 tensor/, () =>
      writeSafetensors(file, [{ name: 'q', dataType: DataType.INT4, shape: [4], data: new Uint8Array(2) }]),
    );
    expect(() => writeSafetensors(file, [{ name: 'q', dataType: DataType.FLOAT, shape: [4], data: new Uint8Array(3) }])).toThrow(/needs 16/);
  });
});

describe('stories260K model.safetensors', () => {
  it('holds 47 fp32 tensors, 260,032 params, with the tied lm_head not stored', () => {
    const st = openSafetensors(STORIES_ST);
    try {
      const names = [...st.tensors.keys()];
      expect(names.length).toBe(47); // embed + 5 layers × 9 + final norm
      expect(names).not.toContain('lm_head.weight');
      expect(st.tensors.get('model.embed_tokens.weight')!.shape).toEqual([512, 64]);
      expect(st.tensors.get('model.layers.0.self_attn.k_proj.weight')!.shape).toEqual([32, 64]); // 4 KV heads × 8
      expect(st.tensors.get('model.layers.4.mlp.down_proj.weight')!.shape).toEqual([64, 172]);
      expect(st.tensors.get('model.norm.weight')!.shape).toEqual([64]);
      for (const l of [0, 1, 2, 3, 4]) {
        for (const p of ['input_layernorm', 'post_attention_layernorm', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']) {
          expect(st.tensors.has(`model.layers.${l}.${p}.weight`)).toBe(true);
        }
        for (const p of ['q', 'k', 'v', 'o']) expect(st.tensors.has(`model.layers.${l}.self_attn.${p}_proj.weight`)).toBe(true);
      }
      let params = 0;
      for (const t of st.tensors.values()) {
        expect(t.dtype).toBe('F32');
        params += elementCount(t.shape);
      }
      expect(params).toBe(260_032); // README's count: tied embeddings counted once
      expect(st.metadata).toEqual({ format: 'pt' });

      // every tensor reads lazily and equals its slice of the whole file
      const whole = readFileSync(STORIES_ST);
      for (const t of st.tensors.values()) {
        const bytes = st.read(t.name);
        expect(bytes.byteLength).toBe(t.end - t.begin);
        expect(Buffer.from(bytes).equals(whole.subarray(st.dataStart + t.begin, st.dataStart + t.end))).toBe(true);
      }
      const norm = new Float32Array(st.read('model.norm.weight').buffer);
      expect(norm.every((v) => Number.isFinite(v) && v !== 0)).toBe(true);
    } finally {
      st.close();
    }
  });

  it('readConfigJson finds config.json from the folder, the weights file, or the config itself', () => {
    for (const p of [STORIES, STORIES_ST, path.join(STORIES, 'config.json')]) {
      const c = readConfigJson(p);
      expect(c.hidden_size).toBe(64);
      expect(c.tie_word_embeddings).toBe(true);
    }
  });
});

describe('bad safetensors inputs are one-line user errors naming the file', () => {
  const f32 = (shape: number[], begin: number, end: number) => ({ dtype: 'F32', shape, data_offsets: [begin, end] });

  it('missing file and directory', () => {
    expectUserError(path.join(dir, 'does-not-exist.safetensors'), /no such file/);
    const d = path.join(dir, 'a-folder');
    mkdirSync(d, { recursive: true });
    expectUserError(d, /is a directory/);
  });

  it('file shorter than 8 bytes', () => {
    const file = path.join(dir, 'short.safetensors');
    writeFileSync(file, Buffer.from([1, 0, 0]));
    expectUserError(file, /3 bytes is too short/);
  });

  it('header length beyond the file', () => {
    const file = path.join(dir, 'longheader.safetensors');
    const b = Buffer.alloc(20);
    b.writeBigUInt64LE(1000n);
    writeFileSync(file, b);
    expectUserError(file, /header length 1000 runs past the end of the 20-byte file/);
    const huge = path.join(dir, 'hugeheader.safetensors');
    b.writeBigUInt64LE(0xffffffffffffffffn);
    writeFileSync(huge, b);
    expectUserError(huge, /runs past the end/);
  });

  it('header not JSON, or not an object', () => {
    expectUserError(craft('notjson.safetensors', '{"a":\n oops', 0), /not JSON/);
    expectUserError(craft('array.safetensors', [1, 2], 0), /expected a JSON object, found an array/);
    expectUserError(craft('null.safetensors', 'null', 0), /expected a JSON object/);
    expectUserError(craft('badutf8.safetensors', Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), 0), /not UTF-8/);
  });

  it('unknown dtype and malformed entries', () => {
    expectUserError(craft('dtype.safetensors', { w: { dtype: 'Q4', shape: [2], data_offsets: [0, 1] } }, 1), /unsupported dtype "Q4"/);
    expectUserError(craft('shape.safetensors', { w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), /shape must be/);
    expectUserError(craft('offs.safetensors', { w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, 4), /data_offsets must be/);
    expectUserError(craft('meta.safetensors', { __metadata__: { a: 1 } }, 0), /__metadata__\.a must be a string/);
  });

  it('header lies about sizes: byte span does not match dtype × shape', () => {
    const file = craft('lies.safetensors', { w: f32([10], 0, 20) }, 20);
    expectUserError(file, /tensor 'w' spans 20 bytes but F32 \[10\] needs 40/);
  });

  it('offsets out of the data buffer (truncated file)', () => {
    expectUserError(craft('oob.safetensors', { w: f32([4], 0, 16) }, 8), /run past the 8-byte data buffer/);
  });

  it('overlapping and non-contiguous offsets', () => {
    expectUserError(craft('overlap.safetensors', { a: f32([2], 0, 8), b: f32([2], 4, 12) }, 12), /tensor 'b' overlaps tensor 'a'/);
    expectUserError(craft('gap.safetensors', { a: f32([2], 0, 8), b: f32([2], 12, 20) }, 20), /4 unused bytes before tensor 'b'/);
    expectUserError(craft('nostart.safetensors', { a: f32([2], 4, 12) }, 12), /4 unused bytes before tensor 'a'/);
  });

  it('data buffer longer than declared', () => {
    expectUserError(craft('trailing.safetensors', { a: f32([2], 0, 8) }, 12), /cover 8 bytes but the data buffer holds 12/);
  });

  it('readConfigJson: missing or malformed config.json', () => {
    const d = path.join(dir, 'ckpt');
    mkdirSync(d, { recursive: true });
    const cfg = path.join(d, 'config.json');
    expectUserError(cfg, /no such file.*config\.json beside it/, () => readConfigJson(path.join(d, 'model.safetensors')));
    writeFileSync(cfg, '{"hidden_size": 64,\n');
    expectUserError(cfg, /not valid JSON/, () => readConfigJson(d));
    writeFileSync(cfg, '[1]');
    expectUserError(cfg, /must be a JSON object/, () => readConfigJson(d));
  });
});
