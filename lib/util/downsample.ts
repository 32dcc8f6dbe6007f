/**
 * Fewer points for drawing a long curve (a 100,000-step run on a 700-pixel plot) without hiding what matters in it:
 * every bucket keeps its lowest and its highest point, so spikes and dips survive, and the first and last points
 * stay. Pure: the board draws with it in the browser.
 */

export type Point = [x: number, y: number]
/** A band's slice at x: from lo to hi (e.g. mean − std to mean + std over seeds, or a bucket's min and max). */
export type Band = [x: number, lo: number, hi: number]

/**
 * Indices to keep of n points when at most maxPoints may be drawn: the first and the last, and from each of
 * (maxPoints − 2) / 2 equal runs between them the lowest and the highest. A non-finite value (a diverged loss)
 * counts as its run's highest, so that it is kept and shows as a gap.
 */
function keptIndices(n: number, maxPoints: number, low: (i: number) => number, high: (i: number) => number): number[] {
  if (!(maxPoints >= 2)) throw new RangeError(`downsample: maxPoints must be at least 2, got ${maxPoints}`)
  if (n <= maxPoints) return Array.from({ length: n }, (_, i) => i)
  const buckets = Math.floor((maxPoints - 2) / 2)
  const kept = [0]
  const inner = n - 2
  for (let b = 0; b < buckets; b++) {
    const [start, end] = [1 + Math.floor((b * inner) / buckets), 1 + Math.floor(((b + 1) * inner) / buckets)]
    let [lowest, highest] = [-1, -1]
    for (let i = start; i < end; i++) {
      const [lo, hi] = [low(i), high(i)]
      if (Number.isFinite(lo) && (lowest < 0 || lo < low(lowest))) lowest = i
      if (highest < 0 || (Number.isFinite(high(highest)) && (!Number.isFinite(hi) || hi > high(highest)))) highest = i
    }
    if (lowest >= 0 && lowest !== highest) kept.push(Math.min(lowest, highest), Math.max(lowest, highest))
    else if (highest >= 0) kept.push(highest)
  }
  kept.push(n - 1)
  return kept
}

/** At most maxPoints (≥ 2) of the points, in order: the first, the last, and each bucket's lowest and highest. */
export function downsample(points: readonly Point[], maxPoints: number): Point[] {
  return keptIndices(
    points.length,
    maxPoints,
    (i) => points[i]![1],
    (i) => points[i]![1],
  ).map((i) => points[i]!)
}

/** downsample() for a band: per bucket the slice with the lowest lo and the slice with the highest hi. */
export function downsampleBand(band: readonly Band[], maxPoints: number): Band[] {
  return keptIndices(
    band.length,
    maxPoints,
    (i) => band[i]![1],
    (i) => band[i]![2],
  ).map((i) => band[i]!)
}
