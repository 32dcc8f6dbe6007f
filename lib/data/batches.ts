/**
 * The order sequences are seen in and how they become batches. The order is a pure function of (seed, epoch),
 * so a resumed run sees exactly the batches an uninterrupted one would have.
 */
import type { Sequence } from './preprocess.js'
import { IGNORE_INDEX } from './preprocess.js'
import { mulberry32 } from '../util/random.js'

export interface Batch {
  ids: Int32Array
  labels: Int32Array
  batch: number
  seq: number
  /** Tokens that are learned (labels that are not -100, after the shift). */
  targetTokens: number
  /** Real (not padding) tokens. */
  tokens: number
}

/** A seeded Fisher-Yates shuffle of 0..n-1. */
export function shuffledIndices(n: number, seed: number): number[] {
  const random = mulberry32(seed)
  const order = Array.from({ length: n }, (_, i) => i)
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[order[i], order[j]] = [order[j]!, order[i]!]
  }
  return order
}

/** Splits off `valSize` (a fraction below 1, or a count) as evaluation data, as train_test_split(seed) would. */
export function splitEval<T>(items: readonly T[], valSize: number, seed: number): { train: T[]; eval: T[] } {
  if (valSize <= 0) return { train: [...items], eval: [] }
  const count = valSize < 1 ? Math.max(1, Math.round(items.length * valSize)) : Math.floor(valSize)
  if (count >= items.length) return { train: [...items], eval: [] }
  const order = shuffledIndices(items.length, seed)
  const evalSet = new Set(order.slice(0, count))
  return { train: items.filter((_, i) => !evalSet.has(i)), eval: items.filter((_, i) => evalSet.has(i)) }
}

/** Pads on the right to the longest sequence: with causal attention, padding at the end changes no real logit. */
export function collate(sequences: readonly Sequence[], padId: number): Batch {
  const seq = Math.max(...sequences.map((s) => s.ids.length))
  const ids = new Int32Array(sequences.length * seq).fill(padId)
  const labels = new Int32Array(sequences.length * seq).fill(IGNORE_INDEX)
  let targetTokens = 0
  let tokens = 0
  sequences.forEach((s, row) => {
    tokens += s.ids.length
    ids.set(s.ids, row * seq)
    labels.set(s.labels, row * seq)
    for (let t = 1; t < s.labels.length; t++) if (s.labels[t] !== IGNORE_INDEX) targetTokens++
  })
  return { ids, labels, batch: sequences.length, seq, targetTokens, tokens }
}

export class BatchSchedule {
  readonly batchesPerEpoch: number

  constructor(
    private readonly sequences: readonly Sequence[],
    private readonly batchSize: number,
    private readonly seed: number,
    private readonly padId: number,
  ) {
    this.batchesPerEpoch = Math.ceil(sequences.length / batchSize)
  }

  /** Target and real tokens of the index-th batch, without building it. */
  counts(epoch: number, index: number): { targetTokens: number; tokens: number } {
    const order = this.#order(epoch)
    let targetTokens = 0
    let tokens = 0
    for (const i of order.slice(index * this.batchSize, (index + 1) * this.batchSize)) {
      const s = this.sequences[i]!
      tokens += s.ids.length
      for (let t = 1; t < s.labels.length; t++) if (s.labels[t] !== IGNORE_INDEX) targetTokens++
    }
    return { targetTokens, tokens }
  }

  /** The index-th batch of an epoch (the order changes each epoch). */
  batch(epoch: number, index: number): Batch {
    const order = this.#order(epoch)
    const picked = order.slice(index * this.batchSize, (index + 1) * this.batchSize).map((i) => this.sequences[i]!)
    return collate(picked, this.padId)
  }

  #cachedEpoch = -1
  #cachedOrder: number[] = []
  #order(epoch: number): number[] {
    if (epoch !== this.#cachedEpoch) {
      this.#cachedOrder = shuffledIndices(this.sequences.length, this.seed + epoch)
      this.#cachedEpoch = epoch
    }
    return this.#cachedOrder
  }
}
