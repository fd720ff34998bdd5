import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Model } from '../model/model.js';
import { readOnnx, writeOnnx } from '../model/onnx-io.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { makeDirs } from '../util/fs-write.js';

/**
 * The work directory of one compress run: after each pass a checkpoint of the model and a state
 * file naming it, so `--resume` continues from the last completed pass. Its name carries a key of
 * the input, recipe, seed and tool version, so a resume never mixes runs. Removed when the run ends,
 * except when it is interrupted (a signal, kill -9): then --resume continues from it.
 */
export interface WorkState<P> {
  key: string;
  /** passes completed, in recipe order */
  completed: number;
  checkpoint: string;
  passes: P[];
}

export class WorkDir<P> {
  readonly dir: string;

  constructor(
    outputPath: string,
    readonly key: string,
  ) {
    this.dir = join(dirname(outputPath), '.pare-work', `${basename(outputPath)}-${key.slice(0, 16)}`);
  }

  private get statePath(): string {
    return join(this.dir, 'state.json');
  }

  /** The last saved state, when it belongs to this run (same key) and its checkpoint exists. */
  load(): WorkState<P> | undefined {
    if (!existsSync(this.statePath)) return undefined;
    try {
      const state = JSON.parse(readFileSync(this.statePath, 'utf8')) as WorkState<P>;
      if (state.key !== this.key || !existsSync(join(this.dir, state.checkpoint))) return undefined;
      return state;
    } catch {
      return undefined;
    }
  }

  loadCheckpoint(state: WorkState<P>): Model {
    return readOnnx(join(this.dir, state.checkpoint));
  }

  /** Checkpoint first, then the state that names it: a kill between the two leaves the previous state valid. */
  save(model: Model, completed: number, passes: P[]): void {
    makeDirs(this.dir);
    const checkpoint = `after-pass-${completed}.onnx`;
    writeOnnx(model, join(this.dir, checkpoint));
    const state: WorkState<P> = { key: this.key, completed, checkpoint, passes };
    writeFileAtomic(this.statePath, `${JSON.stringify(state)}\n`);
    for (const f of readdirSync(this.dir)) {
      if (f.startsWith('after-pass-') && f !== checkpoint && f !== `${checkpoint}.data`) rmSync(join(this.dir, f), { force: true });
    }
  }

  /** A file inside the work dir (e.g. the ONNX form of a safetensors reference model). */
  file(name: string): string {
    makeDirs(this.dir);
    return join(this.dir, name);
  }

  /** An empty folder for outputs written before they are moved into place (src/util/staged-outputs.ts). */
  staging(): string {
    const dir = join(this.dir, 'staged');
    rmSync(dir, { recursive: true, force: true });
    makeDirs(dir);
    return dir;
  }

  reset(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Removes the work dir, and .pare-work when nothing else is left in it. */
  remove(): void {
    this.reset();
    const parent = dirname(this.dir);
    if (existsSync(parent) && readdirSync(parent).length === 0) rmSync(parent, { recursive: true, force: true });
  }
}
