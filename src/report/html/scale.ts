/**
 * Axis scales for the report's SVG charts: a domain mapped onto a pixel range, linear or log10,
 * with "nice" ticks (1, 2, 5 × 10ᵏ). A degenerate domain (one value) is widened so marks stay
 * inside the plot.
 */
export interface Scale {
  (v: number): number;
  ticks: number[];
  log: boolean;
}

function widen(lo: number, hi: number, log: boolean): [number, number] {
  if (hi > lo) return [lo, hi];
  if (log) return [lo / 1.5, hi * 1.5];
  const pad = lo === 0 ? 1 : Math.abs(lo) * 0.05;
  return [lo - pad, hi + pad];
}

function niceStep(span: number, count: number): number {
  const raw = span / Math.max(count, 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

export function linearScale(domain: [number, number], range: [number, number], tickCount = 5): Scale {
  let [lo, hi] = widen(domain[0], domain[1], false);
  const step = niceStep(hi - lo, tickCount);
  lo = Math.floor(lo / step) * step;
  hi = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  for (let t = lo; t <= hi + step / 2; t += step) ticks.push(+t.toPrecision(12));
  const f = ((v: number) => range[0] + ((v - lo) / (hi - lo)) * (range[1] - range[0])) as Scale;
  f.ticks = ticks;
  f.log = false;
  return f;
}

export function logScale(domain: [number, number], range: [number, number]): Scale {
  const [lo0, hi0] = widen(Math.max(domain[0], Number.MIN_VALUE), Math.max(domain[1], Number.MIN_VALUE), true);
  const lo = Math.log10(lo0);
  const hi = Math.log10(hi0);
  const ticks: number[] = [];
  for (let k = Math.floor(lo); k <= Math.ceil(hi); k++) {
    for (const m of [1, 2, 5]) {
      const t = m * 10 ** k;
      if (t >= lo0 * 0.999 && t <= hi0 * 1.001) ticks.push(+t.toPrecision(12));
    }
  }
  if (ticks.length < 2) ticks.splice(0, ticks.length, +lo0.toPrecision(3), +hi0.toPrecision(3));
  const f = ((v: number) => range[0] + ((Math.log10(Math.max(v, Number.MIN_VALUE)) - lo) / (hi - lo)) * (range[1] - range[0])) as Scale;
  f.ticks = ticks;
  f.log = true;
  return f;
}

/**
 * A linear scale over byte counts whose ticks are round in one unit (B, KiB, MiB, GiB), chosen by
 * the largest value: `0.6 MiB, 0.8 MiB, 1 MiB`.
 */
export function bytesScale(domain: [number, number], range: [number, number], tickCount = 5): Scale & { label(v: number): string } {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let k = 0;
  while (k < units.length - 1 && Math.max(Math.abs(domain[0]), Math.abs(domain[1])) >= 1024 ** (k + 1)) k++;
  const div = 1024 ** k;
  const inner = linearScale([domain[0] / div, domain[1] / div], range, tickCount);
  const f = ((v: number) => inner(v / div)) as Scale & { label(v: number): string };
  f.ticks = inner.ticks.map((t) => t * div);
  f.log = false;
  f.label = (v) => `${+(v / div).toPrecision(6)} ${units[k]}`;
  return f;
}

/** Widen [lo, hi] by `fraction` of its span (or of |lo| when it is one value), so marks do not sit on the axes. */
export function padded(lo: number, hi: number, fraction = 0.06): [number, number] {
  const span = hi > lo ? hi - lo : Math.abs(lo) || 1;
  return [lo - span * fraction, hi + span * fraction];
}

/** Log when the values span more than `ratio` (and are all positive), else linear. */
export function autoScale(values: readonly number[], range: [number, number], opts: { ratio?: number; pad?: boolean } = {}): Scale {
  const finite = values.filter(Number.isFinite);
  const lo = finite.length ? Math.min(...finite) : 0;
  const hi = finite.length ? Math.max(...finite) : 1;
  if (lo > 0 && hi / lo > (opts.ratio ?? 8)) {
    const f = opts.pad ? (hi / lo) ** 0.05 : 1;
    return logScale([lo / f, hi * f], range);
  }
  return linearScale(opts.pad ? padded(lo, hi) : [lo, hi], range);
}
