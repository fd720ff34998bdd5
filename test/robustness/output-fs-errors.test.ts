import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { injectFsFault, type FsWriteOp } from '../../src/util/fs-write.js';
import {
  AS_NOBODY,
  CAN_MOUNT,
  expectOneLineError,
  hashes,
  mountTmpfs,
  NO_MOUNT,
  ONE_PASS,
  pare,
  pareChild,
  PERMISSIONS_APPLY,
  scratch,
  SMALL_EVAL,
  snapshot,
  TWO_PASSES,
} from './output-helpers.js';

/**
 * Issue 24 item 2: every filesystem failure on the write and work paths is exit 2 with one line
 * naming the path, the cause and what to do, and leaves no output, temp file or work folder. Real
 * conditions where this machine allows them (an existing folder as -o, a file as a folder, a 0555
 * folder for a process that is not root, a read-only and a tiny tmpfs), and for each errno an
 * injected failure (src/util/fs-write.ts injectFsFault) at a chosen call of the run.
 */

const s = scratch('pare-fs-errors-');
afterAll(() => s.cleanup());
const recipe = s.recipe('r.yaml', `${ONE_PASS}${SMALL_EVAL(s.text, s.tokenizer)}`);
const twoPasses = s.recipe('two.yaml', TWO_PASSES);

let before: Record<string, string>;
let removeFault: (() => void) | undefined;
beforeEach(() => {
  before = snapshot(s.dir);
});
afterEach(() => {
  removeFault?.();
  removeFault = undefined;
});

/** Fails the first call of `op` whose path `where` accepts with `code`. */
function failOnce(op: FsWriteOp, where: (path: string) => boolean, code: string): { hit: () => boolean } {
  let hit = false;
  removeFault = injectFsFault((o, path) => {
    if (hit || o !== op || !where(path)) return undefined;
    hit = true;
    return code;
  });
  return { hit: () => hit };
}

async function fails(args: string[], ...mentions: (string | RegExp)[]): Promise<void> {
  const inputs = hashes(s.model, recipe, s.text, s.tokenizer);
  const r = await pare(args);
  expectOneLineError(r, 2, ...mentions);
  inputs.unchanged();
  expect(snapshot(s.dir)).toEqual(before);
}

const out = join(s.dir, 'out.onnx');
const report = join(s.dir, 'report.json');
const inWork = (name: string) => (p: string) => p.includes(`${join(s.dir, '.pare-work')}/`) && basename(p).includes(name);

