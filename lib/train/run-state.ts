/**
 * What the loop and the finish of a run share (`Run`): the plan, the model, the progress, the run's log files and
 * checkpoints, and the log records they write.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { LlamaModel } from '../model/llama-model.js'
import { VERSION } from '../version.js'
import { type TrainerState, checkpointName, rotateCheckpoints, writeCheckpoint } from './checkpoints.js'
import { copySideFiles } from '../checkpoint/side-files.js'
import type { LogRecord, TrainEvent } from './events.js'
import { readExpansionRecord } from '../expand/record.js'
import { RunLog } from './run-log.js'
import { openReporters } from './reporters.js'
import type { RunPlan } from './prepare-data.js'
import type { Progress } from './training-model.js'

/** Python's str(timedelta(seconds=int(s))), as LLaMA-Factory writes elapsed_time: 0:05:07, 1 day, 2:00:00. */
export const clock = (seconds: number) => {
  const s = Math.max(0, Math.floor(seconds))
  const days = Math.floor(s / 86400)
  const rest = s % 86400
  const time = `${Math.floor(rest / 3600)}:${String(Math.floor((rest % 3600) / 60)).padStart(2, '0')}:${String(rest % 60).padStart(2, '0')}`
  return days > 0 ? `${days} day${days === 1 ? '' : 's'}, ${time}` : time
}

/**
 * What a LoRA run writes where a freeze run writes the model: the PEFT adapter and the tokenizer files (as
 * LLaMA-Factory).
 */
export async function saveLoraOutput(model: LlamaModel, dir: string): Promise<void> {
  await model.saveAdapterInto(dir)
  if (model.sourceDir) await copySideFiles(model.sourceDir, dir)
}

/** What the loop and the finish share: the plan, the model, the progress, and the run's outputs. */
export interface Run {
  plan: RunPlan
  model: LlamaModel
  progress: Progress
  started: number
  startStep: number
  emit: (event: TrainEvent) => void
  warn: (message: string, step?: number) => void
  signal?: AbortSignal
  /** False on ranks other than 0: they write no file. */
  writes: boolean
  checkpoints: string[]
  lastCheckpoint: string | null
  /** The run's log files (rank 0); null on the other ranks. */
  runLog: RunLog | null
  /**
   * Real tokens trained on by this process's run (every rank) since `since` (the loop's start), for throughput; and
   * before it, when resumed.
   */
  tokens: { run: number; before: number; since: number }
  state(): TrainerState
  saveCheckpoint(): Promise<void>
  log(record: LogRecord): Promise<void>
  record(extra: Partial<LogRecord>): LogRecord
}

/** The run's log files, with what a watcher needs to know of the run (llamapro_run.json). */
async function openRunLog(plan: RunPlan, model: LlamaModel, startStep: number): Promise<RunLog> {
  const { cfg, checkpoint, policy } = plan
  const expansion = await readExpansionRecord(cfg.modelNameOrPath)
  const { reporters, loggingDir } = await openReporters(cfg, startStep)
  return RunLog.open(cfg.outputDir, {
    resumed: plan.resumeDir !== null,
    given: cfg.given,
    reporters,
    info: {
      stage: cfg.stage,
      finetuning_type: cfg.finetuningType,
      model_name_or_path: cfg.modelNameOrPath,
      output_dir: cfg.outputDir,
      total_steps: plan.totalSteps,
      num_layers: checkpoint.config.numLayers,
      trainable_layer_ids: policy.trainableLayerIds,
      expanded_layer_ids: expansion?.new_layer_ids ?? [],
      eval_datasets: plan.evalSets.flatMap((set) => (set.name === null ? [] : [set.name])),
      world_size: plan.group?.worldSize ?? 1,
      device: model.device,
      logging_dir: loggingDir,
    },
  })
}

/** eval_results.json, as LLaMA-Factory's run_pt/run_sft save the final evaluation (pt adds the perplexity). */
export async function writeEvalResults(
  dir: string,
  epoch: number,
  losses: Record<string, number>,
  stage: string,
): Promise<void> {
  const results: Record<string, number> = { epoch, ...losses }
  if (stage === 'pt' && losses.eval_loss !== undefined) results.perplexity = Math.exp(losses.eval_loss)
  await writeFile(join(dir, 'eval_results.json'), `${JSON.stringify(results, null, 2)}\n`)
}

