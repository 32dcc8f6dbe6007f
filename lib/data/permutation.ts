/**
 * The seeded order of an epoch, readable by position. Up to STORED_ORDER_MAX sequences it is a Fisher-Yates shuffle
 * kept as a table (4 bytes a sequence, at most 4 MiB: the order every earlier llamapro used). Past that the order is
 * computed, never stored: a keyed Feistel network over the smallest even power of two that holds n, with
 * cycle-walking back into [0, n) — the construction of TensorFlow's `index_shuffle` and Grain's random access
 * shuffle — so a training run's memory does not grow with the corpus (a 5 GB pt store at cutoff 256 is 9.8 M
 * sequences: 39 MB of table). Both are pure functions of (n, seed), so a resumed run sees the same order.
 */
import { mulberry32 } from '../util/random.js'

/** Sequences up to which the order is a stored Fisher-Yates table. */
export const STORED_ORDER_MAX = 1 << 20

export interface Permutation {
  readonly length: number
  /** The index at position p (0 <= p < length). */
  at(p: number): number
}

/** A seeded Fisher-Yates shuffle of 0..n-1, in 4 bytes an index. */
export function shuffledOrder(n: number, seed: number): Uint32Array {
  const random = mulberry32(seed)
  const order = new Uint32Array(n)
  for (let i = 0; i < n; i++) order[i] = i
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const t = order[i]!
    order[i] = order[j]!
    order[j] = t
  }
  return order
}

const ROUNDS = 8

/** murmur3's 32-bit finaliser: every input bit flips each output bit with probability about 1/2. */
function mix32(x: number): number {
  x ^= x >>> 16
  x = Math.imul(x, 0x85ebca6b)
  x ^= x >>> 13
  x = Math.imul(x, 0xc2b2ae35)
  x ^= x >>> 16
  return x >>> 0
}

/** A keyed bijection of [0, n) computed per position in O(1) memory (n up to 2^32). */
export class FeistelPermutation implements Permutation {
  readonly #half: number
  readonly #mask: number
  readonly #keys: Uint32Array

  constructor(
    readonly length: number,
    seed: number,
  ) {
    if (!(Number.isInteger(length) && length >= 1 && length <= 2 ** 32))
      throw new RangeError(`a permutation of ${length} items is not possible (1 to 2^32)`)
    let bits = Math.max(2, Math.ceil(Math.log2(length)))
    if (bits % 2) bits++
    this.#half = bits / 2
    this.#mask = this.#half === 16 ? 0xffff : (1 << this.#half) - 1
    const random = mulberry32(seed)
    this.#keys = Uint32Array.from({ length: ROUNDS }, () => Math.floor(random() * 2 ** 32))
  }

  #encrypt(x: number): number {
    let left = Math.floor(x / 2 ** this.#half) & this.#mask
    let right = x & this.#mask
    for (let r = 0; r < ROUNDS; r++) {
      const next = (left ^ mix32(right ^ this.#keys[r]!)) & this.#mask
      left = right
      right = next
    }
    return left * 2 ** this.#half + right
  }

  at(p: number): number {
    if (!(p >= 0 && p < this.length)) throw new RangeError(`position ${p} is not in a permutation of ${this.length}`)
    // Cycle-walking: the domain is under 4n, so on average fewer than 4 rounds land back inside [0, n).
    let x = this.#encrypt(p)
    while (x >= this.length) x = this.#encrypt(x)
    return x
  }
}

/** The seeded permutation of 0..n-1: stored Fisher-Yates up to STORED_ORDER_MAX, computed Feistel past it. */
export function seededPermutation(n: number, seed: number): Permutation {
  if (n <= STORED_ORDER_MAX) {
    const order = shuffledOrder(n, seed)
    return { length: n, at: (p) => order[p]! }
  }
  return new FeistelPermutation(n, seed)
}
