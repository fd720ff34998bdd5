import { ort } from '../src/runtime/ort.js';

/**
 * Token ids [batch, seq] as the feeds a session's model takes from scratch, read from ONNX
 * Runtime's own input metadata (independently of pare's model/io): `input_ids`, plus an all-ones
 * `attention_mask`, positions 0..seq−1 and empty KV-cache tensors when the model has them. Lets a
 * test run single-input and KV-cache decoders alike.
 */
export function decoderFeeds(session: ort.InferenceSession, ids: BigInt64Array | readonly number[], batch: number, seq: number): Record<string, ort.Tensor> {
  const data = ids instanceof BigInt64Array ? ids : BigInt64Array.from(ids, (x) => BigInt(x));
  const feeds: Record<string, ort.Tensor> = { input_ids: new ort.Tensor('int64', data, [batch, seq]) };
  for (const meta of session.inputMetadata) {
    if (meta.name === 'input_ids' || !meta.isTensor) continue;
    if (meta.name === 'attention_mask') feeds[meta.name] = new ort.Tensor('int64', new BigInt64Array(batch * seq).fill(1n), [batch, seq]);
    else if (meta.name === 'position_ids') feeds[meta.name] = new ort.Tensor('int64', BigInt64Array.from({ length: batch * seq }, (_, i) => BigInt(i % seq)), [batch, seq]);
    else if (meta.name.startsWith('past_key_values.')) {
      const [, heads, , headDim] = meta.shape;
      if (typeof heads !== 'number' || typeof headDim !== 'number') throw new Error(`${meta.name}: symbolic KV heads or head size [${meta.shape.join(', ')}]`);
      feeds[meta.name] = new ort.Tensor('float32', new Float32Array(0), [batch, heads, 0, headDim]);
    } else throw new Error(`decoderFeeds: no value for input '${meta.name}'`);
  }
  return feeds;
}
