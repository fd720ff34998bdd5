import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDataset } from '../../src/data/load.js';
import { evaluate } from '../../src/eval/evaluate.js';
import type { LMQuality } from '../../src/eval/lm.js';
import { linears } from '../../src/model/linears.js';
import { loadModel } from '../../src/model/load.js';
import { readOnnx, writeOnnx } from '../../src/model/onnx-io.js';
import { seededRandom } from '../../src/pipeline/pass.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { allClose, SHARED, sharedPath, tempDir } from '../helpers.js';

async function logits(model: ReturnType<typeof readOnnx>, vocab: number, seq: number): Promise<Float32Array> {
  const s = await sessionFromModel(model, { threads: 1 });
  const r = seededRandom(seq);
  const ids = BigInt64Array.from({ length: 2 * seq }, () => BigInt(Math.floor(r() * vocab)));
  return (await s.run({ input_ids: new ort.Tensor('int64', ids, [2, seq]) })).logits!.data as Float32Array;
}

describe('Llama builder (safetensors + config.json → ONNX)', () => {
  for (const [name, vocab] of [['stories260K', 512], ['shakespeare-char', 65]] as const) {
    it(`${name}: logits equal the PyTorch-exported ONNX`, async () => {
      const built = loadModel(sharedPath(`models/${name}/model.safetensors`));
      const exported = readOnnx(sharedPath(`models/${name}/model.onnx`));
      for (const seq of [1, 17, 64]) {
        const c = allClose(await logits(built, vocab, seq), await logits(exported, vocab, seq), 1e-4, 1e-4);
        expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5); // measured ~1e-7
      }
      expect(linears(built).map((l) => l.name)).toEqual(linears(exported).map((l) => l.name));
    });
  }

  it('stories260K built from safetensors reproduces perplexity 3.397 on valid-head.txt', async () => {
    const tmp = tempDir();
    try {
      const path = join(tmp.dir, 'built.onnx');
      writeOnnx(loadModel(resolve(__dirname, '../../fixtures/stories260K/model.safetensors')), path);
      const data = await loadDataset({ kind: 'text', path: 'data/tinystories/valid-head.txt', tokenizer: 'models/stories260K/tok512.bin', separator: '<|endoftext|>', bos: true, max_length: 512 }, SHARED);
      const q = (await evaluate(path, data, { latency: false })).model.quality as LMQuality;
      expect(q.perplexity.toFixed(3)).toBe('3.397');
    } finally {
      tmp.cleanup();
    }
  });
});
