import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { loadDataset } from '../../src/data/load.js';
import { parseSelection } from '../../src/data/selection.js';
import { DatasetSpec, type TextSpec } from '../../src/data/spec.js';
import { loadTokenizer } from '../../src/data/tokenizer.js';
import type { LoadProgress, TokenDataset } from '../../src/data/types.js';
import { tempDir } from '../helpers.js';
import { eagerTextSequences } from '../reference/text-eager.js';

const ROOT = resolve(import.meta.dirname, '../..');
const tmp = tempDir('pare-lazy-');
afterAll(() => tmp.cleanup());

/** Every text dataset the project ships: the embedded eval spec and each recipe's calibration and eval data. */
function shippedSpecs(): { where: string; spec: TextSpec; baseDir: string }[] {
  const out: { where: string; spec: TextSpec; baseDir: string }[] = [];
  const specFile = join(ROOT, 'fixtures/tinystories/valid-head.data.yaml');
  out.push({ where: 'valid-head.data.yaml', spec: DatasetSpec.parse(parseYaml(readFileSync(specFile, 'utf8'))) as TextSpec, baseDir: dirname(specFile) });
  for (const f of readdirSync(join(ROOT, 'recipes')).filter((n) => n.endsWith('.yaml'))) {
    const recipe = parseYaml(readFileSync(join(ROOT, 'recipes', f), 'utf8'));
    for (const section of ['calibration', 'eval'] as const) {
      const data = recipe[section]?.data;
      if (data?.kind === 'text') out.push({ where: `${f} ${section}`, spec: DatasetSpec.parse(data) as TextSpec, baseDir: join(ROOT, 'recipes') });
    }
  }
  return out;
}

const ids = (ds: { sequences: Int32Array[] }) => ds.sequences.map((s) => Array.from(s));

describe('lazy text loading', () => {
  const specs = shippedSpecs();

  it('finds the shipped specs (the eval set and every recipe with text data)', () => {
    expect(specs.length).toBeGreaterThan(10);
    expect(specs.some((s) => s.spec.segment !== undefined)).toBe(true);
  });

  it('a full load equals the eager reference for every shipped spec, and with strides and segments on them', async () => {
    const seen = new Set<string>();
    for (const { where, spec, baseDir } of specs) {
      for (const variant of [spec, { ...spec, stride: 100, max_length: 128, segment: undefined }, { ...spec, segment: 96 }]) {
        const key = JSON.stringify(variant);
        if (seen.has(key)) continue;
        seen.add(key);
        const path = resolve(baseDir, variant.path);
        const docs = readFileSync(path, 'utf8').split(variant.separator).map((d) => d.trim()).filter(Boolean);
        const selected = variant.select ? parseSelection(variant.select, docs.length, path).map((i) => docs[i]!) : docs;
        const want = eagerTextSequences(selected, loadTokenizer(resolve(baseDir, variant.tokenizer)), variant);
        const got = (await loadDataset(variant, baseDir)) as TokenDataset;
        expect(ids(got), where).toEqual(ids(want));
        expect(got.scoreFrom ?? want.scoreFrom.map(() => 0), where).toEqual(want.scoreFrom);
      }
    }
  }, 60_000);

  it('with a sequence count, a load gives exactly the first sequences of a full load and encodes fewer documents', async () => {
    const { spec, baseDir } = specs[0]!;
    for (const variant of [spec, { ...spec, segment: 128 }, { ...spec, max_length: 64, stride: 48 }, { ...spec, select: '11-46', segment: 512 }]) {
      const full = (await loadDataset(variant, baseDir)) as TokenDataset;
      for (const n of [1, 3, 17, full.sequences.length, full.sequences.length + 5]) {
        const lazy = (await loadDataset(variant, baseDir, { sequences: n })) as TokenDataset;
        expect(ids(lazy)).toEqual(ids(full).slice(0, n));
        expect(lazy.scoreFrom).toEqual(full.scoreFrom?.slice(0, n).some((s) => s > 0) ? full.scoreFrom.slice(0, n) : undefined);
        if (n < full.sequences.length / 4) expect(lazy.description).toMatch(/the first \d+ needed only \d+ docs$/);
        else if (n > full.sequences.length) expect(lazy.description).toBe(full.description);
      }
    }
  });

  it('reports documents and bytes done once the load has taken a second, then once a second', async () => {
    const text = Array.from({ length: 40 }, (_, i) => `Story ${i}: ${'Tom had a red ball. '.repeat(i + 1)}`).join('\n<|endoftext|>\n');
    const path = join(tmp.dir, 'many.txt');
    writeFileSync(path, text);
    const spec = DatasetSpec.parse({ kind: 'text', path, tokenizer: join(ROOT, 'fixtures/stories260K/tok512.bin') });
    // a clock that moves 300 ms every time it is read: about one report per three or four documents
    let clock = 0;
    const seen: LoadProgress[] = [];
    await loadDataset(spec, tmp.dir, { onProgress: (p) => seen.push(p), now: () => (clock += 300) });
    expect(seen.length).toBeGreaterThan(5);
    expect(seen.every((p) => p.totalDocuments === 40 && p.totalBytes === Buffer.byteLength(text.split('<|endoftext|>').map((d) => d.trim()).join('')))).toBe(true);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.documents).toBeGreaterThan(seen[i - 1]!.documents);
    expect(seen[0]!.documents).toBeGreaterThanOrEqual(3);
    // a quick load (the real clock) reports nothing
    const quiet: LoadProgress[] = [];
    await loadDataset({ ...spec, select: '1-2' } as TextSpec, tmp.dir, { onProgress: (p) => quiet.push(p) });
    expect(quiet).toEqual([]);
  });
});
