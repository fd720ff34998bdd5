import { rmSync } from 'node:fs';
import { basename, dirname, join, relative, sep } from 'node:path';
import { trackTemp, untrackTemp, writeFileAtomic } from './atomic-write.js';
import { namingPathsAs, renameOver } from './fs-write.js';

/**
 * A command's outputs, written under other names first and moved into place together by
 * commit(), so a run that fails before then leaves none of them and a run that commits leaves all.
 * A model goes to a staging folder (its external data and config.json keep the names the model
 * refers to); small files (reports) go beside their targets under hidden names. Either way the
 * final move is a rename on one filesystem. Staged files are tracked as temp files, so an
 * interrupted run removes them.
 */
export class StagedOutputs {
  private readonly moves: { from: string; to: string }[] = [];

  /**
   * `from`, already written on `to`'s filesystem, becomes `to` at commit. A folder of staged files
   * (the model's) can be written under `namingPathsAs(stagedNames(folder, dirname(to)), …)`.
   */
  add(from: string, to: string): void {
    trackTemp(from);
    this.moves.push({ from, to });
  }

  /** Writes `content` now under a hidden name beside `target`, to become `target` at commit. */
  write(target: string, content: string | Uint8Array): void {
    const staged = join(dirname(target), `.${basename(target)}.${process.pid}.staged`);
    this.add(staged, target);
    namingPathsAs((p) => (p === staged ? target : p), () => writeFileAtomic(staged, content));
  }

  /**
   * Moves every staged file into place, in the order staged (a model's external data and config
   * before the model, reports last). A failure part-way removes what was already moved, so no
   * set of outputs is left half-finished.
   */
  commit(): void {
    const done: string[] = [];
    try {
      for (const { from, to } of this.moves) {
        renameOver(from, to);
        untrackTemp(from);
        done.push(to);
      }
    } catch (e) {
      for (const p of done) rmSync(p, { force: true });
      this.discard();
      throw e;
    }
    this.moves.length = 0;
  }

  /** Removes every staged file not yet moved. */
  discard(): void {
    for (const { from } of this.moves) {
      rmSync(from, { recursive: true, force: true });
      untrackTemp(from);
    }
    this.moves.length = 0;
  }
}

/** For namingPathsAs: a path in the staging folder `staging` named as the same file in `target`. */
export function stagedNames(staging: string, target: string): (path: string) => string {
  return (p) => (p.startsWith(staging + sep) ? join(target, relative(staging, p)) : p);
}