describe('real conditions, refused before the first pass', () => {
  it('EISDIR: -o or --report naming an existing folder', async () => {
    mkdirSync(join(s.dir, 'folder.onnx'));
    before = snapshot(s.dir);
    await fails(['compress', s.model, '-r', recipe, '-o', join(s.dir, 'folder.onnx')], `${join(s.dir, 'folder.onnx')}: is a directory; name a model file, or write ${join(s.dir, 'folder.onnx')}/ for a model folder`);
    await fails(['compress', s.model, '-r', recipe, '-o', out, '--report', join(s.dir, 'folder.onnx')], `${join(s.dir, 'folder.onnx')}: the report (--report) names an existing folder (EISDIR)`);
    await fails(['eval', s.model, '--data', s.text, '--tokenizer', s.tokenizer, '-o', join(s.dir, 'folder.onnx')], '(EISDIR)');
    rmSync(join(s.dir, 'folder.onnx'), { recursive: true });
  });

  it('ENOTDIR: a file used as a folder in -o, and .pare-work taken by a file', async () => {
    await fails(['compress', s.model, '-r', recipe, '-o', join(recipe, 'out.onnx')], `${join(recipe, 'out.onnx')}: ${recipe} is a file, not a folder (ENOTDIR)`);
    const work = join(s.dir, 'w');
    mkdirSync(work);
    writeFileSync(join(work, '.pare-work'), 'not a folder');
    before = snapshot(s.dir);
    await fails(['compress', s.model, '-r', recipe, '-o', join(work, 'out.onnx')], `${join(work, '.pare-work')}: is a file, where pare's work folder (a folder) goes; remove or rename it`);
    rmSync(work, { recursive: true });
  });

  (PERMISSIONS_APPLY ? it : it.skip)(`EACCES: a 0555 output folder, for a process that is not root${PERMISSIONS_APPLY ? '' : ' (skipped: root here, and no setpriv to drop it or nobody cannot run pare from this checkout)'}`, () => {
    const locked = join(s.dir, 'locked');
    mkdirSync(locked);
    chmodSync(locked, 0o555);
    before = snapshot(s.dir);
    try {
      const inputs = hashes(s.model, recipe);
      const r = pareChild(['compress', s.model, '-r', recipe, '-o', join(locked, 'out.onnx')], { prefix: AS_NOBODY, cwd: s.dir });
      expectOneLineError(r, 2, `${join(locked, 'out.onnx')}: cannot write the output model (-o) in ${locked}: permission denied (EACCES); check the folder's permissions or write elsewhere`);
      inputs.unchanged();
      expect(snapshot(s.dir)).toEqual(before);
    } finally {
      chmodSync(locked, 0o755);
      rmSync(locked, { recursive: true });
    }
  });

  (CAN_MOUNT ? it : it.skip)(`EROFS: a read-only filesystem${CAN_MOUNT ? '' : ` (${NO_MOUNT})`}`, async () => {
    const ro = mountTmpfs(s.dir, 'ro', 'ro,size=1m');
    try {
      before = snapshot(s.dir);
      await fails(['compress', s.model, '-r', recipe, '-o', join(ro.dir, 'out.onnx')], `${join(ro.dir, 'out.onnx')}: cannot write the output model (-o) in ${ro.dir}: read-only filesystem (EROFS); write to a writable folder`);
    } finally {
      ro.unmount();
      rmSync(ro.dir, { recursive: true });
    }
  });

  (CAN_MOUNT ? it : it.skip)(`ENOSPC up front: a filesystem with less room than the output needs${CAN_MOUNT ? '' : ` (${NO_MOUNT})`}`, async () => {
    const tiny = mountTmpfs(s.dir, 'tiny', 'size=1m');
    try {
      before = snapshot(s.dir);
      await fails(['compress', s.model, '-r', recipe, '-o', join(tiny.dir, 'out.onnx')], /: 1\.0 MiB free on this filesystem, the run needs about 1\.3 MiB \(out\.onnx ~1\.3 MiB\); free space or write elsewhere$/);
      expect(readdirSync(tiny.dir)).toEqual([]);
    } finally {
      tiny.unmount();
      rmSync(tiny.dir, { recursive: true });
    }
  });

  (CAN_MOUNT ? it : it.skip)(`ENOSPC mid-run: the disk fills up after the checks; the output write fails and everything is removed${CAN_MOUNT ? '' : ` (${NO_MOUNT})`}`, async () => {
    const disk = mountTmpfs(s.dir, 'disk', 'size=8m');
    try {
      const target = join(disk.dir, 'out.onnx');
      const filler = join(disk.dir, 'filler');
      // after pass 1 (its checkpoint saved) something else takes all but 256 KiB
      const fill = async () => {
        const { statfsSync } = await import('node:fs');
        const fs = statfsSync(disk.dir);
        writeFileSync(filler, Buffer.alloc(Math.max(0, fs.bavail * fs.bsize - 256 * 1024)));
      };
      const inputs = hashes(s.model);
      const r = await pare(['compress', s.model, '-r', twoPasses, '-o', target], { afterPass: fill });
      expectOneLineError(r, 2, `${target}: cannot write: no space left on the device (ENOSPC); free space on that disk or write elsewhere`);
      inputs.unchanged();
      expect(readdirSync(disk.dir)).toEqual(['filler']);
    } finally {
      disk.unmount();
      rmSync(disk.dir, { recursive: true });
    }
  });
});

