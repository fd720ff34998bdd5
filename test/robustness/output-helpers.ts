import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { expect } from 'vitest';
import { run, type Io } from '../../src/cli/main.js';
import type { RunHooks } from '../../src/pass/hooks.js';
import { sha256File } from '../../src/util/hash.js';
import { FIXTURES } from '../helpers.js';

/**
 * Shared by the output-safety tests (issue 24, items 1, 2, 7 and 8): a scratch folder holding a copy
 * of the inputs, the CLI run in-process (with hooks) or as a child process, and the checks every
 * test makes: the exit code, one `pare:` line naming the path, the inputs' sha256 unchanged, and
 * the folder holding exactly what it held before (no output, temp file or work folder left).
 */

export const ROOT = resolve(__dirname, '../..');
export const BIN = join(ROOT, 'bin/pare.js');

/** Text evaluation small enough for many runs: two stories of 64 tokens. */
export const SMALL_EVAL = (text: string, tokenizer: string) => `eval:\n  data: { kind: text, path: ${text}, tokenizer: ${tokenizer}, select: "1-2", max_length: 64 }\n`;

export const ONE_PASS = 'passes:\n  - pass: prune.magnitude\n    targets: ["layers.*"]\n    params: { sparsity: 0.5 }\n';
export const TWO_PASSES = `${ONE_PASS}  - pass: prune.magnitude\n    targets: ["layers.*.mlp.*"]\n    params: { pattern: "2:4" }\n`;

export interface Scratch {
  dir: string;
  model: string;
  text: string;
  tokenizer: string;
  /** writes a recipe into the scratch folder */
  recipe(name: string, body: string): string;
  cleanup(): void;
}

/** A world-readable scratch folder with copies of stories260K, its tokenizer and the evaluation text. */
export function scratch(prefix: string): Scratch {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  const model = join(dir, 'model.onnx');
  const text = join(dir, 'valid-head.txt');
  const tokenizer = join(dir, 'tok512.bin');
  copyFileSync(FIXTURES.stories, model);
  copyFileSync(FIXTURES.validHead, text);
  copyFileSync(FIXTURES.tok512, tokenizer);
  return {
    dir,
    model,
    text,
    tokenizer,
    recipe(name, body) {
      const path = join(dir, name);
      writeFileSync(path, `version: 1\n${body}`);
      return path;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Every file, folder and symlink under `dir` (hidden ones included), with each file's sha256. */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isSymbolicLink()) out[relative(dir, p)] = `-> ${readlinkSync(p)}`;
      else if (st.isDirectory()) {
        out[`${relative(dir, p)}/`] = 'folder';
        walk(p);
      } else out[relative(dir, p)] = sha256File(p);
    }
  };
  walk(dir);
  return out;
}

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** The CLI in-process, with hooks where a test holds or fails the run at a pass. */
export async function pare(args: string[], hooks?: RunHooks): Promise<CliResult> {
  let out = '';
  let err = '';
  const io: Io = { out: (t) => (out += t.endsWith('\n') ? t : `${t}\n`), err: (t) => (err += t.endsWith('\n') ? t : `${t}\n`), fancy: false };
  const code = await run(args, io, hooks);
  return { code, out, err };
}

/** The built CLI as a child process (optionally under another command, e.g. setpriv), killed after `timeoutMs`. */
export function pareChild(args: string[], opts: { prefix?: string[]; cwd?: string; timeoutMs?: number } = {}): CliResult {
  const argv = [...(opts.prefix ?? []), process.execPath, BIN, ...args];
  const r = spawnSync(argv[0]!, argv.slice(1), { cwd: opts.cwd, encoding: 'utf8', timeout: opts.timeoutMs ?? 120_000, killSignal: 'SIGKILL' });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/**
 * The refusal every test expects: exit `code`, stderr exactly one line that starts with `pare:`
 * and names each of `paths`; no internal error.
 */
export function expectOneLineError(r: CliResult, code: number, ...mentions: (string | RegExp)[]): void {
  expect(r.err, r.err).not.toContain('internal error');
  expect(r.code, r.err).toBe(code);
  const lines = r.err.trimEnd().split('\n');
  expect(lines, r.err).toHaveLength(1);
  expect(lines[0]).toMatch(/^pare: /);
  for (const m of mentions) {
    if (typeof m === 'string') expect(lines[0]).toContain(m);
    else expect(lines[0]).toMatch(m);
  }
}

/** The inputs' hashes now; `unchanged()` asserts they still match. */
export function hashes(...paths: string[]): { unchanged(): void } {
  const before = paths.map((p) => sha256File(p));
  return { unchanged: () => expect(paths.map((p) => sha256File(p))).toEqual(before) };
}

function probe(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { timeout: 10_000, killSignal: 'SIGKILL' });
  return r.status === 0;
}

const IS_ROOT = process.getuid?.() === 0;

/** Whether this process may mount a tmpfs (root in a container that allows it). */
export const CAN_MOUNT = (() => {
  if (!IS_ROOT) return false;
  const dir = mkdtempSync(join(tmpdir(), 'pare-mount-probe-'));
  try {
    if (!probe('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir])) return false;
    probe('umount', [dir]);
    return true;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
})();
export const NO_MOUNT = 'skipped: mounting a tmpfs is not allowed here (needs root); the injected-error variant covers the same path';

/** A tmpfs at a new folder under `parent`; `options` like "size=1m" or "ro". */
export function mountTmpfs(parent: string, name: string, options: string): { dir: string; unmount(): void } {
  const dir = join(parent, name);
  mkdirSync(dir);
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `${options},mode=0755`, 'tmpfs', dir], { timeout: 10_000, killSignal: 'SIGKILL', encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mount tmpfs at ${dir}: ${r.stderr}`);
  return { dir, unmount: () => spawnSync('umount', ['-l', dir], { timeout: 10_000, killSignal: 'SIGKILL' }) };
}

/**
 * The command prefix that runs a child as nobody, when this process is root, setpriv works and nobody can
 * run pare from this checkout (a clone under a 0700 temp folder is out of nobody's reach); undefined otherwise.
 */
export const AS_NOBODY: string[] | undefined = (() => {
  const prefix = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
  if (!IS_ROOT) return undefined;
  return probe(prefix[0]!, [...prefix.slice(1), process.execPath, BIN, '--version']) ? prefix : undefined;
})();
/** Permissions bind only a process that is not root. */
export const PERMISSIONS_APPLY = !IS_ROOT || AS_NOBODY !== undefined;
