/** What a training run reports while it runs (`onEvent`) and when it ends. */

import type { KernelOptions } from '../native/kernel-options.js'

export interface LogRecord {
  /** LLaMA-Factory's trainer_log.jsonl fields (its LogCallback's, absent ones left out as it leaves out None). */
  current_steps: number
  total_steps: number
  loss?: number
  /** Evaluation lines: the loss of the eval set (eval_dataset merged, or val_size's split). */
  eval_loss?: number
  /**
   * Evaluation lines with eval_on_each_dataset: `eval_<name>_loss` for each eval dataset, as transformers names them.
   */
  [evalDatasetLoss: `eval_${string}_loss`]: number | undefined
  lr?: number
  epoch: number
  percentage: number
  elapsed_time: string
  remaining_time: string
  /** Tokens (real, not padding) per second since this process started training, over every rank. */
  throughput?: number
  /** Tokens (real, not padding) trained on since the run began, over every rank (resumed runs carry it on). */
  total_tokens?: number
  /** llamapro's additions. */
  grad_norm?: number
  tokens_per_second?: number
  elapsed_seconds: number
  /** Gradient norm of each trainable layer (and of trainable modules outside the layers, by name). */
  layer_grad_norms?: Record<string, number>
  /** Data-parallel runs: gradient bytes each rank all-reduced in the last step (only trainable parameters). */
  allreduce_bytes?: number
  /** Bytes of AdamW state this rank holds (multi-rank runs; with zero_stage 1, its shard only). */
  optimizer_state_bytes?: number
}

export interface TrainResult {
  outputDir: string
  globalStep: number
  totalSteps: number
  /** True when an AbortSignal stopped the run (a checkpoint was saved). */
  aborted: boolean
  /** Mean training loss over the steps this run took. */
  trainLoss: number
  evalLoss: number | null
  /** The last evaluation's loss of each eval set, by metric key (eval_loss, or eval_<name>_loss); {} without one. */
  evalLosses: Record<string, number>
  seconds: number
  tokensPerSecond: number
  checkpoints: string[]
  logHistory: LogRecord[]
}

export type TrainEvent =
  | {
      type: 'start'
      totalSteps: number
      startStep: number
      stepsPerEpoch: number
      /** null when streaming: the count is not known before the data is read. */
      trainSequences: number | null
      evalSequences: number
      trainableParams: number
      totalParams: number
      trainableLayerIds: number[]
      resumedFrom: string | null
      /** Data-parallel runs: ranks, and the gradient bytes all-reduced per step, beside full fine-tuning's. */
      worldSize?: number
      allReduceBytes?: number
      fullFineTuneAllReduceBytes?: number
      /** 1 when AdamW's state is sharded over the ranks (zero_stage: 1). */
      zeroStage?: 0 | 1
      /** Where the run trains, and why there (`device: auto` picks the first visible GPU, else the CPU). */
      device: string
      deviceReason: string
      /** The kernel switches in effect (lib/native/kernel-options.ts). */
      kernels?: KernelOptions
    }
  | {
      type: 'step'
      step: number
      totalSteps: number
      loss: number
      lr: number
      gradNorm: number
      tokens: number
      seconds: number
    }
  | { type: 'log'; record: LogRecord }
  /** evalLoss: over every eval set's tokens; losses: each set's, by its metric key (eval_loss or eval_<name>_loss). */
  | { type: 'eval'; step: number; evalLoss: number; losses: Record<string, number>; tokens: number }
  | { type: 'checkpoint'; step: number; path: string }
  | { type: 'warning'; message: string; step?: number }
  /** What the data phase did: the token store loaded or built, with its totals. */
  | { type: 'data'; message: string }
  /** Where the run reports (TensorBoard's folder), said once at the start. */
  | { type: 'report'; message: string }
  | { type: 'done'; result: TrainResult }
