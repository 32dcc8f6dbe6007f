/**
 * What a KV cache uses of its model, declared apart from LlamaModel (which has it): lib/generate's types then
 * name this instead of LlamaModel, whose generate() methods name theirs, and no two files import each other.
 */
import type { ModelConfig } from '../checkpoint/config.js'
import type { NativeModelHandle } from '../native/binding.js'

export interface NativeBackedModel {
  readonly config: ModelConfig
  /** @internal The addon's model object (LlamaModel.native). */
  readonly native: NativeModelHandle
}