describe('each errno, injected at a call of the run: one line naming the path, nothing left', () => {
  it('ENOSPC writing the output model', async () => {
    const f = failOnce('write', inWork('out.onnx'), 'ENOSPC');
    await fails(['compress', s.model, '-r', recipe, '-o', out, '--report', report], `${out}: cannot write: no space left on the device (ENOSPC); free space on that disk or write elsewhere`);
    expect(f.hit()).toBe(true);
  });

  it('EDQUOT writing the checkpoint between passes, in the work folder', async () => {
    const f = failOnce('write', inWork('after-pass-1'), 'EDQUOT');
    await fails(['compress', s.model, '-r', twoPasses, '-o', out], /\.pare-work\/out\.onnx-[0-9a-f]{16}\/after-pass-1\.onnx: cannot write: disk quota exceeded \(EDQUOT\); free space within your quota or write elsewhere$/);
    expect(f.hit()).toBe(true);
  });

  it('EROFS creating the work folder', async () => {
    const f = failOnce('mkdir', (p) => p.includes('.pare-work'), 'EROFS');
    await fails(['compress', s.model, '-r', twoPasses, '-o', out], /\.pare-work\/out\.onnx-[0-9a-f]{16}: cannot create the folder: read-only filesystem \(EROFS\); write to a writable folder$/);
    expect(f.hit()).toBe(true);
  });

  it('EACCES opening the report for writing (named as the report, not its staging name)', async () => {
    const f = failOnce('open', (p) => basename(p).includes('.report.json.'), 'EACCES');
    await fails(['compress', s.model, '-r', recipe, '-o', out, '--report', report], `${report}: cannot write: permission denied (EACCES); check the folder's permissions or write elsewhere`);
    expect(f.hit()).toBe(true);
  });

  it('EPERM moving the report into place: the model moved just before is removed again', async () => {
    const f = failOnce('rename', (p) => p === report, 'EPERM');
    await fails(['compress', s.model, '-r', recipe, '-o', out, '--report', report], `${report}: cannot move the finished file into place: operation not permitted (EPERM)`);
    expect(f.hit()).toBe(true);
  });

  it('EMFILE opening the --stream spill file', async () => {
    const f = failOnce('open', inWork('spill.bin'), 'EMFILE');
    await fails(['compress', s.model, '-r', recipe, '-o', out, '--stream'], /spill\.bin: cannot write: too many open files in this process \(EMFILE\); raise the limit \(ulimit -n\) and run again$/);
    expect(f.hit()).toBe(true);
  });

  it('EIO syncing the output model', async () => {
    const f = failOnce('fsync', inWork('out.onnx'), 'EIO');
    await fails(['compress', s.model, '-r', recipe, '-o', out], `${out}: cannot write: input/output error from the device (EIO); check the disk (dmesg) and run again`);
    expect(f.hit()).toBe(true);
  });

  it('EFBIG writing the output\'s external data file', async () => {
    const external = s.recipe('external.yaml', `${ONE_PASS}output: { external_data: true }\n`);
    before = snapshot(s.dir);
    const f = failOnce('write', inWork('out.onnx.data'), 'EFBIG');
    await fails(['compress', s.model, '-r', external, '-o', out], `${out}.data: cannot write: file too large for the filesystem (EFBIG)`);
    expect(f.hit()).toBe(true);
  });

  it('EEXIST creating a folder --mkdir asked for', async () => {
    const f = failOnce('mkdir', (p) => p.startsWith(join(s.dir, 'new')), 'EEXIST');
    await fails(['compress', s.model, '-r', recipe, '-o', join(s.dir, 'new/deeper/out.onnx'), '--mkdir'], `${join(s.dir, 'new/deeper')}: cannot create the folder: already exists (EEXIST)`);
    expect(f.hit()).toBe(true);
  });

  it('ENOSPC writing the eval report', async () => {
    const f = failOnce('write', (p) => basename(p).includes('.report.json.'), 'ENOSPC');
    await fails(['eval', s.model, '--data', s.text, '--tokenizer', s.tokenizer, '--select', '1', '--max-length', '32', '--no-latency', '-o', report], `${report}: cannot write: no space left on the device (ENOSPC)`);
    expect(f.hit()).toBe(true);
  });

  it('a filesystem error no writer caught is still exit 2 with one line, and the work folder is removed', async () => {
    const eio = Object.assign(new Error("EIO: i/o error, read '/dev/fake'"), { code: 'EIO', syscall: 'read', path: '/dev/fake' });
    const r = await pare(['compress', s.model, '-r', twoPasses, '-o', out], { afterPass: async () => Promise.reject(eio) });
    expectOneLineError(r, 2, '/dev/fake: cannot read: input/output error from the device (EIO)');
    expect(snapshot(s.dir)).toEqual(before);
  });

  it('after all of these, a plain run still writes the model and report and nothing else', async () => {
    const r = await pare(['compress', s.model, '-r', recipe, '-o', out, '--report', report]);
    expect(r.code, r.err).toBe(0);
    expect(Object.keys(snapshot(s.dir)).filter((f) => !(f in before)).sort()).toEqual(['out.onnx', 'report.json']);
    expect(existsSync(join(s.dir, '.pare-work'))).toBe(false);
    rmSync(out);
    rmSync(report);
  });
});
