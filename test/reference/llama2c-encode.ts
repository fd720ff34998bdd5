/**
 * llama2.c's `encode()` (run.c) as a plain transcription, the exact reference for pare's fast
 * tokenizer: read tokenizer.bin, BOS, the dummy-prefix " " piece, UTF-8 codepoints looked up whole
 * or byte fallback (byte + 3), then after every merge rescan all adjacent pairs for the one whose
 * concatenation is the best-scoring vocabulary piece (strictly better than −1e10, the first pair on
 * ties). This is pare's encoder as it was before the heap version. O(n²): keep the texts short
 * (20k characters take about 0.15 s).
 */
export class ReferenceLlama2cEncoder {
  private readonly vocab: string[] = [];
  private readonly scores: number[] = [];
  private readonly ids = new Map<string, number>();

  constructor(tokenizerBin: Uint8Array) {
    const buf = Buffer.from(tokenizerBin.buffer, tokenizerBin.byteOffset, tokenizerBin.byteLength);
    let off = 4; // int32 max_token_length
    while (off < buf.length) {
      const score = buf.readFloatLE(off);
      const len = buf.readInt32LE(off + 4);
      this.vocab.push(buf.toString('latin1', off + 8, off + 8 + len));
      this.scores.push(score);
      off += 8 + len;
    }
    this.vocab.forEach((p, i) => {
      if (!this.ids.has(p)) this.ids.set(p, i);
    });
  }

  encode(text: string, bos: boolean): number[] {
    const tokens: number[] = bos ? [1] : [];
    const bytes = Buffer.from(text, 'utf8');
    if (bytes.length > 0) {
      const prefix = this.ids.get(' ');
      if (prefix !== undefined) tokens.push(prefix);
    }
    for (let i = 0; i < bytes.length; ) {
      let j = i + 1;
      while (j < bytes.length && (bytes[j]! & 0xc0) === 0x80 && j - i < 4) j++;
      const id = this.ids.get(bytes.toString('latin1', i, j));
      if (id !== undefined) tokens.push(id);
      else for (let k = i; k < j; k++) tokens.push(bytes[k]! + 3);
      i = j;
    }
    // pare's encoder before the heap (commit ee4f083): merged[i] caches the piece pair (i, i+1)
    // forms (-1: none), so a merge looks up only its neighbours again; the scan is still O(n)
    const pairId = (a: number, b: number) => this.ids.get(this.vocab[a]! + this.vocab[b]!) ?? -1;
    const merged = tokens.map((_, i) => (i + 1 < tokens.length ? pairId(tokens[i]!, tokens[i + 1]!) : -1));
    for (;;) {
      let best = -1e10;
      let bestIdx = -1;
      for (let i = 0; i < merged.length; i++) {
        const id = merged[i]!;
        if (id !== -1 && this.scores[id]! > best) {
          best = this.scores[id]!;
          bestIdx = i;
        }
      }
      if (bestIdx === -1) break;
      tokens.splice(bestIdx, 2, merged[bestIdx]!);
      merged.splice(bestIdx, 1);
      merged[bestIdx] = bestIdx + 1 < tokens.length ? pairId(tokens[bestIdx]!, tokens[bestIdx + 1]!) : -1;
      if (bestIdx > 0) merged[bestIdx - 1] = pairId(tokens[bestIdx - 1]!, tokens[bestIdx]!);
    }
    return tokens;
  }
}
