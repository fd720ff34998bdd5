import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../../src/data/load.js';
import { INPUT_LIMITS } from '../../src/util/read-file.js';
import { runCli } from '../cli/run-cli.js';
import { idx } from '../data/build.js';
import { FIXTURES, tempDir } from '../helpers.js';
import { expectUserError, sha256 } from './input-helpers.js';

/**
 * Issue #24 item 4: datasets, tokenizers and token files are read only from regular files, and only
 * as far as the spec needs. /dev/zero and /dev/urandom never end: reading one whole grows the
 * process without bound. Each is refused by name and field, from a spec, from --data and from a
 * recipe, in bounded time and memory.
 */

const ROOT = resolve(__dirname, '../..');
const tmp = tempDir('pare-devices-');
afterAll(() => tmp.cleanup());

function file(name: string, text: string): string {
  const p = join(tmp.dir, name);
  writeFileSync(p, text);
  return p;
}

const textSpec = (path: string, tokenizer: string) => `kind: text\npath: ${path}\ntokenizer: ${tokenizer}\nselect: "1-2"\nmax_length: 32\n`;
const evalWith = (...data: string[]) => runCli(['eval', FIXTURES.stories, '--data', ...data, '--no-latency']);

describe('devices and FIFOs are refused before they are read', () => {
  it('a spec whose text is /dev/zero', async () => {
    expectUserError(await evalWith(file('zero.data.yaml', textSpec('/dev/zero', FIXTURES.tok512))), '/dev/zero: is a character device, expected a text file (field path); pare reads only regular files');
  });

  it('a spec whose tokenizer is /dev/urandom', async () => {
    expectUserError(await evalWith(file('urandom-tok.data.yaml', textSpec(FIXTURES.validHead, '/dev/urandom'))), '/dev/urandom: is a character device, expected a tokenizer (field tokenizer)');
  });

  it('a tokenizer without an extension (sniffed from its first bytes) that is /dev/zero', async () => {
    const link = join(tmp.dir, 'tokenizer');
    symlinkSync('/dev/zero', link);
    expectUserError(await evalWith(file('zero-tok.data.yaml', textSpec(FIXTURES.validHead, link))), `${link}: is a character device, expected a tokenizer (field tokenizer)`);
  });

  it('a token file that is /dev/urandom, from --data', async () => {
    expectUserError(await evalWith('/dev/urandom', '--seq-len', '16', '--count', '2'), '/dev/urandom: is a character device, expected a token file (field path)');
  });

  it('a token file behind a symbolic link to /dev/zero, from --data', async () => {
    const link = join(tmp.dir, 'val.u16.bin');
    symlinkSync('/dev/zero', link);
    expectUserError(await evalWith(link, '--seq-len', '16'), `${link}: is a character device, expected a token file (field path)`);
  });

  it('a FIFO is refused without blocking on it', async () => {
    const fifo = join(tmp.dir, 'pipe.u16.bin');
    execFileSync('mkfifo', [fifo]);
    expectUserError(await evalWith(fifo, '--seq-len', '16'), `${fifo}: is a FIFO (named pipe), expected a token file (field path)`);
  });

  it('images, IDX and .npy paths that are devices', async () => {
    const cases: [string, string[], string][] = [
      ['images', ['/dev/zero', '--shape', '28x28x1'], '/dev/zero: is a character device, expected an images file (field path)'],
      ['npy', [file('zero-npy.data.yaml', 'kind: npy\npath: /dev/zero\n')], '/dev/zero: is a character device, expected a .npy file (field path)'],
      ['idx', [file('zero-idx.data.yaml', `kind: idx\nimages: ${FIXTURES.mnistImages}\nlabels: /dev/urandom\n`)], '/dev/urandom: is a character device, expected an IDX labels file (field labels)'],
    ];
    for (const [, args, message] of cases) expectUserError(await runCli(['eval', FIXTURES.mnist, '--data', ...args, '--no-latency']), message);
  });

  it('a recipe whose calibration tokenizer is /dev/urandom fails before any pass runs and writes nothing', async () => {
    const dir = join(tmp.dir, 'recipe');
    mkdirSync(dir);
    const recipe = join(dir, 'wanda.yaml');
    writeFileSync(
      recipe,
      `version: 1\ncalibration:\n  data: { kind: text, path: ${FIXTURES.validHead}, tokenizer: /dev/urandom, segment: 32 }\n  samples: 2\npasses:\n  - pass: prune.wanda\n    targets: ["layers.*"]\n    params: { sparsity: 0.5 }\n`,
    );
    const hash = sha256(FIXTURES.stories);
    const out = join(dir, 'out.onnx');
    const r = await runCli(['compress', FIXTURES.stories, '-r', recipe, '-o', out]);
    expectUserError(r, '/dev/urandom: is a character device, expected a tokenizer (field tokenizer)');
    expect(r.err).not.toMatch(/pass 1\/1 prune\.wanda done/);
    expect(sha256(FIXTURES.stories)).toBe(hash);
    expect(existsSync(out)).toBe(false);
  });
});