export async function openRun(
  plan: RunPlan,
  model: LlamaModel,
  progress: Progress,
  started: number,
  options: { signal?: AbortSignal; onEvent?: (event: TrainEvent) => void },
): Promise<Run> {
  const { cfg, split, totalSteps, stepsPerEpoch, checkpoint } = plan
  // Rank 0 writes every output; the other ranks train the same weights and write nothing.
  const writes = !plan.group || plan.group.isMain
  const runLog = writes ? await openRunLog(plan, model, progress.step) : null
  const emit = (event: TrainEvent) => {
    runLog?.event(event)
    options.onEvent?.(event)
  }
  const lastTotal = progress.logHistory.findLast((r) => typeof r.total_tokens === 'number')?.total_tokens ?? 0
  const run: Run = {
    plan,
    model,
    progress,
    started,
    startStep: progress.step,
    emit,
    warn: (message, step) => emit({ type: 'warning', message, step }),
    signal: options.signal,
    writes,
    checkpoints: [],
    lastCheckpoint: plan.resumeDir,
    runLog,
    tokens: { run: 0, before: lastTotal, since: performance.now() },
    state(): TrainerState {
      const optimizer = model.optimizer.progress()
      return {
        global_step: progress.step,
        max_steps: totalSteps,
        epoch: progress.step / stepsPerEpoch,
        epoch_index: progress.epoch,
        batch_index: progress.batchIndex,
        seed: cfg.seed,
        per_device_train_batch_size: cfg.perDeviceTrainBatchSize,
        gradient_accumulation_steps: cfg.gradientAccumulationSteps,
        train_sequences: split.train?.length ?? null,
        optimizer_step: optimizer.step,
        loss_scale: optimizer.lossScale,
        good_steps: optimizer.goodSteps,
        logging_window: { ...progress.window },
        log_history: progress.logHistory as unknown as Record<string, unknown>[],
        world_size: plan.group?.worldSize ?? 1,
        created_by: `llamapro ${VERSION}`,
      }
    },
    async saveCheckpoint() {
      const step = progress.step
      const path = join(cfg.outputDir, checkpointName(step))
      // zero_stage 1: the shards are gathered on rank 0 for the write, so a checkpoint always holds the whole state.
      if (!cfg.saveOnlyModel) await model.optimizer.gatherShards()
      try {
        if (writes) {
          await writeCheckpoint(model, path, run.state(), {
            modelDtype: checkpoint.dtype,
            withOptimizer: !cfg.saveOnlyModel,
            onWarning: (message) => run.warn(message, step),
            ...(model.lora ? { saveModel: (dir: string) => saveLoraOutput(model, dir) } : {}),
          })
        }
      } finally {
        if (!cfg.saveOnlyModel) await model.optimizer.scatterShards()
      }
      run.lastCheckpoint = path
      run.checkpoints.push(path)
      emit({ type: 'checkpoint', step, path })
      if (writes) await rotateCheckpoints(cfg.outputDir, cfg.saveTotalLimit)
    },
    async log(record) {
      progress.logHistory.push(record)
      await runLog?.record(record)
      emit({ type: 'log', record })
    },
    record(extra) {
      const step = progress.step
      const elapsed = (performance.now() - started) / 1000
      const done = step - run.startStep
      const remaining = done > 0 ? (elapsed / done) * (totalSteps - step) : 0
      return {
        current_steps: step,
        total_steps: totalSteps,
        ...extra,
        epoch: Number((step / stepsPerEpoch).toFixed(4)),
        percentage: Number(((100 * step) / totalSteps).toFixed(2)),
        elapsed_time: clock(elapsed),
        remaining_time: clock(remaining),
        // As LogCallback: tokens over the time since training began (the data and the model were loaded before).
        throughput: Number((run.tokens.run / Math.max((performance.now() - run.tokens.since) / 1000, 1e-9)).toFixed(2)),
        total_tokens: run.tokens.before + run.tokens.run,
        elapsed_seconds: Number(elapsed.toFixed(3)),
      }
    },
  }
  return run
}
