/**
 * Points where a caller can hold a run, passed in as functions rather than read from the
 * environment: the interruption tests pause a run there and kill it (test/cli/hold-entry.ts).
 * `pare` itself passes none.
 */
export interface RunHooks {
  /** after `done` passes have completed and their checkpoint is saved in the work dir */
  afterPass?(done: number): Promise<void>;
  /** after `done` training steps, once the training state of that step is saved */
  afterTrainingStep?(done: number): Promise<void>;
}

/**
 * Thrown from a hook to stop the run as a signal would: the work dir stays for --resume (every other
 * failure removes it).
 */
export class RunInterrupted extends Error {
  constructor(message = 'run interrupted') {
    super(message);
    this.name = 'RunInterrupted';
  }
}
