/** Output sinks, so tests can run the CLI in-process. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** draw spinners on stderr; undefined: when stderr is a TTY and NO_COLOR is unset */
  fancy?: boolean;
}
