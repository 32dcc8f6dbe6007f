/**
 * Choosing the next token from the last logits, as transformers' generate does: the repetition penalty first
 * (scores of tokens already in the sequence divided by it, or multiplied when negative), then - when sampling -
 * temperature, top-k and top-p, and a draw from the remaining softmax. Temperature 0 is greedy (argmax).
 *
 * This runs in TypeScript over the float32 logits one native step returns: one pass over `vocab` numbers costs
 * microseconds next to the forward pass that made them, the seeded generator is the same on every device, and
 * stop rules, streaming and AbortSignal all live on the JS side anyway. A native sampler would save the copy of
 * the logits (vocab * 4 bytes a token) and nothing else.
 */
import { LlamaproError } from '../errors.js'
import { mulberry32 } from '../util/random.js'

export interface SamplingOptions {
  /** 0 (greedy) or more; 1 leaves the distribution as it is. */
  temperature: number
  /** Keep the k most likely tokens (0: no limit). */
  topK: number
  /** Keep the smallest set of tokens whose probability reaches p (1: no limit). */
  topP: number
  /** > 1 discourages tokens already in the prompt or output (1: off), as transformers' repetition_penalty. */
  repetitionPenalty: number
}

export function checkSamplingOptions(o: SamplingOptions): void {
  const bad = (what: string, valid: string, value: number) => {
    throw new LlamaproError('LLAMAPRO_ARG', `${what} must be ${valid}, got ${value}`)
  }
  if (!(Number.isFinite(o.temperature) && o.temperature >= 0))
    bad('temperature', 'a number >= 0 (0 is greedy)', o.temperature)
  if (!(Number.isInteger(o.topK) && o.topK >= 0)) bad('topK', 'an integer >= 0 (0: no limit)', o.topK)
  if (!(Number.isFinite(o.topP) && o.topP > 0 && o.topP <= 1)) bad('topP', 'a number in (0, 1]', o.topP)
  if (!(Number.isFinite(o.repetitionPenalty) && o.repetitionPenalty > 0))
    bad('repetitionPenalty', 'a number > 0 (1: off)', o.repetitionPenalty)
}

/** A seeded source of uniform floats in [0, 1). */
export function samplerRandom(seed: number): () => number {
  return mulberry32(seed)
}

/** transformers' RepetitionPenaltyLogitsProcessor, in place. */
export function applyRepetitionPenalty(logits: Float32Array, seen: ReadonlySet<number>, penalty: number): void {
  if (penalty === 1) return
  for (const id of seen) {
    const score = logits[id]!
    logits[id] = score < 0 ? score * penalty : score / penalty
  }
}

export function argmax(logits: Float32Array): number {
  let best = 0
  let bestValue = -Infinity
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!
    if (v > bestValue) {
      bestValue = v
      best = i
    }
  }
  return best
}

/** Ids of the k largest logits, largest first (ties: lower id first). */
function topKIds(logits: Float32Array, k: number): number[] {
  if (k >= logits.length) {
    const all = Array.from(logits.keys())
    return all.sort((a, b) => logits[b]! - logits[a]! || a - b)
  }
  // A small sorted buffer: k is small in practice (transformers' default is 50).
  const ids: number[] = []
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!
    if (ids.length === k) {
      if (v <= logits[ids[k - 1]!]!) continue
      ids.pop()
    }
    let at = ids.length
    ids.push(i)
    while (at > 0 && logits[ids[at - 1]!]! < v) {
      ids[at] = ids[at - 1]!
      at--
    }
    ids[at] = i
  }
  return ids
}

/**
 * The next token. `logits` is modified (penalty, temperature). `seen` holds the ids of the sequence so far,
 * for the repetition penalty.
 */
export function pickToken(
  logits: Float32Array,
  seen: ReadonlySet<number>,
  o: SamplingOptions,
  random: () => number,
): number {
  applyRepetitionPenalty(logits, seen, o.repetitionPenalty)
  if (o.temperature === 0) return argmax(logits)
  const candidates = o.topK > 0 || o.topP < 1 ? topKIds(logits, o.topK > 0 ? o.topK : logits.length) : null
  const t = o.temperature
  if (candidates === null) {
    // Plain sampling over the whole vocabulary.
    let max = -Infinity
    for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]! / t)
    let sum = 0
    const weights = new Float64Array(logits.length)
    for (let i = 0; i < logits.length; i++) sum += weights[i] = Math.exp(logits[i]! / t - max)
    return draw(weights, sum, random, (i) => i)
  }
  const max = logits[candidates[0]!]! / t
  const weights = new Float64Array(candidates.length)
  let sum = 0
  for (let i = 0; i < candidates.length; i++) sum += weights[i] = Math.exp(logits[candidates[i]!]! / t - max)
  let keep = candidates.length
  if (o.topP < 1) {
    // Keep tokens until their cumulative probability reaches top_p (the one that crosses it included).
    let cumulative = 0
    for (let i = 0; i < candidates.length; i++) {
      cumulative += weights[i]! / sum
      if (cumulative >= o.topP) {
        keep = i + 1
        break
      }
    }
  }
  let kept = 0
  for (let i = 0; i < keep; i++) kept += weights[i]!
  return draw(weights.subarray(0, keep), kept, random, (i) => candidates[i]!)
}

function draw(weights: Float64Array, sum: number, random: () => number, id: (index: number) => number): number {
  let target = random() * sum
  for (let i = 0; i < weights.length; i++) {
    target -= weights[i]!
    if (target < 0) return id(i)
  }
  // Rounding left a sliver: the last token with any weight.
  for (let i = weights.length - 1; i >= 0; i--) if (weights[i]! > 0) return id(i)
  return id(0)
}
