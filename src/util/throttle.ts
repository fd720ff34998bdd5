/**
 * Wraps `report` so that it runs at most once a second and not before the job has run for a
 * second: quick jobs print nothing, slow ones a line a second. The returned function takes a thunk,
 * so the message is built only when it is shown. `now` is the clock in milliseconds.
 */
export function reportEverySecond<T>(report: ((value: T) => void) | undefined, now: () => number = () => performance.now()): (value: () => T) => void {
  if (!report) return () => {};
  let last = now();
  return (value) => {
    const t = now();
    if (t - last < 1000) return;
    last = t;
    report(value());
  };
}
