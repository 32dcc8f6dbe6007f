/**
 * `llamapro bench <train.yaml>`: times the training step `llamapro train` runs on that YAML — its data, template,
 * cutoff and padding, its batches in its order, its freeze policy, dtype and optimizer options — with activation
 * checkpointing set several ways. Each setting trains its own copy of the model through the same steps; the
 * settings take turns step by step (in an order that rotates), so a shared machine's drifts reach them alike and
 * their ratio is measured in one run. The losses are the ones `train` logs for those steps, which shows that the
 * step timed is the step trained.
 */
import { LlamaproError } from '../errors.js'
import { info } from '../info.js'
import type { LlamaModel } from '../model/llama-model.js'
import { type TrainConfig, loadTrainConfig } from '../train/config.js'
import { chooseDevice } from '../train/device.js'
import { trainOverrides } from '../train/overrides.js'
import { learningRateAt } from '../train/schedule.js'
import { StreamSchedule } from '../data/streaming.js'
import { type RunPlan, loadTrainingModel, microStepOptions, prepareData, takeMicroBatches } from '../train/trainer.js'
import { type MachineInfo, machineInfo } from './machine.js'
import { type Percentiles, percentiles } from './run-bench.js'

/** off: every activation kept; on: the layers that train are recomputed (the default); all: frozen layers too. */
export type CheckpointingMode = 'on' | 'off' | 'all'
export const CHECKPOINTING_MODES: readonly CheckpointingMode[] = ['on', 'off', 'all']

export interface TrainConfigBenchOptions {
  /** The training YAML. Its output_dir is neither read nor written. */
  config: string
  overrides?: Record<string, unknown>
  /** Optimizer steps to time (default: the run's, at most 12), after `warmup` untimed ones (default 1). */
  steps?: number
  warmup?: number
  checkpointing?: CheckpointingMode[]
  /** The folder the YAML's relative paths resolve against (default: the working directory, as for train). */
  cwd?: string
  onProgress?: (message: string) => void
}

export interface TrainConfigBenchResult {
  checkpointing: CheckpointingMode
  /** Wall time per optimizer step (all of its micro-batches). */
  msPerStep: Percentiles
  /** Process CPU time (user + system, all threads) per step, median: less disturbed by other tenants. */
  cpuMsPerStep: number
  /** Of each step: the update (gradient norms, clipping, AdamW), median. */
  msUpdate: number
  /** Real tokens per second at the median step time. */
  tokensPerSecond: number
  /** The loss of every step run (warm-up included), as `train` logs it. */
  losses: number[]
}

export interface TrainConfigBenchReport {
  machine: MachineInfo
  config: {
    yaml: string
    model: string
    stage: string
    template: string
    cutoffLen: number
    batch: number
    accumulation: number
    steps: number
    warmup: number
    threads: number
    trainableLayerIds: number[]
  }
  /** [batch, seq] of each micro-batch, per step: the shapes of the user's data, padding included. */
  shapes: [number, number][][]
  results: TrainConfigBenchResult[]
  /** Each setting's median step time over the first setting's. */
  ratios: Record<string, number>
  notes: string[]
}

const modelOptions = (mode: CheckpointingMode) => ({
  gradientCheckpointing: mode !== 'off',
  checkpointFrozenLayers: mode === 'all',
})

