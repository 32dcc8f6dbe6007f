/**
 * What a sweep will run: each strategy × each data-order seed, as one ordinary training run whose YAML is the
 * user's, with the strategy's freeze keys, the shared step budget, the seed and its own output folder put on top.
 * Nothing here touches a model or the data; it is a pure function of the options, the YAML and the layer count,
 * so the plan can be printed, tested and compared with a folder's earlier plan before anything runs.
 */
import { join } from 'node:path'
import { UsageError } from '../errors.js'
import { parseStrategies } from '../bench/strategies.js'
import type { TrainConfig } from '../train/config.js'
import { type TrainOverrides, trainOverrides } from '../train/overrides.js'

/** One strategy as the sweep trains it: the training YAML keys it sets, and the model it starts from. */
export interface SweepStrategy {
  name: string
  /** The YAML keys that select what trains; they replace the user's freeze keys. */
  keys: TrainOverrides
  /** Blocks to add by LLaMA-Pro expansion before training (pro:N), or null: the strategy trains the original. */
  expandBy: number | null
}

/** Every freeze key a strategy decides; set explicitly for every strategy, so the YAML's own values never leak in. */
const FREEZE_DEFAULTS = trainOverrides({
  finetuning_type: 'freeze',
  use_llama_pro: false,
  freeze_trainable_layers: 2,
  freeze_trainable_modules: 'all',
  freeze_extra_modules: null,
  freeze_trainable_layer_ids: null,
})

/**
 * The strategy names `llamapro bench` takes (full, last:N, first:N, pro:N, modules:a+b, ids:a,b,...), as training
 * keys. A new kind of strategy (LoRA on the new blocks, once it exists) is one more case here: its keys and
 * whether it needs the expanded model.
 */
export function sweepStrategies(text: string, numLayers: number): SweepStrategy[] {
  const parsed = parseStrategies(text, numLayers)
  const seen = new Set<string>()
  return parsed.map((s) => {
    if (seen.has(s.name)) throw new UsageError(`strategy "${s.name}" is listed twice in --strategies`)
    seen.add(s.name)
    // A LoRA run's output is an adapter folder, which the held-out scoring would have to load over its base model.
    if (s.lora)
      throw new UsageError(
        `strategy "${s.name}": LoRA strategies are not part of sweep yet (bench takes them); use full, last:N, ` +
          `first:N, pro:N, modules:..., ids:...`,
      )
    const o = s.options
    const modules = o.freezeTrainableModules
    const ids = o.freezeTrainableLayerIds
    return {
      name: s.name,
      keys: trainOverrides(FREEZE_DEFAULTS, {
        // parseStrategies sets finetuningType to full or lora (refused above)
        finetuning_type: o.finetuningType === 'full' ? 'full' : undefined,
        use_llama_pro: o.useLlamaPro || undefined,
        freeze_trainable_layers: o.freezeTrainableLayers,
        freeze_trainable_modules: modules ? (typeof modules === 'string' ? modules : modules.join(',')) : undefined,
        freeze_trainable_layer_ids: ids ? (typeof ids === 'string' ? ids : ids.join(',')) : undefined,
      }),
      expandBy: o.useLlamaPro ? o.freezeTrainableLayers! : null,
    }
  })
}

/** A folder name for a strategy: "pro:6" -> "pro-6", "ids:1,5" -> "ids-1-5", "modules:mlp+self_attn" kept. */
export function strategySlug(name: string): string {
  return name.replace(/[:,]/g, '-').replace(/[^A-Za-z0-9._+-]/g, '_')
}

export interface PlannedRun {
  strategy: SweepStrategy
  seed: number
  /** The run's training output folder (an ordinary `llamapro train` output_dir). */
  dir: string
  /** The model it starts from: the YAML's model, or its expansion by strategy.expandBy. */
  model: string
  /** The keys put on top of the user's YAML for this run. */
  overrides: TrainOverrides
}

export interface SweepPlan {
  strategies: SweepStrategy[]
  seeds: number[]
  /** Optimizer steps of every run (null: the YAML's max_steps / num_train_epochs, the same for every run). */
  steps: number | null
  /** Expanded models to build once: blocks added -> folder. */
  expansions: Map<number, string>
  runs: PlannedRun[]
}

export interface PlanInput {
  config: Pick<
    TrainConfig,
    'modelNameOrPath' | 'seed' | 'perDeviceTrainBatchSize' | 'gradientAccumulationSteps' | 'cutoffLen'
  >
  numLayers: number
  strategies: string
  outDir: string
  steps?: number
  /** A token budget, turned into steps of batch × accumulation × cutoff_len tokens (see stepsForTokens). */
  tokens?: number
  seeds?: number
}

/**
 * Steps for a token budget: one optimizer step takes per_device_train_batch_size × gradient_accumulation_steps
 * sequences of at most cutoff_len tokens. Exact for packed pt data (every block is full but the last); sft
 * sequences are shorter, so fewer tokens train. The report gives the tokens each run did train.
 */
export function stepsForTokens(tokens: number, config: PlanInput['config']): number {
  const perStep = config.perDeviceTrainBatchSize * config.gradientAccumulationSteps * config.cutoffLen
  return Math.max(1, Math.ceil(tokens / perStep))
}

export function planSweep(input: PlanInput): SweepPlan {
  if (input.steps !== undefined && input.tokens !== undefined)
    throw new UsageError('give --steps or --tokens, not both')
  const seedCount = input.seeds ?? 1
  if (!Number.isInteger(seedCount) || seedCount < 1)
    throw new UsageError(`--seeds must be a positive integer, got ${seedCount}`)
  const strategies = sweepStrategies(input.strategies, input.numLayers)
  const steps = input.steps ?? (input.tokens !== undefined ? stepsForTokens(input.tokens, input.config) : null)
  // Consecutive seeds from the YAML's: seed K of every strategy sees the same data order.
  const seeds = Array.from({ length: seedCount }, (_, k) => input.config.seed + k)
  const expansions = new Map<number, string>()
  for (const s of strategies)
    if (s.expandBy !== null) expansions.set(s.expandBy, join(input.outDir, 'models', `expanded-${s.expandBy}`))
  // Seed-major: after the first round every strategy has a run, so a sweep stopped early still compares them all.
  const runs: PlannedRun[] = []
  for (const seed of seeds) {
    for (const strategy of strategies) {
      const dir = join(input.outDir, 'runs', strategySlug(strategy.name), `seed-${seed}`)
      const model = strategy.expandBy === null ? input.config.modelNameOrPath : expansions.get(strategy.expandBy)!
      runs.push({
        strategy,
        seed,
        dir,
        model,
        overrides: trainOverrides(strategy.keys, {
          model_name_or_path: model,
          output_dir: dir,
          seed,
          max_steps: steps ?? undefined,
          // A stopped run starts again from its beginning (see run.ts): intermediate checkpoints would only fill the
          // disk.
          save_strategy: 'no',
          overwrite_output_dir: true,
          resume_from_checkpoint: null,
        }),
      })
    }
  }
  return { strategies, seeds, steps, expansions, runs }
}
