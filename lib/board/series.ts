/**
 * The curves of one run, kept whole on the server and sent downsampled for drawing. A chart a few hundred pixels
 * wide shows no more than a few thousand points; min/max bucketing keeps every spike (a loss jump, a gradient
 * blow-up) that plain striding would drop. The numbers shown as text come from the records, never from here.
 */
import type { Point } from '../util/downsample.js'

/** Points sent per series at most: twice the buckets (each bucket keeps its lowest and highest point). */
export const MAX_DRAWN_POINTS = 2000

/**
 * lib/util/downsample.ts's rule (the first and last point, each bucket's lowest and highest), over two columns of
 * finite numbers: the server keeps 100,000-point series as Float64Arrays and builds pairs only for what it sends.
 */
export function downsampleColumns(xs: ArrayLike<number>, ys: ArrayLike<number>, maxPoints = MAX_DRAWN_POINTS): Point[] {
  const n = xs.length
  if (n <= maxPoints) return Array.from({ length: n }, (_, i) => [xs[i]!, ys[i]!] as Point)
  const buckets = Math.floor((maxPoints - 2) / 2)
  const out: Point[] = [[xs[0]!, ys[0]!]]
  const size = (n - 2) / buckets
  for (let b = 0; b < buckets; b++) {
    const start = 1 + Math.floor(b * size)
    const end = Math.min(n - 1, 1 + Math.floor((b + 1) * size))
    let lo = start
    let hi = start
    for (let i = start + 1; i < end; i++) {
      if (ys[i]! < ys[lo]!) lo = i
      if (ys[i]! > ys[hi]!) hi = i
    }
    if (start >= end) continue
    for (const i of lo === hi ? [lo] : lo < hi ? [lo, hi] : [hi, lo]) out.push([xs[i]!, ys[i]!])
  }
  out.push([xs[n - 1]!, ys[n - 1]!])
  return out
}

/** A growable pair of Float64Arrays: 100,000 points cost 1.6 MB, not the 10 MB of arrays of pairs. */
export class SeriesBuffer {
  xs = new Float64Array(64)
  ys = new Float64Array(64)
  length = 0

  push(x: number, y: number): void {
    if (this.length === this.xs.length) {
      const grow = (a: Float64Array) => {
        const bigger = new Float64Array(a.length * 2)
        bigger.set(a)
        return bigger
      }
      this.xs = grow(this.xs)
      this.ys = grow(this.ys)
    }
    this.xs[this.length] = x
    this.ys[this.length] = y
    this.length++
  }

  drawn(maxPoints = MAX_DRAWN_POINTS): Point[] {
    return downsampleColumns(this.xs.subarray(0, this.length), this.ys.subarray(0, this.length), maxPoints)
  }
}

/** The series a trainer_log.jsonl record feeds, by name: loss, lr, grad_norm, throughput, eval/<key>, layer/<id>. */
export function recordPoints(record: Record<string, unknown>): [string, number][] {
  const step = record.current_steps
  if (typeof step !== 'number') return []
  const out: [string, number][] = []
  const take = (name: string, value: unknown) => {
    if (typeof value === 'number' && Number.isFinite(value)) out.push([name, value])
  }
  take('loss', record.loss)
  take('lr', record.lr ?? record.learning_rate)
  take('grad_norm', record.grad_norm)
  // llamapro writes tokens_per_second per logging window; LLaMA-Factory writes throughput (tokens/s) when asked.
  take('throughput', record.tokens_per_second ?? record.throughput)
  for (const [key, value] of Object.entries(record)) {
    if (key === 'eval_loss' || /^eval_.+_loss$/.test(key)) take(`eval/${key}`, value)
  }
  const norms = record.layer_grad_norms
  if (norms && typeof norms === 'object') for (const [key, value] of Object.entries(norms)) take(`layer/${key}`, value)
  return out
}
