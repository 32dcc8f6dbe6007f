/**
 * A sweep's options, events and per-run records, in their own file: run.ts writes the report with report.ts, and
 * report.ts reads these types, so with the types in run.ts the two files would import each other.
 */
import type { SweepPlan } from './plan.js'

export interface SweepOptions {
  /** The training YAML: model_name_or_path is the original (not expanded) model; its freeze keys are replaced per
   * strategy. */
  config: string
  /** Strategy names, as `llamapro bench` takes them: "pro:8,last:8,full". */
  strategies: string
  /** Optimizer steps of every run (default: the YAML's max_steps or num_train_epochs). */
  steps?: number
  /** A token budget instead of steps (batch × accumulation × cutoff_len tokens per step). */
  tokens?: number
  /** Runs per strategy, with data-order seeds seed, seed+1, ... (default 1). */
  seeds?: number
  /** Held-out new-domain data (dataset names or files); default: the trainer's val_size split of the training data. */
  eval?: string[]
  /** Text the model should keep (dataset names or files), scored before and after. */
  keep: string[]
  /** How the kept text is read: pt (plain text, the default) or sft. */
  keepStage?: 'pt' | 'sft'
  /** The sweep folder: models/ (expansions), baseline/, runs/<strategy>/seed-<n>/, report.*. */
  outDir: string
  /** YAML keys given on top of the file (as `llamapro train`'s overrides). */
  overrides?: Record<string, unknown>
  cwd?: string
  signal?: AbortSignal
  onEvent?: (event: SweepEvent) => void
}

export interface Before {
  domain: number
  keep: number
}

export interface RunRecord {
  strategy: string
  seed: number
  dir: string
  model: string
  trainableParams: number
  totalParams: number
  steps: number
  /** Tokens the trainer fed (its step events' counts). */
  tokens: number
  /** The trainer's wall time (data preparation, steps, saving), not the held-out scoring. */
  seconds: number
  tokensPerSecond: number
  peakMemoryBytes: number | null
  device: string
  domain: { before: number; after: number; tokens: number }
  keep: { before: number; after: number; tokens: number }
}

export type SweepEvent =
  | { type: 'plan'; plan: SweepPlan; finished: number }
  | { type: 'expand'; blocks: number; dir: string; reused: boolean }
  | { type: 'before'; key: string; before: Before; reused: boolean }
  | { type: 'run-start'; strategy: string; seed: number; index: number; total: number }
  | { type: 'run-skipped'; strategy: string; seed: number; dir: string }
  | {
      type: 'step'
      strategy: string
      seed: number
      step: number
      totalSteps: number
      loss: number
      etaSeconds: number | null
    }
  | { type: 'run-done'; record: RunRecord }
  | { type: 'warning'; message: string }
  | { type: 'report'; files: string[] }
