/**
 * Tokenizer speed on a WikiText-2-sized text. WikiText-2's test split (1.3 MB) is not on these
 * machines, so the text is built from what is: the lines of Tiny Shakespeare (../shared, when
 * present) and of the TinyStories in fixtures/, shuffled with a fixed seed and repeated to
 * 1,300,000 bytes, cut at a line end. Like WikiText-2 raw it has no document separator, so a
 * text dataset sees it as one 1.3 MB document.
 *
 * Rows: the llama2.c encoder (heap merge) on the whole text; the O(n²) encoder it replaced
 * (test/reference) on prefixes, with its time for the whole text extrapolated as n²; the Hugging
 * Face tokenizer.json path (@huggingface/tokenizers, a Llama-style BPE built from tok512.bin, the
 * same ids) on the whole text and on the same text one line per document; and loadDataset as
 * calibration data (32 × 512 tokens), as one document and with one document per line. Times are wall
 * seconds and CPU seconds of this process: on a shared machine the wall time includes waiting for a core.
 * Run: npx tsc -p tsconfig.json && node dist/bench/tokenize.js
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { HfTokenizer } from '../src/data/hf-tokenizer.js';
import { Llama2cTokenizer } from '../src/data/llama2c-tokenizer.js';
import { loadDataset } from '../src/data/load.js';
import { DatasetSpec } from '../src/data/spec.js';
import type { TokenDataset } from '../src/data/types.js';
import { llamaTokenizerJson } from '../test/data/build.js';
import { ReferenceLlama2cEncoder } from '../test/reference/llama2c-encode.js';
import { rng } from '../test/reference/random.js';

const ROOT = resolve(import.meta.dirname, '../..');
const TOK = join(ROOT, 'fixtures/stories260K/tok512.bin');
const SHAKESPEARE = resolve(ROOT, '../shared/data/tinyshakespeare/input.txt');
const TARGET_BYTES = 1_300_000;

/** The bench text: shuffled lines of the texts we have, repeated to 1.3 MB. */
export function wikitextSizedText(): { text: string; sources: string } {
  const sources = [join(ROOT, 'fixtures/tinystories/valid-head.txt'), ...(existsSync(SHAKESPEARE) ? [SHAKESPEARE] : [])];
  const lines = sources.flatMap((p) => readFileSync(p, 'utf8').split('\n')).filter((l) => l.trim() && !l.includes('<|endoftext|>'));
  const names = sources.map((p) => relative(ROOT, p)).join(' + ');
  const u = rng(2);
  const out: string[] = [];
  let bytes = 0;
  while (bytes < TARGET_BYTES) {
    const order = lines.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(u() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (const i of order) {
      const line = `${lines[i]}\n`;
      if (bytes + Buffer.byteLength(line) > TARGET_BYTES) return { text: out.join(''), sources: names };
      out.push(line);
      bytes += Buffer.byteLength(line);
    }
  }
  return { text: out.join(''), sources: names };
}

/** wall seconds and CPU seconds (user + system): on a shared machine the second is what the code costs */
function timed<T>(fn: () => T): { value: T; s: number; cpu: number } {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const value = fn();
  const c = process.cpuUsage(c0);
  return { value, s: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
}

const fmt = (s: number) => (s < 10 ? s.toFixed(2) : s.toFixed(0));
const row = (what: string, input: string, tokens: number | string, t: { s: number; cpu?: number }, note = '') =>
  `| ${what} | ${input} | ${typeof tokens === 'number' ? tokens.toLocaleString('en-US') : tokens} | ${fmt(t.s)} | ${t.cpu === undefined ? '' : fmt(t.cpu)} | ${typeof tokens === 'number' ? Math.round(tokens / t.s).toLocaleString('en-US') : ''} | ${note} |`;

export async function benchTokenize(): Promise<string> {
  const { text, sources } = wikitextSizedText();
  const mb = `${(Buffer.byteLength(text) / 1e6).toFixed(2)} MB`;
  const dir = mkdtempSync(join(tmpdir(), 'pare-bench-tok-'));
  try {
    const rows = [
      `Text: ${mb} (${text.split('\n').length - 1} lines of ${sources}, shuffled, seed 2). Target: the whole text with tok512.bin in ≤ 2 s.`,
      '',
      '| encoder | input | tokens | s | CPU s | tokens/s | note |',
      '| --- | --- | ---: | ---: | ---: | ---: | --- |',
    ];
    const tok = Llama2cTokenizer.read(TOK);
    tok.encode(text.slice(0, 20_000), { bos: true }); // warm-up
    const fast = timed(() => tok.encode(text, { bos: true }));
    rows.push(row('llama2.c tok512.bin, heap merge', `${mb}, one document`, fast.value.length, fast, fast.s <= 2 ? 'target met' : 'TARGET MISSED'));

    const ref = new ReferenceLlama2cEncoder(readFileSync(TOK));
    let last = { n: 0, s: 0 };
    for (const n of [5_000, 20_000, 40_000]) {
      const r = timed(() => ref.encode(text.slice(0, n), true));
      rows.push(row('llama2.c O(n²) encoder (before)', `first ${n.toLocaleString('en-US')} chars`, r.value.length, r));
      last = { n, s: r.s };
    }
    const extrapolated = last.s * (text.length / last.n) ** 2;
    rows.push(row('llama2.c O(n²) encoder (before)', `${mb}, one document`, '–', { s: extrapolated }, `extrapolated as n² from ${last.n.toLocaleString('en-US')} chars, not run`));

    const hfPath = join(dir, 'tokenizer.json');
    writeFileSync(hfPath, JSON.stringify(llamaTokenizerJson(tok)));
    const hf = HfTokenizer.read(hfPath);
    const hfWhole = timed(() => hf.encode(text, { bos: true }));
    const same = hfWhole.value.length === fast.value.length && hfWhole.value.every((id, i) => id === fast.value[i]);
    rows.push(row('tokenizer.json (@huggingface/tokenizers)', `${mb}, one document`, hfWhole.value.length, hfWhole, same ? 'same ids as llama2.c' : 'ids DIFFER from llama2.c'));
    const lines = text.split('\n').filter(Boolean);
    const hfLines = timed(() => lines.reduce((a, l) => a + hf.encode(l, { bos: true }).length, 0));
    rows.push(row('tokenizer.json (@huggingface/tokenizers)', `${mb}, one document per line (${lines.length.toLocaleString('en-US')})`, hfLines.value, hfLines));

    const textPath = join(dir, 'wiki-sized.txt');
    writeFileSync(textPath, text);
    for (const [label, separator] of [['one document', '<|endoftext|>'], ['one document per line', '\n']] as const) {
      const spec = DatasetSpec.parse({ kind: 'text', path: textPath, tokenizer: TOK, separator, segment: 512 });
      const load = await timedAsync(() => loadDataset(spec, dir, { sequences: 32 }));
      const ds = load.value as TokenDataset;
      rows.push(row('loadDataset, calibration 32 × 512', `${mb}, ${label}`, `${(ds.sequences.length * 512).toLocaleString('en-US')} kept`, load, ds.description.split(', ').slice(-1)[0]!));
    }
    return rows.join('\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function timedAsync<T>(fn: () => Promise<T>): Promise<{ value: T; s: number; cpu: number }> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const value = await fn();
  const c = process.cpuUsage(c0);
  return { value, s: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(await benchTokenize());
}
