/**
 * `llamapro sweep`: trains every planned run (strategy × seed) with the ordinary trainer, scores each result on
 * the held-out sets with the code `llamapro eval` runs, and writes the report after every run.
 *
 * Resuming: a run is finished when its folder holds sweep_run.json, written atomically after its evaluation, with
 * the settings it was made with. A rerun skips those runs (and reuses the expansions and "before" figures, which
 * are marked the same way) and trains the rest. A run stopped midway starts again from its beginning: resuming it
 * from a checkpoint would give the same weights, but its wall time and tokens/s would mix two sessions.
 * Interrupting (AbortSignal, Ctrl-C): the run in progress stops after its current step, and the report of the
 * runs finished so far is written.
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { openCheckpoint } from '../checkpoint/checkpoint.js'
import { LlamaproError } from '../errors.js'
import { expandCheckpoint } from '../expand/expand-checkpoint.js'
import { info } from '../info.js'
import { native } from '../native/load.js'
import { loadTrainConfig } from '../train/config.js'
import { chooseDevice } from '../train/device.js'
import { type TrainOverrides, trainOverrides } from '../train/overrides.js'
import { train } from '../train/trainer.js'
import { writeFileAtomically } from '../util/atomic-dir.js'
import { type HeldOutSet, heldOutLosses } from './heldout.js'
import { type PlannedRun, planSweep } from './plan.js'
import { type SweepReport, writeReport } from './report.js'
import type { Before, RunRecord, SweepEvent, SweepOptions } from './sweep-types.js'

export type { Before, RunRecord, SweepEvent, SweepOptions } from './sweep-types.js'

export interface SweepResult {
  outDir: string
  /** Every planned run finished. */
  complete: boolean
  /** Stopped by the signal; the report covers the runs finished before. */
  aborted: boolean
  runs: RunRecord[]
  report: SweepReport
  files: string[]
}

export const RUN_MARKER = 'sweep_run.json'

const sha = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 16)

/** A marker file: what was computed, and the settings it was computed with. */
async function readMarker<T>(path: string, settings: string, what: string): Promise<T | null> {
  if (!existsSync(path)) return null
  let marker: { settings: string; value: T }
  try {
    marker = JSON.parse(await readFile(path, 'utf8'))
  } catch {
    return null // a marker is written atomically; one that does not parse was not written by a finished sweep
  }
  if (marker.settings !== settings) {
    throw new LlamaproError(
      'LLAMAPRO_SWEEP',
      `${path}: ${what} was made with other settings (the YAML, its overrides, the steps, the held-out sets or the ` +
        `strategy changed); ` +
        'a sweep folder holds one sweep: use another --out, or delete that folder to redo it',
    )
  }
  return marker.value
}

const writeMarker = (path: string, settings: string, value: unknown) =>
  writeFileAtomically(path, `${JSON.stringify({ settings, value }, null, 2)}\n`)

