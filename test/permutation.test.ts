import t from 'tap'
import { BatchSchedule, shuffledIndices, splitSource } from '../lib/data/batches.js'
import { FeistelPermutation, STORED_ORDER_MAX, seededPermutation } from '../lib/data/permutation.js'
import type { SequenceSource } from '../lib/data/store/reader.js'

/** Every position maps to a distinct index in [0, n). */
function isPermutation(at: (p: number) => number, n: number): boolean {
  const seen = new Uint8Array(n)
  for (let p = 0; p < n; p++) {
    const i = at(p)
    if (!(Number.isInteger(i) && i >= 0 && i < n) || seen[i]) return false
    seen[i] = 1
  }
  return true
}

t.test('the Feistel order is a permutation of 0..n-1 for sizes on and off powers of two', async (t) => {
  for (const n of [1, 2, 3, 5, 16, 17, 1000, 65_536, 65_537, 1_000_003]) {
    const order = new FeistelPermutation(n, 7)
    t.ok(
      isPermutation((p) => order.at(p), n),
      `n = ${n}`,
    )
  }
})

t.test('the Feistel order is a pure function of the seed, and different seeds give different orders', async (t) => {
  const n = 100_000
  const a = new FeistelPermutation(n, 42)
  const b = new FeistelPermutation(n, 42)
  const c = new FeistelPermutation(n, 43)
  const first = (o: FeistelPermutation) => Array.from({ length: 50 }, (_, p) => o.at(p))
  t.same(first(a), first(b))
  t.notSame(first(a), first(c))
  // Positions next to each other land far apart, and about as many indices before the middle as after it.
  let adjacent = 0
  let low = 0
  for (let p = 0; p < n - 1; p++) {
    if (Math.abs(a.at(p + 1) - a.at(p)) <= 1) adjacent++
    if (p < n / 2 && a.at(p) < n / 2) low++
  }
  t.ok(adjacent < 20, `${adjacent} neighbours stay neighbours (a random order has ~2)`)
  t.ok(
    Math.abs(low - n / 4) < 5 * Math.sqrt(n / 16),
    `${low} of the first half's indices are in the lower half (expected ${n / 4} ± ${Math.round(Math.sqrt(n / 16))})`,
  )
  // The first index of the order is spread over the whole range across seeds (a chi-square over 10 bins).
  const bins = new Array(10).fill(0)
  for (let seed = 0; seed < 2000; seed++) bins[Math.floor((new FeistelPermutation(n, seed).at(0) / n) * 10)]++
  const chi = bins.reduce((s, o) => s + (o - 200) ** 2 / 200, 0)
  t.ok(chi < 27.9, `chi-square ${chi.toFixed(1)} over 10 bins (p = 0.001 critical value 27.9)`)
})

t.test(
  'up to STORED_ORDER_MAX the order is the stored Fisher-Yates of earlier versions; past it, computed',
  async (t) => {
    const small = seededPermutation(1000, 5)
    t.same(
      Array.from({ length: 1000 }, (_, p) => small.at(p)),
      shuffledIndices(1000, 5),
    )
    t.type(seededPermutation(STORED_ORDER_MAX + 1, 5), FeistelPermutation)
    t.throws(() => new FeistelPermutation(0, 1), RangeError)
    t.throws(() => new FeistelPermutation(10, 1).at(10), RangeError)
  },
)

/** A store-sized source that holds nothing: sequence i is [i]. */
function virtualSource(n: number): SequenceSource {
  return { length: n, lengthOf: () => 1, targetsOf: () => 0, read: (i) => ({ ids: [i], labels: [i] }) }
}

t.test('an epoch of 10 M sequences is scheduled without a per-sequence table', async (t) => {
  const n = 10_000_000
  const before = process.memoryUsage().arrayBuffers
  const schedule = new BatchSchedule(virtualSource(n), 4, 42, 0)
  const first = Array.from(schedule.indices(0, 0))
  t.equal(first.length, 4)
  t.same(Array.from(schedule.indices(0, 0)), first, 'reproducible')
  t.notSame(Array.from(schedule.indices(1, 0)), first, 'another epoch, another order')
  t.equal(schedule.indices(0, schedule.batchesPerEpoch - 1).length, 4)
  const grown = process.memoryUsage().arrayBuffers - before
  t.ok(grown < (4 * n) / 10, `typed-array memory grew by ${grown} bytes (a stored order would be ${4 * n})`)
  // val_size on a corpus this size: held-out and training splits are disjoint positions of one permutation.
  const { train, eval: held } = splitSource(virtualSource(n), 1000, 42)
  t.equal(held.length, 1000)
  t.equal(train.length, n - 1000)
  const heldIds = new Set(Array.from({ length: held.length }, (_, i) => held.read(i).ids[0]))
  let overlap = 0
  for (let i = 0; i < 100_000; i++) if (heldIds.has(train.read(i).ids[0]!)) overlap++
  t.equal(overlap, 0, 'no held-out sequence is trained on')
  t.throws(() => train.read(n - 1000), RangeError)
})
