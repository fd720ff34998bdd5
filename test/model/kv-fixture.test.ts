import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kvFixtureBytes } from '../../fixtures/generate-kv-fixture.js';
import { modelIo } from '../../src/model/io.js';
import { readOnnx, writeOnnx } from '../../src/model/onnx-io.js';
import { ModelProtoType } from '../../src/model/onnx-schema.js';
import { seededRandom } from '../../src/util/random.js';
import { allClose, tempDir } from '../helpers.js';
import { argmax, Decoder, position } from './kv-decode.js';

const FIXTURES = resolve(__dirname, '../../fixtures');
const KV = join(FIXTURES, 'stories260K-kv/model.onnx');
const PLAIN = join(FIXTURES, 'stories260K/model.onnx');

function tokens(batch: number, seq: number, seed: number): number[][] {
  const r = seededRandom(seed);
  return Array.from({ length: batch }, () => Array.from({ length: seq }, () => Math.floor(r() * 512)));
}

async function open(path: string): Promise<Decoder> {
  return Decoder.open(readOnnx(path), path);
}

describe('fixtures/stories260K-kv (Optimum KV-cache layout)', () => {
  it('the committed model.onnx equals a fresh generation, byte for byte, and config.json is the source copy', () => {
    const fresh = kvFixtureBytes(join(FIXTURES, 'stories260K'));
    expect(Buffer.from(fresh).equals(readFileSync(KV))).toBe(true);
    expect(readFileSync(join(FIXTURES, 'stories260K-kv/config.json'), 'utf8')).toBe(readFileSync(join(FIXTURES, 'stories260K/config.json'), 'utf8'));
    const io = modelIo(readOnnx(KV));
    expect(io.kv!.layers.map((l) => [l.pastKey, l.presentValue, l.heads, l.headDim])).toEqual([0, 1, 2, 3, 4].map((i) => [`past_key_values.${i}.key`, `present.${i}.value`, 4, 8]));
    expect([io.attentionMask?.name, io.positionIds?.name, io.outputWidth]).toEqual(['attention_mask', 'position_ids', 512]);
  });

  it("logits at past length 0 equal fixtures/stories260K/model.onnx's (batch 2, seq 1..64)", async () => {
    const [kv, plain] = [await open(KV), await open(PLAIN)];
    try {
      for (const seq of [1, 33, 64]) {
        const ids = tokens(2, seq, 40 + seq);
        const c = allClose(await kv.full(ids), await plain.full(ids), 1e-6, 1e-6);
        expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-6); // measured 0
        expect(c.ok, c.worst).toBe(true);
      }
    } finally {
      await kv.release();
      await plain.release();
    }
  });

  it('cached greedy decoding of 48 tokens equals re-running the whole sequence on the plain model', async () => {
    const [kv, plain] = [await open(KV), await open(PLAIN)];
    try {
      const seq = [1, ...tokens(1, 6, 7)[0]!];
      let logits = await kv.step([seq]);
      let last = position(logits, 512, seq.length, 0, seq.length - 1);
      let worst = 0;
      for (let s = 0; s < 48; s++) {
        const full = await plain.full([seq]);
        const c = allClose(last, position(full, 512, seq.length, 0, seq.length - 1), 1e-4, 1e-5);
        worst = Math.max(worst, c.relFro);
        expect(argmax(last), `step ${s}`).toBe(argmax(position(full, 512, seq.length, 0, seq.length - 1)));
        seq.push(argmax(last));
        logits = await kv.step([[seq.at(-1)!]]);
        last = logits.subarray(0, 512);
      }
      expect(worst).toBeLessThanOrEqual(1e-5); // measured 1.1e-6
    } finally {
      await kv.release();
      await plain.release();
    }
  });

  it("written with external data (model.onnx + model.onnx.data, or Optimum's model.onnx_data) it loads and gives the same logits", async () => {
    const tmp = tempDir();
    const ids = tokens(2, 12, 3);
    const same = async (file: string) => {
      // ONNX Runtime reading the data file itself, and pare reading it into an in-memory model
      for (const d of [await open(file), await Decoder.open(readOnnx(file))]) {
        try {
          const c = allClose(await d.full(ids), want, 0, 0);
          expect(c.ok, `${file}: ${c.worst}`).toBe(true);
          expect(d.io.kv!.layers).toHaveLength(5);
        } finally {
          await d.release();
        }
      }
    };
    const kv = await open(KV);
    const want = await kv.full(ids);
    await kv.release();
    try {
      const path = join(tmp.dir, 'model.onnx');
      expect(writeOnnx(readOnnx(KV), path, { externalData: true }).files).toEqual([path, `${path}.data`]);
      // the weights left the protobuf (1.1 MB inline): measured 67 KB of graph and small tensors, 1.04 MB of data
      expect(readFileSync(path).byteLength).toBeLessThan(128 * 1024);
      expect(readFileSync(`${path}.data`).byteLength).toBeGreaterThan(1_000_000);
      await same(path);
      // Optimum's name for the data file: only each tensor's location string differs
      const proto = readOnnx(path).proto;
      for (const t of proto.graph!.initializer ?? []) for (const e of t.external_data ?? []) if (e.key === 'location') e.value = 'model.onnx_data';
      const optimum = join(tmp.dir, 'optimum');
      mkdirSync(optimum);
      writeFileSync(join(optimum, 'model.onnx'), ModelProtoType.encode(proto as never).finish());
      renameSync(`${path}.data`, join(optimum, 'model.onnx_data'));
      await same(join(optimum, 'model.onnx'));
    } finally {
      tmp.cleanup();
    }
  });
});
