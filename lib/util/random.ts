/** Small seeded generators: reproducible data order, fixtures and benchmark batches without global state. */

/** mulberry32: a fast 32-bit generator of floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** `count` token ids in [0, vocab), reproducible from `seed`. */
export function randomTokenIds(count: number, vocab: number, seed: number): Int32Array {
  const next = mulberry32(seed)
  return new Int32Array(count).map(() => Math.floor(next() * vocab))
}
