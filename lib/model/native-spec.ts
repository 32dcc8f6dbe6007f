import type { ModelConfig } from '../checkpoint/config.js'
import { type NativeModelSpec, modelSpec } from '../checkpoint/model-contract.js'

/** The decoder shape the native module is built from: the config's fields of lib/checkpoint/model-contract.ts. */
export function nativeSpec(config: ModelConfig): NativeModelSpec {
  return modelSpec(config)
}
