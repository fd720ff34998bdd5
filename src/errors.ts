/**
 * Expected failures carry their exit code; anything else that escapes to the CLI is a bug (exit 1).
 * Messages are one line: where, what was expected, what was found, and the fix.
 */
export class UserError extends Error {
  readonly exitCode: number = 2;
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/** The run finished but a quality budget failed. */
export class BudgetError extends Error {
  readonly exitCode: number = 3;
  constructor(message: string) {
    super(message);
    this.name = 'BudgetError';
  }
}

export function isExpectedError(e: unknown): e is UserError | BudgetError {
  return e instanceof UserError || e instanceof BudgetError;
}
