import type { ModelConfig } from '../checkpoint/config.js'
import type { NativeModelSpec } from '../native/binding.js'

/** The decoder shape the native module is built from. */
export function nativeSpec(config: ModelConfig): NativeModelSpec {
  return {
    vocabSize: config.vocabSize,
    hiddenSize: config.hiddenSize,
    intermediateSize: config.intermediateSize,
    numLayers: config.numLayers,
    numHeads: config.numHeads,
    numKvHeads: config.numKvHeads,
    headDim: config.headDim,
    rmsNormEps: config.rmsNormEps,
    rope: { ...config.rope },
    qkvBias: config.qkvBias,
    oBias: config.oBias,
    mlpBias: config.mlpBias,
    tieWordEmbeddings: config.tieWordEmbeddings,
    slidingWindows: config.slidingWindows,
  }
}
