/**
 * `llamapro train`: the training loop, readable top to bottom. Configuration and data are validated before the
 * model is loaded; each micro-batch is one awaited native call (forward, backward and, on the last micro-batch of
 * an accumulation, clipping and the AdamW update), weighted by its share of the step's target tokens. Logging,
 * evaluation, checkpoints, warnings and cancellation happen here, between steps.
 */
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseLayerName } from '../checkpoint/parameters.js'
import { CONFIG_FILE } from '../checkpoint/checkpoint.js'
import type { Batch } from '../data/batches.js'
import { StreamSchedule } from '../data/streaming.js'
import { info } from '../info.js'
import type { NativeTrainStepOptions, NativeTrainStepResult } from '../native/binding.js'
import { kernelOptions } from '../native/kernel-options.js'
import { describeStaleRemoval, removeStaleTemporaries } from '../util/atomic-dir.js'
import { type TrainConfig, loadTrainConfig } from './config.js'
import { writeDelta } from './delta.js'
import { chooseDevice } from './device.js'
import type { TrainEvent, TrainResult } from './events.js'
import { TrainingError } from './errors.js'
import { InterruptedError } from '../errors.js'
import { writeLossPlot } from './loss-plot.js'
import { learningRateAt } from './schedule.js'
import { type DistributedEnv, distributedFromEnv } from '../distributed/environment.js'
import { ProcessGroup } from '../distributed/process-group.js'
import { evaluateSets } from './evaluate.js'
import { TRAINER_LOG_FILE } from './run-log.js'
import { type RunPlan, prepareData } from './prepare-data.js'
import { prepareModel } from './training-model.js'
import { type Run, openRun, saveLoraOutput, writeEvalResults } from './run-state.js'

export interface TrainOptions {
  /** Stops the run after the current optimizer step and saves a checkpoint. */
  signal?: AbortSignal
  onEvent?: (event: TrainEvent) => void
  /** Key/value overrides applied on top of a YAML file (when `config` is a path). */
  overrides?: Record<string, unknown>
  /** This process's rank in a data-parallel job; by default read from torchrun's environment (RANK, WORLD_SIZE, …). */
  distributed?: DistributedEnv | null
  /** The folder a YAML file's relative paths resolve against (default: the working directory, as in LLaMA-Factory). */
  cwd?: string
}

export { TRAINER_LOG_FILE }
export { type RunPlan, prepareData } from './prepare-data.js'
export { loadTrainingModel } from './training-model.js'
export { clock } from './run-state.js'

/** Per-layer gradient norms from per-parameter ones: layers by index, other modules by name. */
export function layerGradNorms(paramNorms: Record<string, number>): Record<string, number> {
  const squares = new Map<string, number>()
  for (const [name, norm] of Object.entries(paramNorms)) {
    const parsed = parseLayerName(name)
    const parts = name.split('.')
    const key = parsed ? String(parsed.layer) : (parts[parts.length - 2] ?? name)
    squares.set(key, (squares.get(key) ?? 0) + norm * norm)
  }
  return Object.fromEntries([...squares].map(([k, v]) => [k, Math.sqrt(v)]))
}

/** Moves a finished model folder's files into `dir`, config.json last: until it lands, `dir` is not a model. */
async function moveModelInto(from: string, dir: string): Promise<void> {
  const entries = (await readdir(from)).sort((a, b) => Number(a === CONFIG_FILE) - Number(b === CONFIG_FILE))
  for (const entry of entries) await rename(join(from, entry), join(dir, entry))
  await rm(from, { recursive: true, force: true })
}

export { TrainingError }

/**
 * LoRA dropout's seed for one micro-step: a function of the run's seed, rank and position only, so a resume draws the
 * same masks.
 */
function dropoutSeed(seed: number, rank: number, step: number, micro: number): number {
  let h = Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(rank + 1, 0x85ebca6b)
  h = Math.imul(h ^ step, 0xc2b2ae35) ^ Math.imul(micro + 1, 0x27d4eb2f)
  return (h >>> 0) * 4096 + (step % 4096)
}

