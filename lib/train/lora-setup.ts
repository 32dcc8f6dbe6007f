/**
 * finetuning_type: lora in a training run, as LLaMA-Factory's `_setup_lora_tuning` does it: either new adapters
 * on the targets loraPolicy chooses (lora_target, use_llama_pro's stride rule), or — with adapter_name_or_path —
 * training continues the adapter given (its own r, alpha and targets, as PeftModel.from_pretrained(is_trainable)).
 * Only the adapters (and additional_target modules) train; the output is a PEFT adapter folder.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Checkpoint, openCheckpoint } from '../checkpoint/checkpoint.js'
import { mergeAdapter } from '../adapters/merge-adapter.js'
import { type AdapterFolder, readAdapter } from '../adapters/peft-adapter.js'
import { type LoraPlan, loraParameterNames, loraPolicy } from '../adapters/lora-targets.js'
import type { LlamaModel } from '../model/llama-model.js'
import { TrainingError } from './errors.js'
import type { TrainConfig } from './config.js'

export interface LoraTrainingPolicy {
  finetuningType: 'lora'
  trainable: string[]
  trainableLayerIds: number[]
  explanation: string[]
  /** New adapters (no adapter_name_or_path) … */
  plan: LoraPlan | null
  /** … or the adapter whose training continues. */
  adapter: AdapterFolder | null
  /** Adapters merged into the base before training (LLaMA-Factory's adapter_to_merge), in order. */
  merge: string[]
}

const layerOf = (name: string) => Number(/^model\.layers\.(\d+)\./.exec(name)?.[1] ?? NaN)

/** Checks the LoRA keys against the model and decides what trains, before the model is loaded. */
export async function loraTrainingPolicy(cfg: TrainConfig, checkpoint: Checkpoint): Promise<LoraTrainingPolicy> {
  if (cfg.saveDelta)
    throw new TrainingError(
      'LLAMAPRO_TRAIN_CONFIG',
      'save_delta: true is for freeze/full training; finetuning_type: lora already writes only the adapter',
    )
  if (cfg.loraplusLrRatio !== null && cfg.zeroStage === 1) {
    throw new TrainingError(
      'LLAMAPRO_TRAIN_CONFIG',
      'loraplus_lr_ratio with zero_stage: 1 is not supported (the sharded optimizer has one learning rate); use ' +
        'zero_stage: 0',
    )
  }
  // LLaMA-Factory: with create_new_adapter every adapter is merged and a new one trains; otherwise all but the last
  // are merged and training continues the last.
  const merge = cfg.createNewAdapter ? [...cfg.adapterNameOrPath] : cfg.adapterNameOrPath.slice(0, -1)
  for (const dir of merge) await readAdapter(dir) // a bad folder is reported before anything is merged
  if (cfg.adapterNameOrPath.length > 0 && !cfg.createNewAdapter) {
    const adapter = await readAdapter(cfg.adapterNameOrPath.at(-1)!)
    const trainable = [...adapter.targets.flatMap(loraParameterNames), ...adapter.fullyTrained]
    const ids = [...new Set(adapter.targets.map(layerOf))].sort((a, b) => a - b)
    return {
      finetuningType: 'lora',
      trainable,
      trainableLayerIds: ids,
      explanation: [
        `adapter_name_or_path: training continues ${adapter.dir} (r ${adapter.config.r}, lora_alpha ` +
          `${adapter.config.loraAlpha}, ${adapter.targets.length} adapted layers; lora_target/lora_rank/lora_alpha ` +
          `of the YAML are not used).`,
      ],
      plan: null,
      adapter,
      merge,
    }
  }
  const plan = loraPolicy(checkpoint.config.numLayers, checkpoint.tensors, {
    loraTarget: cfg.loraTarget,
    useLlamaPro: cfg.useLlamaPro,
    freezeTrainableLayers: cfg.freezeTrainableLayers,
    additionalTarget: cfg.additionalTarget,
  })
  return {
    finetuningType: 'lora',
    trainable: plan.trainable,
    trainableLayerIds: plan.trainableLayerIds,
    explanation: plan.explanation,
    plan,
    adapter: null,
    merge,
  }
}

/**
 * The base model with `policy.merge`'s adapters merged into it (W + scale B A, one after the other), written to a
 * temporary folder that `dispose` removes; LLaMA-Factory merges them in memory. Null when there is nothing to merge.
 */
export async function mergedBase(
  policy: LoraTrainingPolicy,
  base: Checkpoint,
): Promise<{ checkpoint: Checkpoint; dispose: () => Promise<void> } | null> {
  if (policy.merge.length === 0) return null
  const root = await mkdtemp(join(tmpdir(), 'llamapro-merged-'))
  const dispose = () => rm(root, { recursive: true, force: true })
  try {
    let from = base.dir
    for (const [i, adapter] of policy.merge.entries()) {
      const out = join(root, String(i))
      await mergeAdapter(from, adapter, out)
      from = out
    }
    return { checkpoint: await openCheckpoint(from), dispose }
  } catch (error) {
    await dispose()
    throw error
  }
}

/** Adds (or loads) the adapters on a freshly loaded model. */
export async function applyLora(model: LlamaModel, cfg: TrainConfig, policy: LoraTrainingPolicy): Promise<void> {
  if (policy.adapter) {
    await model.loadAdapter(policy.adapter.dir, { dropout: cfg.loraDropout })
    return
  }
  const plan = policy.plan!
  await model.addLora({
    targets: plan.targets,
    rank: cfg.loraRank,
    alpha: cfg.loraAlpha,
    useRslora: cfg.useRslora,
    dropout: cfg.loraDropout,
    seed: cfg.seed,
    targetModules: plan.targetModules,
    modulesToSave: plan.modulesToSave,
    fullyTrained: plan.fullyTrained,
    baseModelNameOrPath: cfg.modelNameOrPath,
  })
}

/**
 * LoRA+ (LLaMA-Factory's `_create_loraplus_optimizer`): lora_B and every 1-D parameter train at
 * loraplus_lr_ratio × lr, with weight decay unless transformers exempts them; everything else (lora_A and 2-D
 * modules_to_save weights) at lr, always with weight decay. Without LoRA+: the usual no-decay set.
 */
export function loraOptimizerGroups(
  cfg: Pick<TrainConfig, 'loraplusLrRatio'>,
  trainable: readonly { name: string; shape: readonly number[] }[],
  noWeightDecay: (name: string) => boolean,
): { noDecay: string[]; lrScale: Record<string, number> } {
  if (cfg.loraplusLrRatio === null) return { noDecay: trainable.map((p) => p.name).filter(noWeightDecay), lrScale: {} }
  const lrScale: Record<string, number> = {}
  const noDecay: string[] = []
  for (const p of trainable) {
    if (p.name.includes('lora_B') || p.shape.length === 1) {
      lrScale[p.name] = cfg.loraplusLrRatio
      if (noWeightDecay(p.name)) noDecay.push(p.name)
    }
  }
  return { noDecay, lrScale }
}
