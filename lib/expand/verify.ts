/**
 * `llamapro verify`: proves that an expanded checkpoint computes what its original did. Loads both, checks that
 * every new block's o_proj/down_proj are exactly zero and its other tensors equal the layer it copies, that every
 * other tensor is unchanged, and that both models give the same logits on one random batch.
 */
import { openCheckpoint } from '../checkpoint/checkpoint.js'
import { layerParameters, layerPrefix } from '../checkpoint/parameters.js'
import { LlamaproError } from '../errors.js'
import { type Device, LlamaModel } from '../model/llama-model.js'
import { randomTokenIds } from '../util/random.js'
import { readExpansionRecord } from './record.js'
import { ZEROED_IN_NEW_BLOCKS } from './expand-checkpoint.js'

export interface VerifyOptions {
  /** Largest accepted |logit difference| (default 1e-5, computed in float32). */
  tolerance?: number
  device?: Device
  seed?: number
  batch?: number
  seq?: number
}

export interface VerifyResult {
  ok: boolean
  maxLogitDifference: number
  tolerance: number
  /** How the new blocks were identified. */
  mappingFrom: 'llamapro_expansion.json' | 'zero o_proj/down_proj'
  newLayers: { index: number; source: number; zeroedMaxAbs: number; copiedMaxDifference: number }[]
  unchangedMaxDifference: number
  failures: string[]
}

/** Which expanded layers are new and which original layer each layer of the expanded model comes from. */
async function layerMapping(
  expanded: LlamaModel,
  expandedDir: string,
  originalLayers: number,
): Promise<{ from: VerifyResult['mappingFrom']; source: number[]; isNew: boolean[] }> {
  const n = expanded.config.numLayers
  const record = await readExpansionRecord(expandedDir)
  let newIds: Set<number>
  let from: VerifyResult['mappingFrom']
  if (record && record.num_layers === n && record.original_num_layers === originalLayers) {
    newIds = new Set(record.new_layer_ids)
    from = 'llamapro_expansion.json'
  } else {
    const zeroNames = (i: number) =>
      layerParameters(expanded.config, i)
        .map((p) => p.name)
        .filter((name) => ZEROED_IN_NEW_BLOCKS.test(name.slice(layerPrefix(i).length)))
    newIds = new Set()
    for (let i = 0; i < n; i++) {
      const maxAbs = await expanded.tensorMaxAbs(zeroNames(i))
      if (maxAbs.every((v) => v === 0)) newIds.add(i)
    }
    from = 'zero o_proj/down_proj'
  }
  if (n - newIds.size !== originalLayers) {
    throw new LlamaproError(
      'LLAMAPRO_VERIFY',
      `cannot match layers: the expanded model has ${n} layers of which ${newIds.size} look new (${from}), the ` +
        `original has ${originalLayers}`,
    )
  }
  const source: number[] = []
  const isNew: boolean[] = []
  let original = -1
  for (let i = 0; i < n; i++) {
    if (newIds.has(i)) {
      if (original < 0)
        throw new LlamaproError('LLAMAPRO_VERIFY', `layer ${i} is marked new but no original layer comes before it`)
      source.push(original)
      isNew.push(true)
    } else {
      source.push(++original)
      isNew.push(false)
    }
  }
  return { from, source, isNew }
}

export async function verifyExpansion(
  originalDir: string,
  expandedDir: string,
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const tolerance = options.tolerance ?? 1e-5
  const [originalCkpt, expandedCkpt] = await Promise.all([openCheckpoint(originalDir), openCheckpoint(expandedDir)])
  const load = { device: options.device ?? 'cpu', dtype: 'float32' } as const
  const original = await LlamaModel.fromCheckpoint(originalCkpt, load)
  let expanded: LlamaModel | undefined
  try {
    expanded = await LlamaModel.fromCheckpoint(expandedCkpt, load)
    const failures: string[] = []
    const mapping = await layerMapping(expanded, expandedDir, original.config.numLayers)
    const newLayers: VerifyResult['newLayers'] = []
    let unchangedMaxDifference = 0
    for (let i = 0; i < expanded.config.numLayers; i++) {
      const source = mapping.source[i]!
      const rests = layerParameters(expanded.config, i).map((p) => p.name.slice(layerPrefix(i).length))
      const zeroed = mapping.isNew[i] ? rests.filter((r) => ZEROED_IN_NEW_BLOCKS.test(r)) : []
      const copied = rests.filter((r) => !zeroed.includes(r))
      const diffs = await expanded.maxAbsDifference(
        original,
        copied.map((r) => [`${layerPrefix(i)}${r}`, `${layerPrefix(source)}${r}`] as const),
      )
      const copiedMax = Math.max(0, ...diffs)
      copied.forEach((r, k) => {
        if (diffs[k] !== 0)
          failures.push(`layer ${i} ${r} differs from layer ${source} of the original by up to ${diffs[k]}`)
      })
      if (mapping.isNew[i]) {
        const maxAbs = await expanded.tensorMaxAbs(zeroed.map((r) => `${layerPrefix(i)}${r}`))
        zeroed.forEach((r, k) => {
          if (maxAbs[k] !== 0)
            failures.push(
              `new block ${i}: ${r} is not zero (max |x| = ${maxAbs[k]}), so the block is not an identity map`,
            )
        })
        newLayers.push({ index: i, source, zeroedMaxAbs: Math.max(0, ...maxAbs), copiedMaxDifference: copiedMax })
      } else {
        unchangedMaxDifference = Math.max(unchangedMaxDifference, copiedMax)
      }
    }
    const outside = original
      .parameters()
      .map((p) => p.name)
      .filter((name) => !name.startsWith('model.layers.'))
    const outsideDiffs = await expanded.maxAbsDifference(
      original,
      outside.map((n) => [n, n] as const),
    )
    outside.forEach((name, k) => {
      if (outsideDiffs[k] !== 0) failures.push(`${name} differs from the original by up to ${outsideDiffs[k]}`)
    })
    unchangedMaxDifference = Math.max(unchangedMaxDifference, ...outsideDiffs)

    const seq = Math.min(options.seq ?? 16, original.config.maxPositionEmbeddings)
    const batch = options.batch ?? 2
    const flat = randomTokenIds(batch * seq, original.config.vocabSize, options.seed ?? 1234)
    const ids = { data: flat, shape: [batch, seq] as const }
    const [a, b] = [await original.forward(ids), await expanded.forward(ids)]
    let maxLogitDifference = 0
    for (let k = 0; k < a.logits.length; k++)
      maxLogitDifference = Math.max(maxLogitDifference, Math.abs(a.logits[k]! - b.logits[k]!))
    if (!(maxLogitDifference <= tolerance)) {
      failures.push(`logits differ by up to ${maxLogitDifference}, more than the tolerance ${tolerance}`)
    }
    return {
      ok: failures.length === 0,
      maxLogitDifference,
      tolerance,
      mappingFrom: mapping.from,
      newLayers,
      unchangedMaxDifference,
      failures,
    }
  } finally {
    original.dispose()
    expanded?.dispose()
  }
}
