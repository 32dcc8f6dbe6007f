/**
 * The order sequences are seen in and how they become batches. The order is a pure function of (seed, epoch),
 * so a resumed run sees exactly the batches an uninterrupted one would have.
 */
import type { Sequence } from './preprocess.js'
import { IGNORE_INDEX } from './preprocess.js'
import { type Permutation, STORED_ORDER_MAX, seededPermutation, shuffledOrder } from './permutation.js'
import { PermutedRangeSource, type SequenceSource, SubsetSource, arraySource } from './store/reader.js'

export { shuffledOrder }

/** A sequence as collate takes it: ids and labels, in arrays or typed arrays. */
export interface SequenceLike {
  ids: ArrayLike<number>
  labels: ArrayLike<number>
}

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

/** shuffledOrder as a plain array. */
export function shuffledIndices(n: number, seed: number): number[] {
  return Array.from(shuffledOrder(n, seed))
}

/** How many of n items val_size holds out (a fraction below 1, or a count); 0 when it would leave no training item. */
export function evalCount(n: number, valSize: number): number {
  if (valSize <= 0) return 0
  const count = valSize < 1 ? Math.max(1, Math.round(n * valSize)) : Math.floor(valSize)
  return count >= n ? 0 : count
}

/** splitEval for a store: the same held-out indices, as views of the source. */
export function splitSource(
  source: SequenceSource,
  valSize: number,
  seed: number,
): { train: SequenceSource; eval: SequenceSource } {
  const count = evalCount(source.length, valSize)
  if (count === 0) return { train: source, eval: new SubsetSource(source, new Uint32Array(0)) }
  if (source.length > STORED_ORDER_MAX) {
    // Past the stored-order size no per-sequence list is kept: the held-out sequences are the first `count`
    // positions of the seeded permutation and training takes the rest, as datasets' train_test_split does.
    const order = seededPermutation(source.length, seed)
    return {
      train: new PermutedRangeSource(source, order, count, source.length - count),
      eval: new PermutedRangeSource(source, order, 0, count),
    }
  }
  const held = new Uint8Array(source.length)
  const order = shuffledOrder(source.length, seed)
  for (let i = 0; i < count; i++) held[order[i]!] = 1
  const train = new Uint32Array(source.length - count)
  const evalIndices = new Uint32Array(count)
  let t = 0
  let e = 0
  for (let i = 0; i < source.length; i++) {
    if (held[i]) evalIndices[e++] = i
    else train[t++] = i
  }
  return { train: new SubsetSource(source, train), eval: new SubsetSource(source, evalIndices) }
}

/** Splits off `valSize` (a fraction below 1, or a count) as evaluation data, as train_test_split(seed) would. */
export function splitEval<T>(items: readonly T[], valSize: number, seed: number): { train: T[]; eval: T[] } {
  const count = evalCount(items.length, valSize)
  if (count === 0) return { train: [...items], eval: [] }
  const order = shuffledIndices(items.length, seed)
  const evalSet = new Set(order.slice(0, count))
  return { train: items.filter((_, i) => !evalSet.has(i)), eval: items.filter((_, i) => evalSet.has(i)) }
}

/** Pads on the right to the longest sequence: with causal attention, padding at the end changes no real logit. */
export function collate(sequences: readonly SequenceLike[], padId: number): Batch {
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
  private readonly sequences: SequenceSource

  constructor(
    sequences: readonly Sequence[] | SequenceSource,
    private readonly batchSize: number,
    private readonly seed: number,
    private readonly padId: number,
  ) {
    this.sequences = Array.isArray(sequences) ? arraySource(sequences as Sequence[]) : (sequences as SequenceSource)
    this.batchesPerEpoch = Math.ceil(this.sequences.length / batchSize)
  }

  /** The indices (into the source) of the index-th batch of an epoch. */
  indices(epoch: number, index: number): Uint32Array {
    const order = this.#order(epoch)
    const start = index * this.batchSize
    const end = Math.min(start + this.batchSize, order.length)
    return Uint32Array.from({ length: Math.max(0, end - start) }, (_, k) => order.at(start + k))
  }

  /** Target and real tokens of the index-th batch, without reading it. */
  counts(epoch: number, index: number): { targetTokens: number; tokens: number } {
    let targetTokens = 0
    let tokens = 0
    for (const i of this.indices(epoch, index)) {
      tokens += this.sequences.lengthOf(i)
      targetTokens += this.sequences.targetsOf(i)
    }
    return { targetTokens, tokens }
  }

  /** The index-th batch of an epoch (the order changes each epoch). */
  batch(epoch: number, index: number): Batch {
    return collate(
      Array.from(this.indices(epoch, index), (i) => this.sequences.read(i)),
      this.padId,
    )
  }

  #cachedEpoch = -1
  #cachedOrder: Permutation = { length: 0, at: () => 0 }
  #order(epoch: number): Permutation {
    if (epoch !== this.#cachedEpoch) {
      this.#cachedOrder = seededPermutation(this.sequences.length, this.seed + epoch)
      this.#cachedEpoch = epoch
    }
    return this.#cachedOrder
  }
}
