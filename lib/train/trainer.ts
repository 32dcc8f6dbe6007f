/**
 * `llamapro train`: the training loop, readable top to bottom. Configuration and data are validated before the
 * model is loaded; each micro-batch is one awaited native call (forward, backward and, on the last micro-batch of
 * an accumulation, clipping and the AdamW update), weighted by its share of the step's target tokens. Logging,
 * evaluation, checkpoints, warnings and cancellation happen here, between steps.
 */
import { existsSync } from 'node:fs'
import { appendFile, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { openCheckpoint } from '../checkpoint/checkpoint.js'
import { parseLayerName } from '../checkpoint/parameters.js'
import { CONFIG_FILE } from '../checkpoint/checkpoint.js'
import { type Batch, BatchSchedule, collate, splitEval } from '../data/batches.js'
import { loadExamples } from '../data/dataset.js'
import { type Sequence, preprocess } from '../data/preprocess.js'
import { conversationRenderer } from '../data/template.js'
import { type TextTokenizer, loadTokenizer } from '../data/tokenizer.js'
import { setThreads } from '../info.js'
import { type Device, LlamaModel } from '../model/llama-model.js'
import { callNative } from '../native/call.js'
import { freezePolicy } from '../policy/freeze-policy.js'
import { OutputExistsError } from '../util/atomic-dir.js'
import { VERSION } from '../version.js'
import { type TrainerState, checkpointName, listCheckpoints, loadOptimizerState, readTrainerState, rotateCheckpoints, writeCheckpoint } from './checkpoints.js'
import { type TrainConfig, loadTrainConfig, trainingDtypes } from './config.js'
import { writeDelta } from './delta.js'
import type { LogRecord, TrainEvent, TrainResult } from './events.js'
import { TrainingError } from './errors.js'
import { writeLossPlot } from './loss-plot.js'
import { checkOutputDirSeparate, clearRunOutputs } from './output-dir.js'
import { learningRateAt, warmupStepsFor } from './schedule.js'

export interface TrainOptions {
  /** Stops the run after the current optimizer step and saves a checkpoint. */
  signal?: AbortSignal
  onEvent?: (event: TrainEvent) => void
  /** Key/value overrides applied on top of a YAML file (when `config` is a path). */
  overrides?: Record<string, unknown>
}

export const TRAINER_LOG_FILE = 'trainer_log.jsonl'

/** transformers' Trainer applies no weight decay to biases and norm weights. */
const noWeightDecay = (name: string) => name.endsWith('.bias') || /norm\.weight$/.test(name)

const clock = (seconds: number) => {
  const s = Math.max(0, Math.round(seconds))
  return `${Math.floor(s / 3600)}:${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`
}

/** Per-layer gradient norms from per-parameter ones: layers by index, other modules by name. */
export function layerGradNorms(paramNorms: Record<string, number>): Record<string, number> {
  const squares = new Map<string, number>()
  for (const [name, norm] of Object.entries(paramNorms)) {
    const parsed = parseLayerName(name)
    const parts = name.split('.')
    const key = parsed ? String(parsed.layer) : parts[parts.length - 2] ?? name
    squares.set(key, (squares.get(key) ?? 0) + norm * norm)
  }
  return Object.fromEntries([...squares].map(([k, v]) => [k, Math.sqrt(v)]))
}

async function resolveResume(config: TrainConfig): Promise<string | null> {
  if (config.resumeFromCheckpoint === null) return null
  if (config.resumeFromCheckpoint === true) {
    const latest = (await listCheckpoints(config.outputDir)).pop()
    if (!latest) throw new TrainingError('LLAMAPRO_RESUME', `resume_from_checkpoint: true, but ${config.outputDir} holds no checkpoint-<step> folder`)
    return latest.path
  }
  if (!existsSync(config.resumeFromCheckpoint)) {
    throw new TrainingError('LLAMAPRO_RESUME', `resume_from_checkpoint: ${config.resumeFromCheckpoint} does not exist`)
  }
  return config.resumeFromCheckpoint
}

/** Moves a finished model folder's files into `dir`, config.json last: until it lands, `dir` is not a model. */
async function moveModelInto(from: string, dir: string): Promise<void> {
  const entries = (await readdir(from)).sort((a, b) => Number(a === CONFIG_FILE) - Number(b === CONFIG_FILE))
  for (const entry of entries) await rename(join(from, entry), join(dir, entry))
  await rm(from, { recursive: true, force: true })
}

export { TrainingError }

/** A checkpoint resumes exactly only with the settings that decide the data order and what one step is. */
function checkResumable(state: TrainerState, cfg: TrainConfig, dir: string): void {
  const settings: [string, number | undefined, number][] = [
    ['seed', state.seed, cfg.seed],
    ['per_device_train_batch_size', state.per_device_train_batch_size, cfg.perDeviceTrainBatchSize],
    ['gradient_accumulation_steps', state.gradient_accumulation_steps, cfg.gradientAccumulationSteps],
  ]
  for (const [key, saved, now] of settings) {
    if (saved !== undefined && saved !== now) {
      throw new TrainingError('LLAMAPRO_RESUME', `${dir} was trained with ${key}: ${saved}, this configuration says ${now}; resume with ${key}: ${saved}`)
    }
  }
}

/**
 * Token ids index the embedding table, so an id at or above vocab_size is refused here, with the tokenizer named
 * as the cause, before the model is loaded (the native side checks again, but could only name a position).
 */
function checkTokenIds(sequences: readonly Sequence[], tokenizer: TextTokenizer, vocabSize: number, modelDir: string, warn: (message: string) => void): void {
  let largest = tokenizer.padId
  for (const sequence of sequences) for (const id of sequence.ids) if (id > largest) largest = id
  if (largest >= vocabSize) {
    throw new TrainingError(
      'LLAMAPRO_TOKENIZER',
      `the tokenizer in ${modelDir} gives token id ${largest}${largest === tokenizer.padId ? ' (its pad token)' : ''}, but the model's vocab_size is ${vocabSize} ` +
        `(valid ids 0..${vocabSize - 1}): the tokenizer does not belong to this model, or tokens were added without resizing the embeddings`,
    )
  }
  if (tokenizer.maxId >= vocabSize) {
    warn(`the tokenizer knows ids up to ${tokenizer.maxId}, above the model's vocab_size ${vocabSize}; this data does not use them`)
  }
}

export async function train(config: TrainConfig | string, options: TrainOptions = {}): Promise<TrainResult> {
  const cfg = typeof config === 'string' ? await loadTrainConfig(config, options.overrides) : config
  const started = performance.now()
  const emit = (event: TrainEvent) => options.onEvent?.(event)
  const warn = (message: string, step?: number) => emit({ type: 'warning', message, step })
  for (const key of cfg.ignoredKeys) warn(`key "${key}" has no effect in llamapro (accepted for LLaMA-Factory compatibility)`)

  // Everything a user can get wrong is checked before the model is loaded.
  const resumeDir = await resolveResume(cfg)
  await checkOutputDirSeparate(cfg.outputDir, [
    { what: 'model (model_name_or_path)', path: cfg.modelNameOrPath },
    ...(existsSync(cfg.datasetDir) ? [{ what: 'dataset folder (dataset_dir)', path: cfg.datasetDir }] : []),
  ])
  if (!resumeDir && !cfg.overwriteOutputDir && existsSync(cfg.outputDir) && (await readdir(cfg.outputDir)).length > 0) {
    throw new OutputExistsError(cfg.outputDir, 'set overwrite_output_dir: true (or resume_from_checkpoint to continue a run)')
  }
  const { compute, master } = trainingDtypes(cfg)
  if (cfg.fp16 && cfg.device === 'cpu') {
    throw new TrainingError('LLAMAPRO_TRAIN_CONFIG', 'fp16: true needs a CUDA device (float16 math on the CPU is slow and needs loss scaling); use bf16 or neither on the CPU')
  }
  const resumeState = resumeDir ? await readTrainerState(resumeDir) : undefined
  if (resumeState) checkResumable(resumeState, cfg, resumeDir!)
  const modelDir = resumeDir ?? cfg.modelNameOrPath
  const checkpoint = await openCheckpoint(modelDir)
  const tokenizer = await loadTokenizer(modelDir)
  const examples = await loadExamples({ names: cfg.dataset, stage: cfg.stage, datasetDir: cfg.datasetDir, baseDir: cfg.baseDir, maxSamples: cfg.maxSamples })
  const render = cfg.stage === 'sft' ? conversationRenderer(cfg.template, tokenizer, warn) : undefined
  const { sequences, dropped } = preprocess(examples, cfg.stage, tokenizer, render, cfg.cutoffLen, cfg.packing)
  if (dropped > 0) warn(`${dropped} example(s) had no response tokens left within cutoff_len ${cfg.cutoffLen} and were skipped`)
  checkTokenIds(sequences, tokenizer, checkpoint.config.vocabSize, modelDir, warn)
  const split = splitEval(sequences, cfg.valSize, cfg.seed)
  if (split.train.length === 0) {
    throw new TrainingError('LLAMAPRO_DATASET', `no training sequences: the data gave ${sequences.length} sequence(s) of up to ${cfg.cutoffLen} tokens`)
  }
  const names = checkpoint.tensors.map((t) => t.name)
  const policy = freezePolicy(checkpoint.config.numLayers, names, cfg)
  if (policy.trainable.length === 0) {
    throw new TrainingError('LLAMAPRO_POLICY', 'nothing to train: this strategy selects no parameter (freeze_trainable_layers: 0 and no freeze_extra_modules?)')
  }

  const schedule = new BatchSchedule(split.train, cfg.perDeviceTrainBatchSize, cfg.seed, tokenizer.padId)
  const accumulation = cfg.gradientAccumulationSteps
  const stepsPerEpoch = Math.max(1, Math.ceil(schedule.batchesPerEpoch / accumulation))
  const totalSteps = cfg.maxSteps > 0 ? cfg.maxSteps : Math.max(1, Math.ceil(cfg.numTrainEpochs * stepsPerEpoch))
  const warmup = warmupStepsFor(totalSteps, cfg.warmupSteps, cfg.warmupRatio)
  if (cfg.threads > 0) setThreads(cfg.threads)

  const model = await LlamaModel.fromCheckpoint(checkpoint, { device: cfg.device as Device, dtype: compute, gradientCheckpointing: !cfg.disableGradientCheckpointing })
  try {
    await model.setTrainable(policy.trainable, { masterDtype: master })
    model.native.configureOptimizer({ noDecay: policy.trainable.filter(noWeightDecay), step: 0, lossScaling: cfg.fp16 })
    let step = 0
    let epoch = 0
    let batchIndex = 0
    const logHistory: LogRecord[] = []
    if (resumeState) {
      const state = resumeState
      await loadOptimizerState(model, resumeDir!)
      model.native.configureOptimizer({
        noDecay: policy.trainable.filter(noWeightDecay),
        step: state.optimizer_step ?? state.global_step,
        lossScaling: cfg.fp16,
        lossScale: state.loss_scale,
        goodSteps: state.good_steps,
      })
      ;[step, epoch, batchIndex] = [state.global_step, state.epoch_index, state.batch_index]
      logHistory.push(...(state.log_history as unknown as LogRecord[]))
      if (state.train_sequences !== split.train.length) {
        warn(`the data gives ${split.train.length} training sequences, the checkpoint was made with ${state.train_sequences}: the data order will differ`)
      }
    } else {
      await clearRunOutputs(cfg.outputDir)
      const kept = existsSync(cfg.outputDir) ? await readdir(cfg.outputDir) : []
      if (kept.length > 0) warn(`overwrite_output_dir: kept ${kept.length} file(s) in ${cfg.outputDir} that a training run does not write: ${kept.slice(0, 5).join(', ')}`)
    }
    const startStep = step
    await mkdir(cfg.outputDir, { recursive: true })
    const logPath = join(cfg.outputDir, TRAINER_LOG_FILE)
    if (!resumeDir) await writeFile(logPath, '')

    const trainableParams = model.parameters().filter((p) => p.requiresGrad).reduce((s, p) => s + p.numel, 0)
    emit({
      type: 'start',
      totalSteps,
      startStep: step,
      stepsPerEpoch,
      trainSequences: split.train.length,
      evalSequences: split.eval.length,
      trainableParams,
      totalParams: model.parameters().reduce((s, p) => s + p.numel, 0),
      trainableLayerIds: policy.trainableLayerIds,
      resumedFrom: resumeDir,
    })

    const state = (): TrainerState => {
      const optimizer = model.native.optimizerState()
      return {
        global_step: step,
        max_steps: totalSteps,
        epoch: step / stepsPerEpoch,
        epoch_index: epoch,
        batch_index: batchIndex,
        seed: cfg.seed,
        per_device_train_batch_size: cfg.perDeviceTrainBatchSize,
        gradient_accumulation_steps: cfg.gradientAccumulationSteps,
        train_sequences: split.train.length,
        optimizer_step: optimizer.step,
        loss_scale: optimizer.lossScale,
        good_steps: optimizer.goodSteps,
        logging_window: { loss: windowLoss, steps: windowSteps },
        log_history: logHistory as unknown as Record<string, unknown>[],
        created_by: `llamapro ${VERSION}`,
      }
    }
    const checkpoints: string[] = []
    let lastCheckpoint = resumeDir
    const saveCheckpoint = async () => {
      const path = join(cfg.outputDir, checkpointName(step))
      await writeCheckpoint(model, path, state(), { modelDtype: checkpoint.dtype, withOptimizer: !cfg.saveOnlyModel })
      lastCheckpoint = path
      checkpoints.push(path)
      emit({ type: 'checkpoint', step, path })
      await rotateCheckpoints(cfg.outputDir, cfg.saveTotalLimit)
    }
    const log = async (record: LogRecord) => {
      logHistory.push(record)
      await appendFile(logPath, `${JSON.stringify(record)}\n`)
      emit({ type: 'log', record })
    }
    const record = (extra: Partial<LogRecord>): LogRecord => {
      const elapsed = (performance.now() - started) / 1000
      const done = step - startStep
      const remaining = done > 0 ? (elapsed / done) * (totalSteps - step) : 0
      return {
        current_steps: step,
        total_steps: totalSteps,
        ...extra,
        epoch: Number((step / stepsPerEpoch).toFixed(4)),
        percentage: Number(((100 * step) / totalSteps).toFixed(2)),
        elapsed_time: clock(elapsed),
        remaining_time: clock(remaining),
        elapsed_seconds: Number(elapsed.toFixed(3)),
      }
    }
    const evaluate = async (): Promise<{ loss: number; tokens: number }> => {
      let weighted = 0
      let tokens = 0
      for (let i = 0; i < split.eval.length; i += cfg.perDeviceEvalBatchSize) {
        const batch = collate(split.eval.slice(i, i + cfg.perDeviceEvalBatchSize) as Sequence[], tokenizer.padId)
        const result = await callNative('evaluation', () => model.native.loss(batch.ids, batch.labels, batch.batch, batch.seq))
        weighted += result.loss * result.tokens
        tokens += result.tokens
      }
      return { loss: tokens > 0 ? weighted / tokens : 0, tokens }
    }
    const nonFinite = (what: string, value: number) =>
      new TrainingError(
        'LLAMAPRO_NONFINITE',
        `${what} is not finite (${value}) at step ${step + 1}; training stopped without saving this state. ` +
          `The last good checkpoint is ${lastCheckpoint ?? 'none (no checkpoint was written yet)'}. ` +
          'Lower learning_rate, check the data, or train in bf16 or float32.',
      )

    let windowLoss = resumeState?.logging_window?.loss ?? 0
    let windowSteps = resumeState?.logging_window?.steps ?? 0
    let windowTokens = 0
    let windowStart = performance.now()
    let runLoss = 0
    let runTokens = 0
    let evalLoss: number | null = null
    let aborted = false
    const warnedLayers = new Set<string>()

    while (step < totalSteps) {
      const micro: [number, number][] = []
      for (let j = 0; j < accumulation; j++) {
        if (batchIndex >= schedule.batchesPerEpoch) {
          if (j > 0) break // the epoch's last update takes the micro-batches that are left
          epoch++
          batchIndex = 0
        }
        micro.push([epoch, batchIndex++])
      }
      const lr = learningRateAt(step, totalSteps, warmup, cfg.lrSchedulerType, cfg.learningRate)
      const logging = (step + 1) % cfg.loggingSteps === 0 || step + 1 === totalSteps
      let stepLoss = 0
      let stepTokens = 0
      // The loss of an accumulated step is the mean over every target token of its micro-batches (transformers'
      // num_items_in_batch), not the mean of per-batch means: each micro-batch is weighted by its target tokens.
      const batches: Batch[] = micro.map((m) => schedule.batch(...m))
      const windowTargets = batches.reduce((sum, b) => sum + b.targetTokens, 0)
      let result
      for (let j = 0; j < batches.length; j++) {
        const batch = batches[j]!
        const last = j === batches.length - 1
        const weight = windowTargets > 0 ? batch.targetTokens / windowTargets : 1 / batches.length
        const pending = callNative('training step', () =>
          model.native.trainStep(batch.ids, batch.labels, batch.batch, batch.seq, {
            lossMultiplier: weight,
            update: last,
            lr,
            beta1: cfg.adamBeta1,
            beta2: cfg.adamBeta2,
            eps: cfg.adamEpsilon,
            weightDecay: cfg.weightDecay,
            maxGradNorm: cfg.maxGradNorm,
            reportParamNorms: logging && last,
          }),
        )
        result = await pending
        if (result.skipped && !result.updated && result.skipReason === 'the loss is not finite') throw nonFinite('the loss', result.loss)
        stepLoss += result.loss * weight
        stepTokens += batch.tokens
      }
      if (result!.skipped) {
        if (!cfg.fp16) throw nonFinite('the gradient norm', result!.gradNorm)
        warn(`step ${step + 1}: float16 gradients overflowed; update skipped, loss scale now ${result!.lossScale}`, step + 1)
      }
      step++
      windowLoss += stepLoss
      windowSteps++
      windowTokens += stepTokens
      runLoss += stepLoss
      runTokens += stepTokens
      emit({ type: 'step', step, totalSteps, loss: stepLoss, lr, gradNorm: result!.gradNorm, tokens: stepTokens, seconds: (performance.now() - started) / 1000 })

      if (logging) {
        const norms = result!.paramGradNorms ? layerGradNorms(result!.paramGradNorms) : undefined
        for (const [layer, norm] of Object.entries(norms ?? {})) {
          if ((norm === 0 || !Number.isFinite(norm)) && !warnedLayers.has(layer)) {
            warnedLayers.add(layer)
            const what = /^\d+$/.test(layer) ? `trainable layer ${layer}` : `trainable module ${layer}`
            warn(
              norm === 0
                ? `${what} has a zero gradient at step ${step}: it is not learning (is the loss masked everywhere, or is the learning signal blocked above it?)`
                : `${what} has a non-finite gradient (${norm}) at step ${step}`,
              step,
            )
          }
        }
        const seconds = (performance.now() - windowStart) / 1000
        await log(
          record({
            loss: Number((windowLoss / windowSteps).toFixed(6)),
            lr,
            grad_norm: Number(result!.gradNorm.toFixed(6)),
            tokens_per_second: Number((windowTokens / Math.max(seconds, 1e-9)).toFixed(1)),
            layer_grad_norms: norms,
          }),
        )
        windowLoss = windowSteps = windowTokens = 0
        windowStart = performance.now()
      }
      const epochEnded = step % stepsPerEpoch === 0
      const evalDue = split.eval.length > 0 && ((cfg.evalStrategy === 'steps' && step % cfg.evalSteps === 0) || (cfg.evalStrategy === 'epoch' && epochEnded) || step === totalSteps)
      if (evalDue && cfg.evalStrategy !== 'no') {
        const evaluation = await evaluate()
        evalLoss = evaluation.loss
        emit({ type: 'eval', step, evalLoss: evaluation.loss, tokens: evaluation.tokens })
        await log(record({ eval_loss: Number(evaluation.loss.toFixed(6)) }))
      }
      const saveDue = (cfg.saveStrategy === 'steps' && step % cfg.saveSteps === 0) || (cfg.saveStrategy === 'epoch' && epochEnded)
      if (saveDue && step < totalSteps) await saveCheckpoint()
      if (options.signal?.aborted && step < totalSteps) {
        if (!saveDue) await saveCheckpoint()
        aborted = true
        break
      }
    }

    if (!aborted) {
      const staging = join(cfg.outputDir, `.final-${process.pid}-${Date.now().toString(36)}`)
      await mkdir(staging)
      try {
        await model.saveInto(staging, { dtype: checkpoint.dtype })
        await moveModelInto(staging, cfg.outputDir)
      } catch (error) {
        await rm(staging, { recursive: true, force: true })
        throw error
      }
      if (cfg.saveDelta) await writeDelta(model, join(cfg.outputDir, 'delta'), { baseModel: cfg.modelNameOrPath, dtype: checkpoint.dtype, trainable: policy.trainable })
      await writeFile(join(cfg.outputDir, 'trainer_state.json'), `${JSON.stringify(state(), null, 2)}\n`)
    }
    const seconds = (performance.now() - started) / 1000
    const stepsRun = step - startStep
    const result: TrainResult = {
      outputDir: cfg.outputDir,
      globalStep: step,
      totalSteps,
      aborted,
      trainLoss: stepsRun > 0 ? runLoss / stepsRun : NaN,
      evalLoss,
      seconds,
      tokensPerSecond: runTokens / Math.max(seconds, 1e-9),
      checkpoints,
      logHistory,
    }
    const results = {
      epoch: step / stepsPerEpoch,
      train_loss: result.trainLoss,
      train_runtime: seconds,
      train_steps_per_second: stepsRun / Math.max(seconds, 1e-9),
      train_tokens_per_second: result.tokensPerSecond,
      ...(evalLoss !== null ? { eval_loss: evalLoss } : {}),
    }
    await writeFile(join(cfg.outputDir, aborted ? 'interrupted_results.json' : 'all_results.json'), `${JSON.stringify(results, null, 2)}\n`)
    if (cfg.plotLoss) await writeLossPlot(cfg.outputDir, logHistory, warn)
    emit({ type: 'done', result })
    return result
  } finally {
    model.dispose()
  }
}
