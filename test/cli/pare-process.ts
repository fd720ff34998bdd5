import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '../..');
/** the built CLI, and the built CLI that holds at a pass (hold-entry.ts) */
export const PARE_BIN = join(ROOT, 'bin/pare.js');
export const HOLD_ENTRY = join(ROOT, 'dist/test/cli/hold-entry.js');

export interface PareProcess {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
}

/**
 * Runs `pare` as a child in its own process group. Past `timeoutMs` the whole group is killed
 * (SIGKILL) and the promise rejects; with `killWhen` (asked on every stderr write and every 100 ms,
 * so it may look at files too), the group gets `signal` once it answers true.
 */
export function runPare(
  args: string[],
  o: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; entry?: string[]; killWhen?: (stderr: string) => boolean; signal?: NodeJS.Signals } = {},
): Promise<PareProcess> {
  const timeoutMs = o.timeoutMs ?? 120_000;
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [...(o.entry ?? [PARE_BIN]), ...args], { cwd: o.cwd ?? ROOT, env: o.env ?? process.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let killed = false;
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      killGroup('SIGKILL');
      fail(new Error(`pare ${args.join(' ')} ran past ${timeoutMs} ms and was killed; stderr: ${err.slice(-3000)}`));
    }, timeoutMs);
    const check = () => {
      if (!killed && o.killWhen?.(err)) {
        killed = true;
        killGroup(o.signal ?? 'SIGKILL');
      }
    };
    const poll = o.killWhen ? setInterval(check, 100) : undefined;
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      check();
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      clearInterval(poll);
      fail(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearInterval(poll);
      done({ code, signal, out, err });
    });
  });
}
