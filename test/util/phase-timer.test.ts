import { describe, expect, it } from 'vitest';
import { PhaseTimer } from '../../src/util/phase-timer.js';

/** keeps this thread busy for about `ms` milliseconds of wall time */
function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

describe('PhaseTimer', () => {
  it('nested phases are exclusive: each phase counts only its own time, and the phases add up to the outer span', async () => {
    const t = new PhaseTimer();
    const t0 = performance.now();
    await t.time('outer', async () => {
      spin(20);
      await t.time('inner', () => spin(30));
      t.timeSync('inner', () => spin(10));
    });
    const span = performance.now() - t0;
    const s = t.snapshot();
    expect(s.inner!.calls).toBe(2);
    expect(s.outer!.calls).toBe(1);
    expect(s.inner!.wallMs).toBeGreaterThanOrEqual(40);
    expect(s.outer!.wallMs).toBeGreaterThanOrEqual(20);
    // exclusive: outer does not include inner's 40 ms
    expect(s.outer!.wallMs).toBeLessThan(span - 40 + 1e-6);
    expect(s.outer!.wallMs + s.inner!.wallMs).toBeLessThanOrEqual(span + 1e-6);
    // busy-waiting is CPU time; the process may also run other threads, so only a lower bound holds
    expect(s.inner!.cpuMs + s.outer!.cpuMs).toBeGreaterThan(0);
  });

  it('a phase that throws is still counted, and reset clears the totals', () => {
    const t = new PhaseTimer();
    expect(() => t.timeSync('failing', () => { spin(5); throw new Error('boom'); })).toThrow('boom');
    expect(t.snapshot().failing!.calls).toBe(1);
    expect(t.snapshot().failing!.wallMs).toBeGreaterThanOrEqual(5);
    t.reset();
    expect(t.snapshot()).toEqual({});
  });
});