export async function runSweep(options: SweepOptions): Promise<SweepResult> {
  const out = resolve(options.cwd ?? process.cwd(), options.outDir)
  const emit = (event: SweepEvent) => options.onEvent?.(event)
  const warn = (message: string) => emit({ type: 'warning', message })
  const cwd = options.cwd ?? process.cwd()
  const userOverrides = options.overrides ?? {}
  // The YAML's path, like its contents' relative paths, is relative to cwd.
  const config = resolve(cwd, options.config)
  const cfg = await loadTrainConfig(config, userOverrides, { cwd, partial: true })
  if (cfg.dataset.length === 0)
    throw new LlamaproError('LLAMAPRO_SWEEP', `${options.config}: the sweep needs a training dataset (key dataset)`)
  if (options.keep.length === 0)
    throw new LlamaproError(
      'LLAMAPRO_SWEEP',
      'the sweep needs the text to keep (--keep DATASET): without it, forgetting cannot be measured',
    )
  // --eval, else the YAML's eval_dataset (LLaMA-Factory's key), else its val_size split of the training data.
  const evalSet =
    options.eval && options.eval.length > 0 ? options.eval : cfg.evalDataset.length > 0 ? cfg.evalDataset : null
  if (!evalSet && !(cfg.valSize > 0)) {
    throw new LlamaproError(
      'LLAMAPRO_SWEEP',
      `${options.config}: the sweep needs held-out new-domain data: --eval DATASET, eval_dataset in the YAML, or ` +
        `val_size in the YAML (a share of the training data)`,
    )
  }
  if (cfg.stage === 'sft' && (cfg.defaultSystem !== null || !cfg.enableThinking)) {
    warn(
      'held-out sft data is scored with the template as llamapro eval renders it, without default_system / ' +
        'enable_thinking: false',
    )
  }
  const base = await openCheckpoint(cfg.modelNameOrPath)
  const plan = planSweep({
    config: cfg,
    numLayers: base.config.numLayers,
    strategies: options.strategies,
    outDir: out,
    steps: options.steps,
    tokens: options.tokens,
    seeds: options.seeds,
  })
  const device = chooseDevice(cfg.device, cfg.device === 'auto' ? info().cuda : null).device
  const deviceIndex = device.startsWith('cuda') ? Number(device.split(':')[1] ?? 0) : undefined
  const keepSet: HeldOutSet = { role: 'keep', dataset: options.keep, stage: options.keepStage ?? 'pt' }
  const domainSet: HeldOutSet | null = evalSet ? { role: 'domain', dataset: evalSet, stage: cfg.stage } : null
  const sets = domainSet ? [domainSet, keepSet] : [keepSet]
  // Everything a figure depends on, besides the run's own keys: a folder made with other settings is refused.
  const common = JSON.stringify({
    yaml: sha(await readFile(config, 'utf8')),
    userOverrides,
    sets,
    device,
    steps: plan.steps,
  })
  await mkdir(out, { recursive: true })

  const records: RunRecord[] = []
  const finishedDirs = new Set<string>()
  for (const run of plan.runs) {
    const done = await readMarker<RunRecord>(
      join(run.dir, RUN_MARKER),
      runSettings(run, common),
      `the run ${run.strategy.name} seed ${run.seed}`,
    )
    if (done) finishedDirs.add(run.dir)
  }
  emit({ type: 'plan', plan, finished: finishedDirs.size })
  const state = { aborted: false }
  const stopped = () => options.signal?.aborted === true

  const befores = new Map<string, Before>()
  const report = async () => {
    const result = await writeReport(out, {
      options: { ...options, outDir: out },
      plan,
      records,
      device,
      complete: records.length === plan.runs.length,
    })
    emit({ type: 'report', files: result.files })
    return result
  }

  try {
    // The expanded models, once per block count, shared by every pro:N run with that N.
    for (const [blocks, dir] of plan.expansions) {
      if (stopped()) break
      const reused = existsSync(join(dir, 'config.json'))
      if (!reused)
        await expandCheckpoint(cfg.modelNameOrPath, dir, {
          numExpand: blocks,
          force: true,
          signal: options.signal,
          onWarning: warn,
        })
      emit({ type: 'expand', blocks, dir, reused })
    }

    // "Before": each starting model on the held-out sets (with val_size, on each seed's split; see baselineDomain).
    const before = async (run: PlannedRun): Promise<Before> => {
      const key = `${run.strategy.expandBy === null ? 'original' : `expanded-${run.strategy.expandBy}`}${domainSet ? '' : `-seed-${run.seed}`}`
      const known = befores.get(key)
      if (known) return known
      const markerPath = join(out, 'baseline', `${key}.json`)
      const settings = JSON.stringify({ common, model: run.model, seed: domainSet ? null : run.seed })
      let value = await readMarker<Before>(markerPath, settings, `the "before" figures of ${run.model}`)
      const reused = value !== null
      if (!value) {
        const losses = await heldOutLosses(run.model, sets, cfg, device, options.signal)
        const domain = domainSet
          ? losses[0]!.loss
          : await baselineDomain(run, join(out, 'baseline', key), config, options.signal, userOverrides, cwd)
        value = { domain, keep: losses[domainSet ? 1 : 0]!.loss }
        await mkdir(join(out, 'baseline'), { recursive: true })
        await writeMarker(markerPath, settings, value)
      }
      befores.set(key, value)
      emit({ type: 'before', key, before: value, reused })
      return value
    }

    let trainSeconds = 0
    let trainSteps = 0
    let index = 0
    for (const run of plan.runs) {
      index++
      if (stopped()) break
      const settings = runSettings(run, common)
      const finished = await readMarker<RunRecord>(
        join(run.dir, RUN_MARKER),
        settings,
        `the run ${run.strategy.name} seed ${run.seed}`,
      )
      if (finished) {
        records.push(finished)
        emit({ type: 'run-skipped', strategy: run.strategy.name, seed: run.seed, dir: run.dir })
        continue
      }
      const start = await before(run)
      if (stopped()) break
      emit({ type: 'run-start', strategy: run.strategy.name, seed: run.seed, index, total: plan.runs.length })
      let trainable = 0
      let total = 0
      let tokens = 0
      let lastStep = 0
      let stepsThisRun = 0
      const runsLeft = plan.runs.slice(index).filter((r) => !finishedDirs.has(r.dir)).length
      native().resetPeakMemory(deviceIndex)
      const stepStarted = { at: performance.now() }
      const result = await train(config, {
        cwd,
        signal: options.signal,
        distributed: null,
        overrides: { ...userOverrides, ...trainOverrides(run.overrides, domainSet ? {} : evalKeys(cfg.evalStrategy)) },
        onEvent: (event) => {
          if (event.type === 'start') {
            trainable = event.trainableParams
            total = event.totalParams
            stepStarted.at = performance.now()
          } else if (event.type === 'step') {
            tokens += event.tokens
            const now = performance.now()
            trainSeconds += (now - stepStarted.at) / 1000
            stepStarted.at = now
            trainSteps++
            stepsThisRun = event.totalSteps
            lastStep = event.step
            const perStep = trainSeconds / trainSteps
            const remaining = event.totalSteps - event.step + runsLeft * (plan.steps ?? event.totalSteps)
            emit({
              type: 'step',
              strategy: run.strategy.name,
              seed: run.seed,
              step: event.step,
              totalSteps: event.totalSteps,
              loss: event.loss,
              etaSeconds: perStep * remaining,
            })
          } else if (event.type === 'warning') {
            warn(`${run.strategy.name} seed ${run.seed}: ${event.message}`)
          }
        },
      })
      if (result.aborted) {
        state.aborted = true
        break
      }
      const memory = native().memoryStats(deviceIndex)
      const peakMemoryBytes = device === 'cpu' ? memory.cpu.peak : (memory.cuda?.peak ?? null)
      const losses = await heldOutLosses(run.dir, sets, cfg, device, options.signal)
      const domainAfter = domainSet ? losses[0]! : { loss: result.evalLoss ?? NaN, tokens: 0 }
      const keepAfter = losses[domainSet ? 1 : 0]!
      const loop = JSON.parse(await readFile(join(run.dir, 'all_results.json'), 'utf8')) as {
        train_runtime: number
        train_tokens_per_second: number
      }
      const record: RunRecord = {
        strategy: run.strategy.name,
        seed: run.seed,
        dir: run.dir,
        model: run.model,
        trainableParams: trainable,
        totalParams: total,
        steps: lastStep || stepsThisRun,
        tokens,
        // The training loop's time, as all_results.json's train_runtime (transformers' definition: without loading and
        // saving).
        seconds: loop.train_runtime,
        tokensPerSecond: loop.train_tokens_per_second,
        peakMemoryBytes,
        device,
        domain: { before: start.domain, after: domainAfter.loss, tokens: domainAfter.tokens },
        keep: { before: start.keep, after: keepAfter.loss, tokens: keepAfter.tokens },
      }
      await writeMarker(join(run.dir, RUN_MARKER), settings, record)
      records.push(record)
      emit({ type: 'run-done', record })
      await report()
    }
  } catch (error) {
    // Stopped inside an expansion or an evaluation: the finished runs are reported, then the stop is passed on.
    if (!stopped()) throw error
  }
  if (stopped()) state.aborted = true
  const written = await report()
  return {
    outDir: out,
    complete: records.length === plan.runs.length,
    aborted: state.aborted,
    runs: records,
    report: written.report,
    files: written.files,
  }
}

