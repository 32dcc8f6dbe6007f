/**
 * How a model's trainable gradients are combined across the ranks of a data-parallel job: not at all (one
 * process), summed over the ranks before each update (DDP's all-reduce), or summed and each rank keeping only its
 * shard of the optimizer state (ZeRO stage 1). The work happens inside the native training step (native/
 * process_group.cc, native/zero_optimizer.cc); this object only says which strategy the model uses.
 */
import type { ProcessGroup } from '../distributed/process-group.js'
import type { NativeModelHandle } from '../native/binding.js'
import { callNativeSync } from '../native/call.js'

export type ZeroStage = 0 | 1

export class GradientSync {
  readonly #handle: () => NativeModelHandle
  #group: ProcessGroup | null = null
  #zeroStage: ZeroStage = 0

  /** @internal Made by LlamaModel (its `gradientSync`). */
  constructor(handle: () => NativeModelHandle) {
    this.#handle = handle
  }

  /**
   * From the next update on, gradients are summed over `group`'s ranks (zeroStage 1: the AdamW state is sharded too).
   */
  attach(group: ProcessGroup, options: { zeroStage: ZeroStage }): void {
    callNativeSync('attaching the process group', () =>
      this.#handle().attachProcessGroup(group.handle, { zeroStage: options.zeroStage }),
    )
    this.#group = group
    this.#zeroStage = options.zeroStage
  }

  /** Back to one process: updates use this rank's gradients only. */
  detach(): void {
    callNativeSync('detaching the process group', () => this.#handle().attachProcessGroup(null))
    this.#group = null
    this.#zeroStage = 0
  }

  /** The group gradients are summed over, or null. */
  get group(): ProcessGroup | null {
    return this.#group
  }

  get zeroStage(): ZeroStage {
    return this.#zeroStage
  }
}
