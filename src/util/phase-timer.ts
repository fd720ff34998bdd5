/**
 * Where a run's time goes: wall and CPU seconds (process.cpuUsage, so ONNX Runtime's and the wasm
 * pool's threads count) per named phase. Phases nest and are exclusive: time spent in an inner
 * phase is not counted again in the one around it, so the phases add up to the time they cover.
 * Not thread-safe across overlapping async work: callers time strictly sequential sections.
 */
export interface PhaseTime {
  wallMs: number;
  cpuMs: number;
  calls: number;
}

interface Frame {
  wall0: number;
  cpu0: number;
  /** time taken by phases nested inside this one */
  innerWall: number;
  innerCpu: number;
}

function cpuMsNow(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export class PhaseTimer {
  private readonly totals = new Map<string, PhaseTime>();
  private readonly stack: Frame[] = [];

  /** Runs `fn` as phase `name`. */
  async time<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
    this.enter();
    try {
      return await fn();
    } finally {
      this.exit(name);
    }
  }

  /** The synchronous form of time(). */
  timeSync<T>(name: string, fn: () => T): T {
    this.enter();
    try {
      return fn();
    } finally {
      this.exit(name);
    }
  }

  /** Totals so far, by phase name. */
  snapshot(): Record<string, PhaseTime> {
    return Object.fromEntries([...this.totals].map(([k, v]) => [k, { ...v }]));
  }

  reset(): void {
    this.totals.clear();
  }

  private enter(): void {
    this.stack.push({ wall0: performance.now(), cpu0: cpuMsNow(), innerWall: 0, innerCpu: 0 });
  }

  private exit(name: string): void {
    const f = this.stack.pop()!;
    const wall = performance.now() - f.wall0;
    const cpu = cpuMsNow() - f.cpu0;
    const t = this.totals.get(name) ?? { wallMs: 0, cpuMs: 0, calls: 0 };
    t.wallMs += wall - f.innerWall;
    t.cpuMs += cpu - f.innerCpu;
    t.calls++;
    this.totals.set(name, t);
    const outer = this.stack.at(-1);
    if (outer) {
      outer.innerWall += wall;
      outer.innerCpu += cpu;
    }
  }
}

/** The process's timer: calibration and the calibrated passes record into it; benches read it. */
export const phases = new PhaseTimer();
