/**
 * The AdamW optimizer of a model, as lib/train sees it: configured once per run (parameter groups, step counter,
 * fp16 loss scaling), read for checkpoints, and — under ZeRO stage 1 — gathered to rank 0 for a checkpoint and
 * sharded again. The state itself lives in native/adamw.cc beside the parameters it updates.
 */
import type { NativeModelHandle } from '../native/binding.js'
import { callNative, callNativeSync } from '../native/call.js'

export interface OptimizerSettings {
  /** Trainable parameters without weight decay (norms and biases, as transformers' get_decay_parameter_names). */
  noDecay: readonly string[]
  /** Updates done so far (AdamW's bias correction counts from here; 0 for a new run). */
  step: number
  /** fp16: dynamic loss scaling (PyTorch's GradScaler). */
  lossScaling: boolean
  /** The loss scale and growth counter to resume from (default: a fresh scaler). */
  lossScale?: number
  goodSteps?: number
  /** Per-parameter learning-rate factors (LoRA+); replaces the previous ones. */
  lrScale?: Readonly<Record<string, number>>
}

export interface OptimizerProgress {
  /** Updates done. */
  step: number
  lossScale: number
  /** Steps since the loss scale last changed. */
  goodSteps: number
  /** The names of the state tensors this rank holds ("exp_avg:<param>", "exp_avg_sq:<param>"). */
  stateTensors: string[]
}

export class ModelOptimizer {
  readonly #handle: () => NativeModelHandle

  /** @internal Made by LlamaModel (its `optimizer`). */
  constructor(handle: () => NativeModelHandle) {
    this.#handle = handle
  }

  /** Sets the parameter groups, the step counter and the loss scaler (synchronous: metadata only). */
  configure(settings: OptimizerSettings): void {
    const { noDecay, lrScale, ...rest } = settings
    callNativeSync('configuring the optimizer', () =>
      this.#handle().configureOptimizer({
        ...rest,
        noDecay: [...noDecay],
        ...(lrScale ? { lrScale: { ...lrScale } } : {}),
      }),
    )
  }

  /** Step counter, loss scaler and the names of the state tensors (for trainer_state.json and checkpoints). */
  progress(): OptimizerProgress {
    const state = callNativeSync('reading the optimizer state', () => this.#handle().optimizerState())
    return { step: state.step, lossScale: state.lossScale, goodSteps: state.goodSteps, stateTensors: state.names }
  }

  /** Bytes of AdamW state this rank holds (under ZeRO-1 its shard). */
  stateBytes(): number {
    return callNativeSync('reading the optimizer memory', () => this.#handle().memory().optimizerBytes)
  }

  /**
   * ZeRO-1, a collective (every rank calls it): rank 0 receives the whole AdamW state, for a checkpoint. A no-op
   * without ZeRO.
   */
  async gatherShards(): Promise<void> {
    await callNative('gathering the optimizer state (zero_stage 1)', () => this.#handle().gatherOptimizerState())
  }

  /**
   * ZeRO-1: keeps this rank's shard of whole per-parameter state (a loaded checkpoint, or after gatherShards). A no-op
   * without ZeRO.
   */
  async scatterShards(): Promise<void> {
    await callNative('sharding the optimizer state (zero_stage 1)', () => this.#handle().scatterOptimizerState())
  }
}