/** Warns once per layer whose gradient is zero (not learning) or not finite. */
function warnDeadLayers(run: Run, norms: Record<string, number> | undefined, warned: Set<string>): void {
  const step = run.progress.step
  for (const [layer, norm] of Object.entries(norms ?? {})) {
    if ((norm === 0 || !Number.isFinite(norm)) && !warned.has(layer)) {
      warned.add(layer)
      const what = /^\d+$/.test(layer) ? `trainable layer ${layer}` : `trainable module ${layer}`
      run.warn(
        norm === 0
          ? `${what} has a zero gradient at step ${step}: it is not learning (is the loss masked everywhere, or is ` +
              `the learning signal blocked above it?)`
          : `${what} has a non-finite gradient (${norm}) at step ${step}`,
        step,
      )
    }
  }
}

interface LoopOutcome {
  aborted: boolean
  runLoss: number
  runTokens: number
  evalLoss: number | null
  /** The last evaluation's loss of each eval set, by metric key. */
  evalLosses: Record<string, number>
  /** Gradient bytes each rank all-reduced in its last update (0 in a single process). */
  allReducedBytes: number
  /** Wall time of the loop (steps, logging, evaluation, intermediate checkpoints), as transformers' train_runtime. */
  loopSeconds: number
}

/**
 * The [epoch, batch index] of the micro-batches of the next optimizer step, advancing `position`: an epoch's
 * last update takes the micro-batches that are left.
 */
export function takeMicroBatches(
  position: { epoch: number; batchIndex: number },
  batchesPerEpoch: number,
  accumulation: number,
): [number, number][] {
  const micro: [number, number][] = []
  for (let j = 0; j < accumulation; j++) {
    if (position.batchIndex >= batchesPerEpoch) {
      if (j > 0) break
      position.epoch++
      position.batchIndex = 0
    }
    micro.push([position.epoch, position.batchIndex++])
  }
  return micro
}

/**
 * The native step options of one micro-batch: `weight` is its share of the optimizer step's target tokens; the
 * last one clips and updates, and reports per-parameter gradient norms when the step is logged.
 */
export function microStepOptions(
  cfg: TrainConfig,
  step: { lr: number; weight: number; last: boolean; logging: boolean },
): NativeTrainStepOptions {
  return {
    lossMultiplier: step.weight,
    update: step.last,
    lr: step.lr,
    beta1: cfg.adamBeta1,
    beta2: cfg.adamBeta2,
    eps: cfg.adamEpsilon,
    weightDecay: cfg.weightDecay,
    maxGradNorm: cfg.maxGradNorm,
    reportParamNorms: step.logging && step.last,
  }
}

/**
 * What the trainer makes of an update's result, the same on every rank (the native step decided on numbers summed
 * over the ranks): the step's loss to log, and either nothing, a warning (fp16: the update was skipped and the loss
 * scale lowered) or a stop (bf16/fp32: a non-finite loss or gradient norm ends the run). A skipped fp16 step whose
 * loss is not finite logs the mean of the finite ones before it in the window, as transformers'
 * logging_nan_inf_filter does.
 */
export function resolveStepResult(
  update: NativeTrainStepResult,
  context: { step: number; fp16: boolean; worldSize: number | null; windowMeanLoss: number },
): { loss: number; warning?: string; stop?: { what: string; value: number; ranks: number[] } } {
  const loss = update.stepLoss!
  const ranks = update.nonfiniteLossRanks ?? []
  if (update.skipped === 'nonfinite-loss') {
    if (!context.fp16) return { loss, stop: { what: 'the loss', value: loss, ranks } }
    const where = context.worldSize !== null ? ` on rank ${ranks.join(', ')} of ${context.worldSize}` : ''
    return {
      loss: context.windowMeanLoss,
      warning:
        `step ${context.step}: the float16 loss is not finite${where}; update ` +
        `skipped${context.worldSize !== null ? ' on every rank' : ''}, loss scale now ${update.lossScale}`,
    }
  }
  if (update.skipped === 'nonfinite-grad') {
    if (!context.fp16) return { loss, stop: { what: 'the gradient norm', value: update.gradNorm, ranks: [] } }
    return {
      loss,
      warning: `step ${context.step}: float16 gradients overflowed; update skipped, loss scale now ${update.lossScale}`,
    }
  }
  return { loss }
}