export async function benchTrainConfig(options: TrainConfigBenchOptions): Promise<TrainConfigBenchReport> {
  const progress = options.onProgress ?? (() => {})
  const modes = options.checkpointing ?? ['on', 'off']
  if (
    modes.length === 0 ||
    new Set(modes).size !== modes.length ||
    modes.some((m) => !CHECKPOINTING_MODES.includes(m))
  ) {
    throw new LlamaproError(
      'LLAMAPRO_ARG',
      `checkpointing: give distinct settings among ${CHECKPOINTING_MODES.join(', ')}, got ${JSON.stringify(modes)}`,
    )
  }
  // The run's own settings, with nothing written: output_dir is replaced by a folder that is never created.
  const nowhere = trainOverrides({ output_dir: `/nonexistent/llamapro-bench-${process.pid}` })
  const loaded = await loadTrainConfig(options.config, { ...options.overrides, ...nowhere }, { cwd: options.cwd })
  const cfg: TrainConfig = { ...loaded, resumeFromCheckpoint: null }
  const notes: string[] = []
  const warn = (message: string) => notes.push(message)
  const device = chooseDevice(cfg.device, cfg.device === 'auto' ? info().cuda : null)
  const plan: RunPlan = await prepareData(cfg, warn, null, device)
  const warmup = options.warmup ?? 1
  const steps = options.steps ?? Math.min(plan.totalSteps, 12)
  if (!Number.isInteger(steps) || steps < 1)
    throw new LlamaproError('LLAMAPRO_ARG', `steps must be a positive integer, got ${steps}`)
  if (!Number.isInteger(warmup) || warmup < 0)
    throw new LlamaproError('LLAMAPRO_ARG', `warmup must be a non-negative integer, got ${warmup}`)
  const total = warmup + steps
  if (total > plan.totalSteps)
    notes.push(
      `the run has ${plan.totalSteps} steps; the bench runs ${total} (the schedule continues past the run's end)`,
    )

  const models: LlamaModel[] = []
  try {
    for (const mode of modes) {
      progress(`checkpointing ${mode}: loading the model`)
      models.push(await loadTrainingModel(plan, modelOptions(mode)))
    }
    const position = { epoch: 0, batchIndex: 0 }
    const shapes: [number, number][][] = []
    const wall = modes.map(() => [] as number[])
    const cpu = modes.map(() => [] as number[])
    const update = modes.map(() => [] as number[])
    const losses = modes.map(() => [] as number[])
    let tokens = 0
    for (let step = 0; step < total; step++) {
      const micro = takeMicroBatches(position, plan.schedule.batchesPerEpoch, cfg.gradientAccumulationSteps)
      const batches = []
      for (const m of micro) batches.push((await plan.schedule.take(...m)).batch)
      const targets = batches.reduce((sum, b) => sum + b.targetTokens, 0)
      shapes.push(batches.map((b) => [b.batch, b.seq]))
      if (step >= warmup) tokens += batches.reduce((sum, b) => sum + b.tokens, 0)
      const lr = learningRateAt(step, plan.totalSteps, plan.warmup, cfg.lrSchedulerType, cfg.learningRate)
      const logging = (step + 1) % cfg.loggingSteps === 0 || step + 1 === plan.totalSteps
      progress(
        `step ${step + 1}/${total}${step < warmup ? ' (warm-up)' : ''}: ` +
          `${batches.map((b) => `${b.batch}x${b.seq}`).join(', ')}`,
      )
      for (let k = 0; k < modes.length; k++) {
        const which = (step + k) % modes.length
        const model = models[which]!
        let loss = 0
        let updateMs = 0
        const cpuStart = process.cpuUsage()
        const start = performance.now()
        for (let j = 0; j < batches.length; j++) {
          const batch = batches[j]!
          const weight = targets > 0 ? batch.targetTokens / targets : 1 / batches.length
          const last = j === batches.length - 1
          const result = await model.trainStep(batch, microStepOptions(cfg, { lr, weight, last, logging }))
          if (last) loss = result.stepLoss! // Σ loss × weight over the micro-batches
          updateMs += result.updateMs
        }
        const ms = performance.now() - start
        const used = process.cpuUsage(cpuStart)
        losses[which]!.push(loss)
        if (step >= warmup) {
          wall[which]!.push(ms)
          cpu[which]!.push((used.user + used.system) / 1000)
          update[which]!.push(updateMs)
        }
      }
    }
    const results: TrainConfigBenchResult[] = modes.map((mode, k) => {
      const msPerStep = percentiles(wall[k]!)
      return {
        checkpointing: mode,
        msPerStep,
        cpuMsPerStep: percentiles(cpu[k]!).median,
        msUpdate: percentiles(update[k]!).median,
        tokensPerSecond: tokens / steps / (msPerStep.median / 1000),
        losses: losses[k]!,
      }
    })
    const first = results[0]!.msPerStep.median
    return {
      machine: machineInfo(),
      config: {
        yaml: options.config,
        model: cfg.modelNameOrPath,
        stage: cfg.stage,
        template: cfg.template,
        cutoffLen: cfg.cutoffLen,
        batch: cfg.perDeviceTrainBatchSize,
        accumulation: cfg.gradientAccumulationSteps,
        steps,
        warmup,
        threads: info().threads.intraOp,
        trainableLayerIds: plan.policy.trainableLayerIds,
      },
      shapes,
      results,
      ratios: Object.fromEntries(results.map((r) => [r.checkpointing, r.msPerStep.median / first])),
      notes,
    }
  } finally {
    for (const model of models) model.dispose()
    plan.data?.train.close()
    plan.data?.eval?.close()
    if (plan.schedule instanceof StreamSchedule) await plan.schedule.close()
    await plan.disposeMerged?.()
  }
}

export function formatTrainConfigBench(report: TrainConfigBenchReport): string {
  const { config } = report
  const lines = [
    `${config.yaml}: ${config.model}, ${config.stage}, template ${config.template}, cutoff_len ${config.cutoffLen}, ` +
      `batch ${config.batch} x ${config.accumulation}, ` +
      `layers ${config.trainableLayerIds.join(',')} train, ${config.threads} threads; ${config.steps} timed steps ` +
      `after ${config.warmup} warm-up`,
    `micro-batch shapes: ${[...new Set(report.shapes.flat().map(([b, t]) => `${b}x${t}`))].join(', ')}`,
    '',
    '| checkpointing | step (median, p10-p90) | CPU time per step | update | tokens/s | step / first setting |',
    '|---|---|---|---|---|---|',
  ]
  for (const r of report.results) {
    lines.push(
      `| ${r.checkpointing} | ${r.msPerStep.median.toFixed(0)} ms ` +
        `(${r.msPerStep.p10.toFixed(0)}-${r.msPerStep.p90.toFixed(0)}) | ${r.cpuMsPerStep.toFixed(0)} ms | ` +
        `${r.msUpdate.toFixed(0)} ms | ` +
        `${r.tokensPerSecond.toFixed(1)} | ${report.ratios[r.checkpointing]!.toFixed(3)} |`,
    )
  }
  lines.push(
    '',
    `losses (${report.results[0]!.checkpointing}): ${report.results[0]!.losses.map((l) => l.toFixed(6)).join(' ')}`,
  )
  for (const note of report.notes) lines.push(`note: ${note}`)
  return lines.join('\n')
}
