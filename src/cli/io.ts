import { createProgress, type Progress, wantsFancyProgress } from '../pipeline/progress.js';

/** Output sinks, so tests can run the CLI in-process. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** draw spinners on stderr; undefined: when stderr is a TTY and NO_COLOR is unset */
  fancy?: boolean;
}

/**
 * Progress for a command: a spinner on a terminal; elsewhere (CI logs, pipes) nothing unless
 * --progress asks for plain lines, so after a failure the `pare:` line is the first thing on stderr.
 * Warnings are in the report either way.
 */
export function progressFor(io: Io, lines = false): Progress {
  const fancy = io.fancy ?? wantsFancyProgress();
  return createProgress(fancy || lines ? (line) => io.err(line) : () => {}, fancy);
}