/** Phase 3: the loop. One optimizer step per iteration: its micro-batches, then logging, evaluation, saving. */
async function trainLoop(run: Run): Promise<LoopOutcome> {
  const { plan, model, progress } = run
  const { cfg, schedule, split, totalSteps, stepsPerEpoch, warmup } = plan
  const accumulation = cfg.gradientAccumulationSteps
  // bf16/fp32: a non-finite loss or gradient norm stops the run — on every rank at the same step, since the ranks
  // decide on numbers summed over all of them (native/gradient_sync.h). fp16 skips the step instead (below).
  const nonFinite = (what: string, value: number, ranks: number[] = []) =>
    new TrainingError(
      'LLAMAPRO_NONFINITE',
      `${what} is not finite (${value}) at step ${progress.step + 1}` +
        (plan.group
          ? `${ranks.length > 0 ? ` (on rank ${ranks.join(', ')} of ${plan.group.worldSize})` : ''}; training ` +
            `stopped on every rank`
          : '; training stopped') +
        ' without saving this state. ' +
        `The last good checkpoint is ${run.lastCheckpoint ?? 'none (no checkpoint was written yet)'}. ` +
        'Lower learning_rate, check the data, or train in bf16 or float32.',
    )
  const loopStart = performance.now()
  run.tokens.since = loopStart
  const outcome: LoopOutcome = {
    aborted: false,
    runLoss: 0,
    runTokens: 0,
    evalLoss: null,
    evalLosses: {},
    allReducedBytes: 0,
    loopSeconds: 0,
  }
  let windowTokens = 0
  let windowStart = performance.now()
  const warnedLayers = new Set<string>()

  while (progress.step < totalSteps) {
    const micro = takeMicroBatches(progress, schedule.batchesPerEpoch, accumulation)
    const step = progress.step
    const lr = learningRateAt(step, totalSteps, warmup, cfg.lrSchedulerType, cfg.learningRate)
    const logging = (step + 1) % cfg.loggingSteps === 0 || step + 1 === totalSteps
    let stepTokens = 0
    // The loss of an accumulated step is the mean over every target token of its micro-batches (transformers'
    // num_items_in_batch), not the mean of per-batch means: each micro-batch is weighted by its target tokens.
    // With several ranks the count is over every rank's micro-batches, and the gradients are summed (not averaged)
    // over the ranks, so W ranks × batch B give what one process gives with batch W×B.
    const taken = []
    for (const m of micro) taken.push(await schedule.take(...m))
    const batches: Batch[] = taken.map((x) => x.batch)
    const across = taken.map((x) => x.across)
    const windowTargets = across.reduce((sum, c) => sum + c.targetTokens, 0)
    let result: NativeTrainStepResult | undefined
    for (let j = 0; j < batches.length; j++) {
      const batch = batches[j]!
      const last = j === batches.length - 1
      const weight = windowTargets > 0 ? batch.targetTokens / windowTargets : 1 / batches.length
      result = await model.trainStep(batch, {
        ...microStepOptions(cfg, { lr, weight, last, logging }),
        ...(cfg.finetuningType === 'lora' && cfg.loraDropout > 0
          ? { dropoutSeed: dropoutSeed(cfg.seed, plan.group?.rank ?? 0, step, j) }
          : {}),
        // All ranks stop together: a stop request on any rank travels with the last micro-batch's gradients.
        ...(plan.group && last ? { stopRequested: run.signal?.aborted ?? false } : {}),
      })
      stepTokens += batch.tokens
    }
    const update = result!
    const stopAll = update.stopRequested!
    if (plan.group) {
      stepTokens = across.reduce((sum, c) => sum + c.tokens, 0)
      outcome.allReducedBytes = update.reducedBytes ?? 0
    }
    const resolved = resolveStepResult(update, {
      step: step + 1,
      fp16: cfg.fp16,
      worldSize: plan.group?.worldSize ?? null,
      windowMeanLoss: progress.window.steps > 0 ? progress.window.loss / progress.window.steps : 0,
    })
    if (resolved.stop) throw nonFinite(resolved.stop.what, resolved.stop.value, resolved.stop.ranks)
    if (resolved.warning) run.warn(resolved.warning, step + 1)
    const stepLoss = resolved.loss
    progress.step++
    progress.window.loss += stepLoss
    progress.window.steps++
    windowTokens += stepTokens
    run.tokens.run += stepTokens
    outcome.runLoss += stepLoss
    outcome.runTokens += stepTokens
    run.emit({
      type: 'step',
      step: progress.step,
      totalSteps,
      loss: stepLoss,
      lr,
      gradNorm: update.gradNorm,
      tokens: stepTokens,
      seconds: (performance.now() - run.started) / 1000,
    })

    if (logging) {
      const norms = update.paramGradNorms ? layerGradNorms(update.paramGradNorms) : undefined
      warnDeadLayers(run, norms, warnedLayers)
      const seconds = (performance.now() - windowStart) / 1000
      await run.log(
        run.record({
          loss: Number((progress.window.loss / progress.window.steps).toFixed(6)),
          lr,
          grad_norm: Number(update.gradNorm.toFixed(6)),
          tokens_per_second: Number((windowTokens / Math.max(seconds, 1e-9)).toFixed(1)),
          layer_grad_norms: norms,
          ...(plan.group
            ? { allreduce_bytes: outcome.allReducedBytes, optimizer_state_bytes: model.optimizer.stateBytes() }
            : {}),
        }),
      )
      progress.window = { loss: 0, steps: 0 }
      windowTokens = 0
      windowStart = performance.now()
    }
    const done = progress.step
    const epochEnded = done % stepsPerEpoch === 0
    const evalDue =
      plan.evalSets.length > 0 &&
      split.eval.length > 0 &&
      ((cfg.evalStrategy === 'steps' && done % cfg.evalSteps === 0) ||
        (cfg.evalStrategy === 'epoch' && epochEnded) ||
        done === totalSteps)
    if (evalDue && cfg.evalStrategy !== 'no') {
      const evaluation = await evaluateSets(model, plan.evalSets, {
        batchSize: cfg.perDeviceEvalBatchSize,
        padId: plan.tokenizer.padId,
        group: plan.group,
      })
      outcome.evalLosses = evaluation.losses
      outcome.evalLoss = evaluation.loss
      run.emit({
        type: 'eval',
        step: done,
        evalLoss: evaluation.loss,
        losses: evaluation.losses,
        tokens: evaluation.tokens,
      })
      const rounded = Object.fromEntries(
        Object.entries(evaluation.losses).map(([key, loss]) => [key, Number(loss.toFixed(6))]),
      )
      await run.log(run.record(rounded))
    }
    const saveDue =
      (cfg.saveStrategy === 'steps' && done % cfg.saveSteps === 0) || (cfg.saveStrategy === 'epoch' && epochEnded)
    if (saveDue && done < totalSteps) await run.saveCheckpoint()
    // One process stops when asked; ranks stop when any of them had been asked before this step's all-reduce.
    if ((plan.group ? stopAll : run.signal?.aborted) && done < totalSteps) {
      if (!saveDue) await run.saveCheckpoint()
      outcome.aborted = true
      break
    }
  }
  outcome.loopSeconds = (performance.now() - loopStart) / 1000
  return outcome
}