/** The settings that decide a run's figures, stored in its marker. */
function runSettings(run: PlannedRun, common: string): string {
  return JSON.stringify({ common, overrides: run.overrides })
}

/** With val_size and no eval_strategy, the trainer would not evaluate: evaluate once, at the end. */
function evalKeys(strategy: 'steps' | 'epoch' | 'no'): TrainOverrides {
  return strategy === 'no' ? trainOverrides({ eval_strategy: 'steps', eval_steps: 1_000_000_000 }) : {}
}

/**
 * The new domain's "before" with val_size: the trainer's own evaluation of the split this seed holds out, after
 * one step at learning rate 0 (AdamW then changes no weight: its update and its weight decay are scaled by the
 * learning rate), so "before" and "after" are the same loss on the same sequences.
 */
async function baselineDomain(
  run: PlannedRun,
  dir: string,
  config: string,
  signal: AbortSignal | undefined,
  userOverrides: Record<string, unknown>,
  cwd: string,
): Promise<number> {
  const result = await train(config, {
    cwd,
    distributed: null,
    signal,
    overrides: {
      ...userOverrides,
      ...trainOverrides(run.overrides, {
        output_dir: dir,
        finetuning_type: 'freeze',
        use_llama_pro: false,
        freeze_trainable_layers: 1,
        learning_rate: 0,
        max_steps: 1,
        eval_strategy: 'steps',
        eval_steps: 1,
      }),
    },
  })
  if (result.aborted || result.evalLoss === null)
    throw new LlamaproError('LLAMAPRO_SWEEP', `${dir}: the trainer gave no evaluation of the val_size split`)
  return result.evalLoss
}
