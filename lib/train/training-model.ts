/**
 * Phase 2 of a run: the model loaded with the run's dtype and checkpointing, attached to the process group, its
 * trainable set and optimizer configured, and the progress a resume restores.
 */
import { existsSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { setThreads } from '../info.js'
import { LlamaModel } from '../model/llama-model.js'
import { loadOptimizerState } from './checkpoints.js'
import { trainingDtypes } from './config.js'
import { applyLora, loraOptimizerGroups } from './lora-setup.js'
import type { LogRecord } from './events.js'
import { clearRunOutputs } from './output-dir.js'
import type { RunPlan } from './prepare-data.js'

/** transformers' Trainer applies no weight decay to biases and norm weights. */
const noWeightDecay = (name: string) => name.endsWith('.bias') || /norm\.weight$/.test(name)

/** Where the run is: advanced by the loop, saved in checkpoints, restored on resume. */
export interface Progress {
  step: number
  epoch: number
  batchIndex: number
  logHistory: LogRecord[]
  /** The loss of the optimizer steps since the last log line. */
  window: { loss: number; steps: number }
}

/**
 * The model as the loop trains it: loaded with the run's dtype and checkpointing, attached to the process group,
 * its trainable set and optimizer configured (what `llamapro bench <train.yaml>` times, too).
 */
export async function loadTrainingModel(
  plan: RunPlan,
  overrides: { gradientCheckpointing?: boolean; checkpointFrozenLayers?: boolean } = {},
): Promise<LlamaModel> {
  const { cfg, checkpoint, policy } = plan
  const { compute, master } = trainingDtypes(cfg)
  if (cfg.threads > 0) setThreads(cfg.threads)
  const model = await LlamaModel.fromCheckpoint(checkpoint, {
    device: plan.device.device,
    dtype: compute,
    gradientCheckpointing: overrides.gradientCheckpointing ?? !cfg.disableGradientCheckpointing,
    checkpointFrozenLayers: overrides.checkpointFrozenLayers ?? cfg.checkpointFrozenLayers,
  })
  try {
    if (plan.group) model.gradientSync.attach(plan.group, { zeroStage: cfg.zeroStage })
    if (policy.finetuningType === 'lora') await applyLora(model, cfg, policy)
    await model.setTrainable(policy.trainable, { masterDtype: master })
    const groups = optimizerGroups(model, plan)
    model.optimizer.configure({ noDecay: groups.noDecay, step: 0, lossScaling: cfg.fp16, lrScale: groups.lrScale })
    return model
  } catch (error) {
    model.dispose()
    throw error
  }
}

/** The optimizer's parameter groups: no weight decay for norms and biases; LoRA+'s learning-rate factors. */
function optimizerGroups(model: LlamaModel, plan: RunPlan) {
  const trainableParams = model.parameters().filter((p) => p.requiresGrad)
  return loraOptimizerGroups(
    plan.policy.finetuningType === 'lora' ? plan.cfg : { loraplusLrRatio: null },
    trainableParams,
    noWeightDecay,
  )
}

/** Phase 2: the model loaded, its trainable set and optimizer configured, and the progress a resume restores. */
export async function prepareModel(
  plan: RunPlan,
  warn: (message: string) => void,
): Promise<{ model: LlamaModel; progress: Progress }> {
  const { cfg, resumeDir, resumeState, split } = plan
  const model = await loadTrainingModel(plan)
  try {
    const progress: Progress = { step: 0, epoch: 0, batchIndex: 0, logHistory: [], window: { loss: 0, steps: 0 } }
    if (resumeState) {
      const state = resumeState
      await loadOptimizerState(model, resumeDir!)
      // zero_stage 1: each rank keeps its shard of the whole state the checkpoint holds.
      await model.optimizer.scatterShards()
      const groups = optimizerGroups(model, plan)
      model.optimizer.configure({
        noDecay: groups.noDecay,
        lrScale: groups.lrScale,
        step: state.optimizer_step ?? state.global_step,
        lossScaling: cfg.fp16,
        lossScale: state.loss_scale,
        goodSteps: state.good_steps,
      })
      ;[progress.step, progress.epoch, progress.batchIndex] = [state.global_step, state.epoch_index, state.batch_index]
      progress.logHistory.push(...(state.log_history as unknown as LogRecord[]))
      progress.window = { loss: state.logging_window?.loss ?? 0, steps: state.logging_window?.steps ?? 0 }
      if (split.train !== null && state.train_sequences !== split.train.length) {
        warn(
          `the data gives ${split.train.length} training sequences, the checkpoint was made with ` +
            `${state.train_sequences}: the data order will differ`,
        )
      }
    } else if (!plan.group || plan.group.isMain) {
      await clearRunOutputs(cfg.outputDir)
      const kept = existsSync(cfg.outputDir) ? await readdir(cfg.outputDir) : []
      if (kept.length > 0)
        warn(
          `overwrite_output_dir: kept ${kept.length} file(s) in ${cfg.outputDir} that a training run does not write: ` +
            `${kept.slice(0, 5).join(', ')}`,
        )
    }
    return { model, progress }
  } catch (error) {
    model.dispose()
    throw error
  }
}