/** Phase 4: the model (unless interrupted), the delta, the results and the loss plot. */
async function finish(run: Run, outcome: LoopOutcome): Promise<TrainResult> {
  const { cfg, checkpoint, policy, stepsPerEpoch, totalSteps } = run.plan
  const { model, progress } = run
  const step = progress.step
  if (!run.writes) {
    // The other ranks wait until rank 0 has written the model, so that every rank ends when the job is done.
    await run.plan.group!.barrier('waiting for rank 0 to write the model')
  } else if (!outcome.aborted) {
    const staging = join(cfg.outputDir, `.final-${process.pid}-${Date.now().toString(36)}`)
    await mkdir(staging)
    try {
      if (model.lora) await saveLoraOutput(model, staging)
      else await model.saveInto(staging, { dtype: checkpoint.dtype })
      await moveModelInto(staging, cfg.outputDir)
    } catch (error) {
      await rm(staging, { recursive: true, force: true })
      throw error
    }
    if (cfg.saveDelta)
      await writeDelta(model, join(cfg.outputDir, 'delta'), {
        baseModel: cfg.modelNameOrPath,
        dtype: checkpoint.dtype,
        trainable: policy.trainable,
      })
    await writeFile(join(cfg.outputDir, 'trainer_state.json'), `${JSON.stringify(run.state(), null, 2)}\n`)
  }
  const seconds = (performance.now() - run.started) / 1000
  const stepsRun = step - run.startStep
  const result: TrainResult = {
    outputDir: cfg.outputDir,
    globalStep: step,
    totalSteps,
    aborted: outcome.aborted,
    trainLoss: stepsRun > 0 ? outcome.runLoss / stepsRun : NaN,
    evalLoss: outcome.evalLoss,
    evalLosses: outcome.evalLosses,
    seconds,
    tokensPerSecond: outcome.runTokens / Math.max(seconds, 1e-9),
    checkpoints: run.checkpoints,
    logHistory: progress.logHistory,
  }
  // As transformers' Trainer: train_runtime is the training loop, without loading the data and the model before it
  // and writing the final model after it (TrainResult.seconds has the whole run).
  const loop = outcome.loopSeconds
  const results = {
    epoch: step / stepsPerEpoch,
    train_loss: result.trainLoss,
    train_runtime: loop,
    train_steps_per_second: stepsRun / Math.max(loop, 1e-9),
    train_tokens_per_second: outcome.runTokens / Math.max(loop, 1e-9),
    ...outcome.evalLosses,
  }
  if (run.writes) {
    await writeFile(
      join(cfg.outputDir, outcome.aborted ? 'interrupted_results.json' : 'all_results.json'),
      `${JSON.stringify(results, null, 2)}\n`,
    )
    if (!outcome.aborted && Object.keys(outcome.evalLosses).length > 0)
      await writeEvalResults(cfg.outputDir, results.epoch, outcome.evalLosses, cfg.stage)
    if (cfg.plotLoss) await writeLossPlot(cfg.outputDir, progress.logHistory, run.warn)
    run.runLog!.line(
      outcome.aborted
        ? `interrupted at step ${step}; a checkpoint was saved`
        : `finished: ${step} steps, train_loss ${result.trainLoss.toFixed(4)}`,
    )
    await run.runLog!.close()
    if (run.plan.group) await run.plan.group.barrier('releasing the other ranks after writing the model')
  }
  run.emit({ type: 'done', result })
  return result
}

