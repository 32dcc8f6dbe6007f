import type { ModelConfig } from '../checkpoint/config.js'
import { type NativeModelSpec, modelSpec } from '../checkpoint/model-contract.js'

/** The decoder shape the native module is built from: the contract's fields of the config (lib/checkpoint/model-contract.ts). */
export function nativeSpec(config: ModelConfig): NativeModelSpec {
  return modelSpec(config)
}