describe('reads are bounded by what the spec needs', () => {
  it('a token file is read only as far as offset + count windows reach', async () => {
    // 600 MiB, sparse: past the cap on a whole read, but 3 windows of 8 from offset 4 need 56 bytes
    const big = join(tmp.dir, 'big.u16.bin');
    writeFileSync(big, Buffer.from(Uint16Array.from({ length: 64 }, (_, i) => i).buffer));
    truncateSync(big, 600 * 2 ** 20);
    const ds = await loadDataset({ kind: 'tokens', path: big, dtype: 'uint16', seq_len: 8, offset: 4, count: 3 }, tmp.dir);
    expect(ds.kind === 'tokens' && ds.sequences.map((s) => [...s])).toEqual([4, 12, 20].map((a) => Array.from({ length: 8 }, (_, i) => a + i)));
    // without count every window is wanted: the whole file, past the cap
    await expect(loadDataset({ kind: 'tokens', path: big, dtype: 'uint16', seq_len: 8, offset: 0 }, tmp.dir)).rejects.toThrow(
      `${big}: count: the windows asked for span 600.0 MiB of token ids, more than pare reads (512.0 MiB); set count (or a smaller one)`,
    );
  });

  it('raw images are read only as far as the limit asks', async () => {
    const images = join(tmp.dir, 'big-images.bin');
    writeFileSync(images, Uint8Array.from({ length: 2 * 12 }, (_, i) => i));
    truncateSync(images, 12 * 50 * 2 ** 20); // 50 Mi images of 2×2×3, 600 MiB
    const ds = await loadDataset({ kind: 'images', path: images, shape: [2, 2, 3], layout: 'nhwc', scale: 1, limit: 2 }, tmp.dir);
    expect(ds.kind === 'tensors' && [...ds.data]).toEqual(Array.from({ length: 24 }, (_, i) => i));
    await expect(loadDataset({ kind: 'images', path: images, shape: [2, 2, 3], layout: 'nhwc', scale: 1 }, tmp.dir)).rejects.toThrow(`${images}: limit: 52428800 images of 12 bytes are more than pare reads (512.0 MiB); set limit (or a smaller one)`);
  });

  it('an uncompressed IDX file is read only as far as the limit asks', async () => {
    // 700,000 images of 28×28 (549 MB, sparse): past the cap, but the first 2 are 1,568 bytes
    const images = join(tmp.dir, 'big-images-idx3-ubyte');
    writeFileSync(images, idx([700_000, 28, 28], Uint8Array.from({ length: 2 * 784 }, (_, i) => i % 251)));
    truncateSync(images, 16 + 700_000 * 784);
    const ds = await loadDataset({ kind: 'idx', images, scale: 1, limit: 2 }, tmp.dir);
    expect(ds.kind === 'tensors' && [...ds.data]).toEqual(Array.from({ length: 2 * 784 }, (_, i) => i % 251));
    await expect(loadDataset({ kind: 'idx', images, scale: 1 }, tmp.dir)).rejects.toThrow(`${images}: IDX images file data of 523.4 MiB is more than pare reads (512.0 MiB) (field images); set limit (or a smaller one)`);
  });

  it('text and tokenizer files over their caps are refused by size, before they are read', async () => {
    const text = join(tmp.dir, 'huge.txt');
    writeFileSync(text, 'Once upon a time');
    truncateSync(text, INPUT_LIMITS.text + 1);
    expectUserError(await evalWith(text, '--tokenizer', FIXTURES.tok512), `${text}: text file of 256.0 MiB (field path) is larger than pare reads (256.0 MiB); split it into smaller files`);
    const tok = join(tmp.dir, 'huge-tok.bin');
    writeFileSync(tok, readFileSync(FIXTURES.tok512));
    truncateSync(tok, INPUT_LIMITS.tokenizer + 1);
    expectUserError(await evalWith(FIXTURES.validHead, '--tokenizer', tok), `${tok}: tokenizer of 128.0 MiB (field tokenizer) is larger than pare reads (128.0 MiB)`);
  });
});

describe('in a separate process: bounded time and memory', () => {
  const entry = join(ROOT, 'dist/test/robustness/hwm-entry.js');
  const runBounded = (args: string[]) => {
    const hwm = join(tmp.dir, `hwm-${Math.random().toString(36).slice(2)}`);
    const t0 = performance.now();
    // timeout kills the child (and -k 5 follows up with SIGKILL) if a read never ends
    const r = spawnSync('timeout', ['-k', '5', '60', process.execPath, entry, ...args], { env: { ...process.env, PARE_HWM_FILE: hwm }, encoding: 'utf8' });
    return { code: r.status ?? -1, err: r.stderr, ms: performance.now() - t0, peakMiB: Number(readFileSync(hwm, 'utf8')) / 1024 };
  };

  it.each([
    ['/dev/zero through a spec', () => ['--data', file('zero-child.data.yaml', textSpec('/dev/zero', FIXTURES.tok512))]],
    ['/dev/urandom through --data', () => ['--data', '/dev/urandom', '--seq-len', '64']],
  ])('%s: exit 2 within seconds, peak memory far below 1 GB', (_name, data) => {
    expect(existsSync(entry), 'run `npx tsc -p tsconfig.json` first (npm test does)').toBe(true);
    const r = runBounded(['eval', FIXTURES.stories, ...data(), '--no-latency']);
    expectUserError(r, 'is a character device');
    expect(r.ms).toBeLessThan(30_000);
    expect(r.peakMiB).toBeLessThan(1024); // measured about 200 MiB: node, ONNX Runtime and the CLI loaded
  });
});