export async function train(config: TrainConfig | string, options: TrainOptions = {}): Promise<TrainResult> {
  const cfg =
    typeof config === 'string' ? await loadTrainConfig(config, options.overrides, { cwd: options.cwd }) : config
  const started = performance.now()
  const warn = (message: string) => options.onEvent?.({ type: 'warning', message })
  for (const key of cfg.ignoredKeys)
    warn(`key "${key}" has no effect in llamapro (accepted for LLaMA-Factory compatibility)`)
  for (const message of cfg.configWarnings ?? []) warn(message)

  const env = options.distributed === undefined ? distributedFromEnv() : options.distributed
  const ranks = env && env.worldSize > 1 ? env : null
  if (cfg.zeroStage === 1 && !ranks)
    warn(
      'zero_stage: 1 has no effect in a single process (it shards the optimizer state over the ranks of a ' +
        'data-parallel run)',
    )
  // Temporaries that a killed run left in output_dir (half-written checkpoints, the final model's staging folder).
  if (!ranks || ranks.rank === 0) {
    const stale = await removeStaleTemporaries(cfg.outputDir)
    if (stale.length > 0) warn(describeStaleRemoval(stale))
  }
  let device = chooseDevice(cfg.device, cfg.device === 'auto' ? info().cuda : null)
  // Under torchrun each rank of a node takes its own GPU: cuda means cuda:LOCAL_RANK.
  if (ranks && (cfg.device === 'cuda' || (cfg.device === 'auto' && device.device !== 'cpu'))) {
    device = {
      device: `cuda:${ranks.localRank}`,
      reason: `${device.reason}, one GPU per rank (LOCAL_RANK ${ranks.localRank})`,
    }
  }
  const group = ranks
    ? await ProcessGroup.connect(ranks, {
        timeoutSeconds: cfg.ddpTimeout,
        device: device.device,
        bucketBytes: Math.max(1, Math.round(cfg.ddpBucketCapMb * 1024 * 1024)),
      })
    : null
  try {
    const log = (message: string) => options.onEvent?.({ type: 'data', message })
    const plan = await prepareData(cfg, warn, group, device, log, options.signal).catch((error: unknown) => {
      // Streams stopped by the signal throw a generic AbortError: report the interruption the caller asked for.
      if (options.signal?.aborted)
        throw options.signal.reason instanceof Error ? options.signal.reason : new InterruptedError()
      throw error
    })
    try {
      // Every rank has checked output_dir before rank 0 clears or writes it.
      if (group) await group.barrier('checking the configuration on every rank')
      return await trainPrepared(plan, started, options)
    } finally {
      plan.data?.train.close()
      plan.data?.eval?.close()
      if (plan.schedule instanceof StreamSchedule) await plan.schedule.close()
    }
  } finally {
    await group?.destroy()
  }
}

