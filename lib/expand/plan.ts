/**
 * Where new blocks go. `numExpand: K` is LLaMA-Factory's llama_pro.py: with split = n / K, a copy of layer
 * split-1, 2*split-1, ..., n-1 is inserted right after it (32 layers, K = 8: new blocks at 4, 9, 14, ..., 39).
 * `positions` (beyond LLaMA-Factory) inserts after the given original layers instead.
 */
import { LlamaproError } from '../errors.js'

export class ExpansionError extends LlamaproError {
  constructor(message: string) {
    super('LLAMAPRO_EXPAND', message)
    this.name = 'ExpansionError'
  }
}

export interface ExpansionPlan {
  originalNumLayers: number
  numLayers: number
  /** Original layer indices, ascending, each followed by a new block copied from it. */
  insertAfter: number[]
  /** Index of each new block in the expanded model, in the order of insertAfter. */
  newLayerIds: number[]
  /** For every layer of the expanded model: the original layer it comes from, and whether it is new. */
  layers: { source: number; isNew: boolean }[]
}

export interface ExpansionOptions {
  numExpand?: number
  positions?: readonly number[]
}

export function planExpansion(numLayers: number, options: ExpansionOptions): ExpansionPlan {
  const { numExpand, positions } = options
  if (numExpand !== undefined && positions !== undefined) {
    throw new ExpansionError('give either num_expand or positions, not both')
  }
  let insertAfter: number[]
  if (positions !== undefined) {
    if (positions.length === 0)
      throw new ExpansionError('positions is empty: name at least one layer to insert a block after')
    const seen = new Set<number>()
    for (const p of positions) {
      if (!Number.isInteger(p) || p < 0 || p >= numLayers) {
        throw new ExpansionError(
          `position ${p} is out of range: the model has ${numLayers} layers (valid positions: 0..${numLayers - 1})`,
        )
      }
      if (seen.has(p))
        throw new ExpansionError(`position ${p} is given twice (each layer can be followed by one new block)`)
      seen.add(p)
    }
    insertAfter = [...positions].sort((a, b) => a - b)
  } else {
    if (numExpand === undefined) throw new ExpansionError('give num_expand (how many blocks to add) or positions')
    if (!Number.isInteger(numExpand) || numExpand <= 0) {
      throw new ExpansionError(`num_expand must be a positive integer, got ${numExpand}`)
    }
    if (numLayers % numExpand !== 0) {
      throw new ExpansionError(
        `num_layers ${numLayers} should be divisible by num_expand ${numExpand} ` +
          `(divisors of ${numLayers}: ${divisors(numLayers).join(', ')}; or use positions to choose layers freely)`,
      )
    }
    const split = numLayers / numExpand
    insertAfter = Array.from({ length: numExpand }, (_, i) => (i + 1) * split - 1)
  }
  const layers: { source: number; isNew: boolean }[] = []
  const newLayerIds: number[] = []
  for (let i = 0; i < numLayers; i++) {
    layers.push({ source: i, isNew: false })
    if (insertAfter.includes(i)) {
      newLayerIds.push(layers.length)
      layers.push({ source: i, isNew: true })
    }
  }
  return { originalNumLayers: numLayers, numLayers: layers.length, insertAfter, newLayerIds, layers }
}

export function divisors(n: number): number[] {
  const out: number[] = []
  for (let d = 1; d <= n; d++) if (n % d === 0) out.push(d)
  return out
}
