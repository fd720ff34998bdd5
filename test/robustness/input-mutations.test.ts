import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ort } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { runCli } from '../cli/run-cli.js';
import { FIXTURES, tempDir } from '../helpers.js';
import { expectUserError } from './input-helpers.js';

/**
 * Issue #24's property test: for 200 seeded random byte mutations of stories260K (flips,
 * truncations, insertions, splices), `inspect`, `eval` and `compress` either succeed (and compress
 * writes a model ONNX Runtime loads) or exit 2 with one `pare:` line. Never exit 1, never a hang,
 * never a native crash of ONNX Runtime. Runs are in-process (cheap); a few mutants run again in a
 * child process under `timeout` with their peak memory read from /proc.
 */

const ROOT = resolve(__dirname, '../..');
const MUTANTS = 200;
const SEED = 24;

const tmp = tempDir('pare-mutants-');
afterAll(() => tmp.cleanup());

type Mutant = { kind: 'flip' | 'truncate' | 'insert' | 'splice'; bytes: Uint8Array };

/**
 * The file is 1.3 MB of weights around a few KB of structure: the graph's nodes at the start and the
 * initializers' names and the graph's inputs and outputs at the end. Positions are drawn 30 % from
 * the first 4 KiB, 30 % from the last 8 KiB and 40 % anywhere, so most mutants touch structure.
 */
function mutants(base: Uint8Array, count: number, seed: number): Mutant[] {
  const r = seededRandom(seed);
  const int = (n: number) => Math.floor(r() * n);
  const pos = (len: number) => {
    const u = r();
    if (u < 0.3) return int(Math.min(len, 4096));
    if (u < 0.6) return len - 1 - int(Math.min(len, 8192));
    return int(len);
  };
  return Array.from({ length: count }, (): Mutant => {
    const b = Uint8Array.from(base);
    switch (int(4)) {
      case 0: {
        const n = 1 + int(8);
        for (let i = 0; i < n; i++) b[pos(b.length)] = int(256);
        return { kind: 'flip', bytes: b };
      }
      case 1:
        return { kind: 'truncate', bytes: b.subarray(0, pos(b.length)) };
      case 2: {
        const at = pos(b.length);
        const extra = Uint8Array.from({ length: 1 + int(16) }, () => int(256));
        const out = new Uint8Array(b.length + extra.length);
        out.set(b.subarray(0, at));
        out.set(extra, at);
        out.set(b.subarray(at), at + extra.length);
        return { kind: 'insert', bytes: out };
      }
      default: {
        const from = pos(b.length);
        const piece = b.slice(from, from + 1 + int(64));
        const to = pos(b.length);
        b.set(piece.subarray(0, b.length - to), to);
        return { kind: 'splice', bytes: b };
      }
    }
  });
}

describe(`${MUTANTS} byte mutations of stories260K`, () => {
  const base = readFileSync(FIXTURES.stories);
  const all = mutants(base, MUTANTS, SEED);
  const data = join(tmp.dir, 'two-stories.data.yaml');
  const recipe = join(tmp.dir, 'cast.yaml');
  writeFileSync(data, `kind: text\npath: ${FIXTURES.validHead}\ntokenizer: ${FIXTURES.tok512}\nselect: "1-2"\nmax_length: 32\n`);
  writeFileSync(recipe, 'version: 1\npasses:\n  - pass: quantize.cast\n    targets: ["*"]\n');
  const path = join(tmp.dir, 'mutant.onnx');
  const out = join(tmp.dir, 'out.onnx');
  /** mutants inspect accepted: the ones a child process runs again */
  const accepted: number[] = [];

  it('inspect, eval and compress each succeed or exit 2 with one line', async () => {
    const tally: Record<string, number> = {};
    for (let i = 0; i < all.length; i++) {
      writeFileSync(path, all[i]!.bytes);
      for (const args of [['inspect', path], ['eval', path, '--data', data, '--no-latency', '--threads', '1'], ['compress', path, '-r', recipe, '-o', out, '--threads', '1']]) {
        rmSync(out, { force: true });
        const t0 = performance.now();
        const r = await runCli(args);
        const where = `mutant ${i} (${all[i]!.kind}), ${args[0]}: exit ${r.code}\n${r.err}`;
        expect(performance.now() - t0, where).toBeLessThan(20_000);
        tally[`${args[0]} ${r.code}`] = (tally[`${args[0]} ${r.code}`] ?? 0) + 1;
        if (process.env.PARE_MUTANT_LOG) console.log(`${i} ${all[i]!.kind} ${args[0]}=${r.code} ${Math.round(performance.now() - t0)}ms ${r.err.trim().split('\n').at(-1)?.slice(0, 200) ?? ''}`);
        if (r.code === 0) {
          if (args[0] === 'inspect') accepted.push(i);
          if (args[0] === 'compress') await (await ort.InferenceSession.create(out)).release();
        } else {
          expect([2], where).toContain(r.code);
          expectUserError(r, path);
        }
      }
    }
    // both outcomes occur, so the property was tested on each side. Seed 24 measured: inspect accepts
    // 50 and refuses 150; compress the same; eval refuses one more, whose corrupted Einsum equation
    // ONNX Runtime loads but cannot run. About 27 s on 2 busy cores.
    expect(tally['inspect 0'] ?? 0).toBeGreaterThan(MUTANTS / 10);
    expect(tally['inspect 2'] ?? 0).toBeGreaterThan(MUTANTS / 10);
    expect(Object.keys(tally).every((k) => / [02]$/.test(k)), JSON.stringify(tally)).toBe(true);
    if (process.env.PARE_MUTANT_LOG) console.log(JSON.stringify(tally));
  }, 600_000);

  it('mutants accepted by inspect run in a child process within a time and memory bound', () => {
    const entry = join(ROOT, 'dist/test/robustness/hwm-entry.js');
    expect(existsSync(entry), 'run `npx tsc -p tsconfig.json` first (npm test does)').toBe(true);
    expect(accepted.length).toBeGreaterThanOrEqual(2);
    for (const [i, args] of [
      [accepted[0]!, ['eval', path, '--data', data, '--no-latency', '--threads', '1']],
      [accepted[1]!, ['compress', path, '-r', recipe, '-o', out, '--threads', '1']],
    ] as const) {
      writeFileSync(path, all[i]!.bytes);
      rmSync(out, { force: true });
      const hwm = join(tmp.dir, 'hwm');
      const r = spawnSync('timeout', ['-k', '5', '120', process.execPath, entry, ...args], { env: { ...process.env, PARE_HWM_FILE: hwm }, encoding: 'utf8' });
      expect([0, 2], `mutant ${i} ${args[0]}: ${r.stderr}`).toContain(r.status);
      // measured about 250 MiB
      expect(Number(readFileSync(hwm, 'utf8')) / 1024, `mutant ${i} ${args[0]}`).toBeLessThan(1024);
    }
  });
});