async function trainPrepared(plan: RunPlan, started: number, options: TrainOptions): Promise<TrainResult> {
  try {
    return await trainModel(plan, started, options)
  } finally {
    await plan.disposeMerged?.()
  }
}

async function trainModel(plan: RunPlan, started: number, options: TrainOptions): Promise<TrainResult> {
  const warn = (message: string) => options.onEvent?.({ type: 'warning', message })
  const { model, progress } = await prepareModel(plan, warn)
  try {
    const run = await openRun(plan, model, progress, started, options)
    const params = model.parameters()
    const trainable = params.filter((p) => p.requiresGrad)
    const gradBytes = (numel: number) => numel * (trainable[0]?.dtype === 'float32' ? 4 : 2)
    run.emit({
      type: 'start',
      totalSteps: plan.totalSteps,
      startStep: progress.step,
      stepsPerEpoch: plan.stepsPerEpoch,
      trainSequences: plan.split.train?.length ?? null,
      evalSequences: plan.split.eval.length,
      trainableParams: model
        .parameters()
        .filter((p) => p.requiresGrad)
        .reduce((s, p) => s + p.numel, 0),
      totalParams: model.parameters().reduce((s, p) => s + p.numel, 0),
      trainableLayerIds: plan.policy.trainableLayerIds,
      resumedFrom: plan.resumeDir,
      device: plan.device.device,
      deviceReason: plan.device.reason,
      kernels: kernelOptions(), // issue 31: the kernel switches in effect, for the start line of running_log.txt
      ...(plan.group
        ? {
            worldSize: plan.group.worldSize,
            allReduceBytes: gradBytes(trainable.reduce((s, p) => s + p.numel, 0)),
            fullFineTuneAllReduceBytes: gradBytes(params.reduce((s, p) => s + p.numel, 0)),
            zeroStage: plan.cfg.zeroStage,
          }
        : {}),
    })
    const tensorboard = run.runLog?.info.logging_dir
    if (tensorboard)
      run.emit({
        type: 'report',
        message: `TensorBoard events in ${tensorboard} (tensorboard --logdir ${tensorboard})`,
      })
    try {
      const outcome = await trainLoop(run)
      return await finish(run, outcome)
    } catch (error) {
      // The run's own log says why it ended, as the terminal does.
      run.runLog?.line(`training stopped: ${(error as Error).message}`, 'ERROR')
      await run.runLog?.close().catch(() => undefined)
      throw error
    }
  } finally {
    model.dispose()
  }
}
