/**
 * The Pareto front of points in (size, quality): a point is on it when no other point is at least
 * as small and at least as good, and strictly better in one of the two. Equal points are all on it.
 * Points without a quality are on it only when no point has one (then: the smallest).
 */
export interface FrontPoint {
  id: string;
  size: number;
  /** perplexity (lower is better) or accuracy (higher is better) */
  quality?: number;
}

export function paretoFront(points: readonly FrontPoint[], better: 'lower' | 'higher'): Set<string> {
  const withQuality = points.filter((p) => p.quality !== undefined && Number.isFinite(p.quality));
  if (withQuality.length === 0) {
    const smallest = Math.min(...points.map((p) => p.size));
    return new Set(points.filter((p) => p.size === smallest).map((p) => p.id));
  }
  // quality as a loss: smaller is better on both axes
  const loss = (p: FrontPoint) => (better === 'lower' ? p.quality! : -p.quality!);
  const dominates = (a: FrontPoint, b: FrontPoint) => a.size <= b.size && loss(a) <= loss(b) && (a.size < b.size || loss(a) < loss(b));
  return new Set(withQuality.filter((p) => !withQuality.some((q) => dominates(q, p))).map((p) => p.id));
}
