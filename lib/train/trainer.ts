/**
 * `llamapro train`: the training loop, readable top to bottom. Configuration and data are validated before the
 * model is loaded; each micro-batch is one awaited native call (forward, backward and, on the last micro-batch of
 * an accumulation, clipping and the AdamW update), weighted by its share of the step's target tokens. Logging,
 * evaluation, checkpoints, warnings and cancellation happen here, between steps.
 */
import { existsSync } from 'node:fs'
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type Checkpoint, openCheckpoint } from '../checkpoint/checkpoint.js'
import { parseLayerName } from '../checkpoint/parameters.js'
import { CONFIG_FILE } from '../checkpoint/checkpoint.js'
import { type Batch, BatchSchedule, splitSource } from '../data/batches.js'
import { ConcatSource, type SequenceSource } from '../data/store/reader.js'
import { type TokenData, type TokenDataOptions, locateTokenData, openTokenData, prepareTokenData } from '../data/store/token-data.js'
import { StreamSchedule, openStreaming } from '../data/streaming.js'
import { isStore } from '../data/store/reader.js'
import { chatTemplate, pretrainTokenizer } from '../data/template.js'
import { type TextTokenizer, loadTokenizer } from '../data/tokenizer.js'
import { info, setThreads } from '../info.js'
import { LlamaModel } from '../model/llama-model.js'
import type { NativeTrainStepOptions, NativeTrainStepResult } from '../native/binding.js'
import { kernelOptions } from '../native/kernel-options.js'
import { type TrainablePlan as FreezePolicy, freezePolicy } from '../policy/freeze-policy.js'
import { OutputExistsError, describeStaleRemoval, removeStaleTemporaries } from '../util/atomic-dir.js'
import { VERSION } from '../version.js'
import { type TrainerState, checkpointName, listCheckpoints, loadOptimizerState, readTrainerState, rotateCheckpoints, writeCheckpoint } from './checkpoints.js'
import { type TrainConfig, loadTrainConfig, trainingDtypes } from './config.js'
import { writeDelta } from './delta.js'
import { type LoraTrainingPolicy, applyLora, loraOptimizerGroups, loraTrainingPolicy, mergedBase } from './lora-setup.js'
import { copySideFiles } from '../checkpoint/side-files.js'
import { type DeviceChoice, chooseDevice } from './device.js'
import type { LogRecord, TrainEvent, TrainResult } from './events.js'
import { TrainingError } from './errors.js'
import { InterruptedError } from '../errors.js'
import { writeLossPlot } from './loss-plot.js'
import { checkOutputDirSeparate, clearRunOutputs } from './output-dir.js'
import { learningRateAt, warmupStepsFor } from './schedule.js'
import { type DistributedEnv, distributedFromEnv } from '../distributed/environment.js'
import { ProcessGroup } from '../distributed/process-group.js'
import { RankSchedule } from '../distributed/sharding.js'
import { readExpansionRecord } from '../expand/record.js'
import { type EvalSet, evaluateSets } from './evaluate.js'
import { RunLog, TRAINER_LOG_FILE } from './run-log.js'
import { openReporters } from './reporters.js'

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

/** transformers' Trainer applies no weight decay to biases and norm weights. */
const noWeightDecay = (name: string) => name.endsWith('.bias') || /norm\.weight$/.test(name)

/** Python's str(timedelta(seconds=int(s))), as LLaMA-Factory writes elapsed_time: 0:05:07, 1 day, 2:00:00. */
export const clock = (seconds: number) => {
  const s = Math.max(0, Math.floor(seconds))
  const days = Math.floor(s / 86400)
  const rest = s % 86400
  const time = `${Math.floor(rest / 3600)}:${String(Math.floor((rest % 3600) / 60)).padStart(2, '0')}:${String(rest % 60).padStart(2, '0')}`
  return days > 0 ? `${days} day${days === 1 ? '' : 's'}, ${time}` : time
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

/** LoRA dropout's seed for one micro-step: a function of the run's seed, rank and position only, so a resume draws the same masks. */
function dropoutSeed(seed: number, rank: number, step: number, micro: number): number {
  let h = Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(rank + 1, 0x85ebca6b)
  h = Math.imul(h ^ step, 0xc2b2ae35) ^ Math.imul(micro + 1, 0x27d4eb2f)
  return (h >>> 0) * 4096 + (step % 4096)
}

/** What a LoRA run writes where a freeze run writes the model: the PEFT adapter and the tokenizer files (as LLaMA-Factory). */
async function saveLoraOutput(model: LlamaModel, dir: string): Promise<void> {
  await model.saveAdapterInto(dir)
  if (model.sourceDir) await copySideFiles(model.sourceDir, dir)
}

/** A checkpoint resumes exactly only with the settings that decide the data order and what one step is. */
function checkResumable(state: TrainerState, cfg: TrainConfig, dir: string, worldSize: number): void {
  if ((state.world_size ?? 1) !== worldSize) {
    const saved = state.world_size ?? 1
    throw new TrainingError(
      'LLAMAPRO_RESUME',
      `${dir} was trained on ${saved} rank(s), this run has ${worldSize}: each rank's share of the data and the step size depend on it, ` +
        `so the run would not continue where it stopped. Resume with ${saved} rank(s) (llamapro train … --nproc-per-node ${saved}, or WORLD_SIZE=${saved}), ` +
        'or start a new run from the checkpoint folder as model_name_or_path',
    )
  }
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
function checkTokenIds(maxStoreId: number, tokenizer: TextTokenizer, vocabSize: number, modelDir: string, warn: (message: string) => void): void {
  const largest = Math.max(tokenizer.padId, maxStoreId)
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

/** What the data phase decides before any model is loaded. */
export interface RunPlan {
  cfg: TrainConfig
  resumeDir: string | null
  resumeState: TrainerState | undefined
  checkpoint: Checkpoint
  tokenizer: TextTokenizer
  /** train is null when streaming (no store: the sequences are not known before they are read). */
  split: { train: SequenceSource | null; eval: SequenceSource }
  /** What each evaluation measures: split.eval as one set, or (eval_on_each_dataset) one set per eval dataset. */
  evalSets: EvalSet[]
  /** The token store the sequences are read from (closed when the run ends); null when streaming. */
  data: TokenData | null
  policy: FreezePolicy | LoraTrainingPolicy
  schedule: RankSchedule | StreamSchedule
  /** Present when this process is one rank of several. */
  group: ProcessGroup | null
  stepsPerEpoch: number
  totalSteps: number
  warmup: number
  /** The concrete device (`device: auto` resolved; under torchrun `cuda` means cuda:LOCAL_RANK) and why. */
  device: DeviceChoice
  /** Removes the temporary merged base model (LoRA with adapters to merge). */
  disposeMerged?: () => Promise<void>
}

/** Where the run is: advanced by the loop, saved in checkpoints, restored on resume. */
interface Progress {
  step: number
  epoch: number
  batchIndex: number
  logHistory: LogRecord[]
  /** The loss of the optimizer steps since the last log line. */
  window: { loss: number; steps: number }
}

/** Phase 1: everything a user can get wrong is checked, and the data prepared, before the model is loaded. */
export async function prepareData(
  cfg: TrainConfig,
  warn: (message: string) => void,
  group: ProcessGroup | null,
  device: DeviceChoice,
  log: (message: string) => void = () => undefined,
  signal?: AbortSignal,
): Promise<RunPlan> {
  const resumeDir = await resolveResume(cfg)
  await checkOutputDirSeparate(cfg.outputDir, [
    { what: 'model (model_name_or_path)', path: cfg.modelNameOrPath },
    ...(existsSync(cfg.datasetDir) ? [{ what: 'dataset folder (dataset_dir)', path: cfg.datasetDir }] : []),
  ])
  if (!resumeDir && !cfg.overwriteOutputDir && existsSync(cfg.outputDir) && (await readdir(cfg.outputDir)).length > 0) {
    throw new OutputExistsError(cfg.outputDir, 'set overwrite_output_dir: true (or resume_from_checkpoint to continue a run)')
  }
  if (cfg.fp16 && device.device === 'cpu') {
    throw new TrainingError('LLAMAPRO_TRAIN_CONFIG', 'fp16: true needs a CUDA device (float16 math on the CPU is slow and needs loss scaling); use bf16 or neither on the CPU')
  }
  const resumeState = resumeDir ? await readTrainerState(resumeDir) : undefined
  if (resumeState) checkResumable(resumeState, cfg, resumeDir!, group?.worldSize ?? 1)
  // A LoRA checkpoint holds the adapter, not the model: the base model always comes from model_name_or_path.
  const modelDir = cfg.finetuningType === 'lora' ? cfg.modelNameOrPath : resumeDir ?? cfg.modelNameOrPath
  const checkpoint = await openCheckpoint(modelDir)
  const tokenizer = await loadTokenizer(modelDir)
  // The template is checked here, where its warnings reach the user; the workers that tokenize build their own.
  // LLaMA-Factory's template also sets the data's EOS (replace_eos), for pt as for sft.
  const template = cfg.stage === 'sft' ? chatTemplate(cfg.template, tokenizer, warn, { defaultSystem: cfg.defaultSystem, enableThinking: cfg.enableThinking }) : undefined
  const dataTokenizer = template?.tokenizer ?? pretrainTokenizer(cfg.template, tokenizer)
  const options = tokenDataOptions(cfg, modelDir, tokenizer, dataTokenizer, warn, log, signal)
  let data: TokenData | null = null
  let split: RunPlan['split']
  let evalEach: { name: string; source: SequenceSource }[] | null = null
  let schedule: RankSchedule | StreamSchedule
  if (cfg.streaming && !(cfg.tokenizedPath !== null && isStore(cfg.tokenizedPath))) {
    if (cfg.tokenizedPath !== null) {
      throw new TrainingError('LLAMAPRO_TRAIN_CONFIG', `tokenized_path ${cfg.tokenizedPath} holds no token store, and streaming: true writes none: set streaming: false to build the store there (LLaMA-Factory: "Turn off \`streaming\` when saving dataset to disk."), or remove tokenized_path`)
    }
    checkTokenIds(options.maxTokenId, tokenizer, checkpoint.config.vocabSize, modelDir, warn)
    const streamed = await openStreaming(options, { bufferSize: cfg.bufferSize, valSize: cfg.valSize, batchSize: cfg.perDeviceTrainBatchSize, seed: cfg.seed, padId: tokenizer.padId, rank: group?.rank ?? 0, worldSize: group?.worldSize ?? 1 })
    schedule = streamed
    split = { train: null, eval: streamed.evalSource }
    evalEach = streamed.evalEach
    log(`streaming: tokenizing while training with ${options.workers ?? 'all'} worker(s), shuffle buffer ${cfg.bufferSize} sequences${split.eval.length ? `, ${split.eval.length} held out for evaluation` : ''}`)
  } else {
    if (cfg.streaming) warn(`tokenized_path ${cfg.tokenizedPath} holds a token store: it is read from disk and streaming: true has no effect (as LLaMA-Factory, which loads a saved dataset as it is)`)
    data = await tokenDataForRank(options, group)
    const manifest = data.train.manifest
    if (!data.reused && manifest.droppedExamples > 0) warn(`${manifest.droppedExamples} example(s) had no response tokens left within cutoff_len ${cfg.cutoffLen} and were skipped`)
    const evalMaxId = Math.max(data.eval?.manifest.maxTokenId ?? 0, ...(data.evalEach ?? []).map((e) => e.store.manifest.maxTokenId))
    checkTokenIds(Math.max(manifest.maxTokenId, evalMaxId), tokenizer, checkpoint.config.vocabSize, modelDir, warn)
    evalEach = data.evalEach?.map(({ name, store }) => ({ name, source: store as SequenceSource })) ?? null
    const evalSource = evalEach ? new ConcatSource(evalEach.map((e) => e.source)) : data.eval
    split = evalSource ? { train: data.train as SequenceSource, eval: evalSource } : splitSource(data.train, cfg.valSize, cfg.seed)
    if (cfg.evalOnEachDataset && cfg.evalDataset.length > 0 && !evalEach) {
      warn(`eval_on_each_dataset: true, but the token store ${data.dir} was built with the eval datasets merged: one eval_loss is logged (rebuild it with overwrite_cache: true for one loss per dataset)`)
    }
    if (split.train!.length === 0) {
      throw new TrainingError('LLAMAPRO_DATASET', `no training sequences: the data gave ${data.train.length} sequence(s) of up to ${cfg.cutoffLen} tokens`)
    }
    const global = new BatchSchedule(split.train!, cfg.perDeviceTrainBatchSize, cfg.seed, tokenizer.padId)
    schedule = new RankSchedule(global, group?.rank ?? 0, group?.worldSize ?? 1)
  }
  const names = checkpoint.tensors.map((t) => t.name)
  const policy = cfg.finetuningType === 'lora' ? await loraTrainingPolicy(cfg, checkpoint) : freezePolicy(checkpoint.config.numLayers, names, { ...cfg, finetuningType: cfg.finetuningType })
  if (policy.trainable.length === 0) {
    throw new TrainingError('LLAMAPRO_POLICY', 'nothing to train: this strategy selects no parameter (freeze_trainable_layers: 0 and no freeze_extra_modules?)')
  }

  // A stream's epoch has no known length: as transformers with an IterableDataset, an "epoch" is max_steps.
  const stepsPerEpoch = cfg.streaming && data === null ? cfg.maxSteps : Math.max(1, Math.ceil(schedule.batchesPerEpoch / cfg.gradientAccumulationSteps))
  const totalSteps = cfg.maxSteps > 0 ? cfg.maxSteps : Math.max(1, Math.ceil(cfg.numTrainEpochs * stepsPerEpoch))
  const warmup = warmupStepsFor(totalSteps, cfg.warmupSteps, cfg.warmupRatio)
  // adapter_name_or_path to merge first (create_new_adapter, or all but the last): training starts from the merged model.
  const merged = policy.finetuningType === 'lora' ? await mergedBase(policy, checkpoint) : null
  const evalSets: EvalSet[] = evalEach ?? (split.eval.length > 0 ? [{ name: null, source: split.eval }] : [])
  return {
    cfg,
    resumeDir,
    resumeState,
    checkpoint: merged?.checkpoint ?? checkpoint,
    tokenizer,
    split,
    evalSets,
    data,
    policy,
    schedule,
    group,
    stepsPerEpoch,
    totalSteps,
    warmup,
    device,
    disposeMerged: merged?.dispose,
  }
}

/**
 * The token store, as LLaMA-Factory's main_process_first: the first process of each node (LOCAL_RANK 0) loads or
 * builds it while the others wait at a barrier, then they open what it wrote. A builder that fails or dies leaves
 * the barrier, which ends the waiting ranks with an error that says so.
 */
function tokenDataOptions(
  cfg: TrainConfig,
  modelDir: string,
  tokenizer: TextTokenizer,
  dataTokenizer: TextTokenizer,
  warn: (message: string) => void,
  log: (message: string) => void,
  signal: AbortSignal | undefined,
): TokenDataOptions {
  return {
    modelDir,
    stage: cfg.stage,
    template: cfg.template,
    defaultSystem: cfg.defaultSystem,
    enableThinking: cfg.enableThinking,
    cutoffLen: cfg.cutoffLen,
    packing: cfg.packing,
    dataset: cfg.dataset,
    evalDataset: cfg.evalDataset,
    evalOnEachDataset: cfg.evalOnEachDataset,
    datasetDir: cfg.datasetDir,
    baseDir: cfg.baseDir,
    maxSamples: cfg.maxSamples,
    mixStrategy: cfg.mixStrategy,
    interleaveProbs: cfg.interleaveProbs,
    seed: cfg.seed,
    tokenizedPath: cfg.tokenizedPath,
    overwriteCache: cfg.overwriteCache,
    workers: cfg.preprocessingNumWorkers,
    tokenizer,
    maxTokenId: Math.max(dataTokenizer.maxId, dataTokenizer.eosId, dataTokenizer.padId),
    blockBos: dataTokenizer.addBosToken ? dataTokenizer.bosId : null,
    signal,
    log,
    warn,
  }
}

async function tokenDataForRank(options: TokenDataOptions, group: ProcessGroup | null): Promise<TokenData> {
  if (!group) return prepareTokenData(options)
  const builds = group.env.localRank === 0
  if (builds) {
    const data = await prepareTokenData(options)
    await group.barrier('releasing the other ranks after preparing the token store')
    return data
  }
  try {
    await group.barrier('waiting for the first process of this node to prepare the token store')
  } catch (error) {
    throw new TrainingError(
      'LLAMAPRO_DATASET',
      `rank ${group.rank}: the first process of this node (LOCAL_RANK 0), which tokenizes the data, failed or died before the token store was ready; its output says why (${(error as Error).message})`,
    )
  }
  const located = await locateTokenData({ ...options, overwriteCache: false })
  if (!located.ready) throw new TrainingError('LLAMAPRO_DATASET', `rank ${group.rank}: the token store ${located.dir} is not there after LOCAL_RANK 0 prepared it (is the cache folder on a disk this rank cannot see?)`)
  return openTokenData(located.dir)
}

/**
 * The model as the loop trains it: loaded with the run's dtype and checkpointing, attached to the process group,
 * its trainable set and optimizer configured (what `llamapro bench <train.yaml>` times, too).
 */
export async function loadTrainingModel(plan: RunPlan, overrides: { gradientCheckpointing?: boolean; checkpointFrozenLayers?: boolean } = {}): Promise<LlamaModel> {
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
  return loraOptimizerGroups(plan.policy.finetuningType === 'lora' ? plan.cfg : { loraplusLrRatio: null }, trainableParams, noWeightDecay)
}

/** Phase 2: the model loaded, its trainable set and optimizer configured, and the progress a resume restores. */
async function prepareModel(plan: RunPlan, warn: (message: string) => void): Promise<{ model: LlamaModel; progress: Progress }> {
  const { cfg, resumeDir, resumeState, policy, split } = plan
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
        warn(`the data gives ${split.train.length} training sequences, the checkpoint was made with ${state.train_sequences}: the data order will differ`)
      }
    } else if (!plan.group || plan.group.isMain) {
      await clearRunOutputs(cfg.outputDir)
      const kept = existsSync(cfg.outputDir) ? await readdir(cfg.outputDir) : []
      if (kept.length > 0) warn(`overwrite_output_dir: kept ${kept.length} file(s) in ${cfg.outputDir} that a training run does not write: ${kept.slice(0, 5).join(', ')}`)
    }
    return { model, progress }
  } catch (error) {
    model.dispose()
    throw error
  }
}

/** What the loop and the finish share: the plan, the model, the progress, and the run's outputs. */
interface Run {
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
  /** Real tokens trained on by this process's run (every rank) since `since` (the loop's start), for throughput; and before it, when resumed. */
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
async function writeEvalResults(dir: string, epoch: number, losses: Record<string, number>, stage: string): Promise<void> {
  const results: Record<string, number> = { epoch, ...losses }
  if (stage === 'pt' && losses.eval_loss !== undefined) results.perplexity = Math.exp(losses.eval_loss)
  await writeFile(join(dir, 'eval_results.json'), `${JSON.stringify(results, null, 2)}\n`)
}

async function openRun(plan: RunPlan, model: LlamaModel, progress: Progress, started: number, options: TrainOptions): Promise<Run> {
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

/** Warns once per layer whose gradient is zero (not learning) or not finite. */
function warnDeadLayers(run: Run, norms: Record<string, number> | undefined, warned: Set<string>): void {
  const step = run.progress.step
  for (const [layer, norm] of Object.entries(norms ?? {})) {
    if ((norm === 0 || !Number.isFinite(norm)) && !warned.has(layer)) {
      warned.add(layer)
      const what = /^\d+$/.test(layer) ? `trainable layer ${layer}` : `trainable module ${layer}`
      run.warn(
        norm === 0
          ? `${what} has a zero gradient at step ${step}: it is not learning (is the loss masked everywhere, or is the learning signal blocked above it?)`
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
export function takeMicroBatches(position: { epoch: number; batchIndex: number }, batchesPerEpoch: number, accumulation: number): [number, number][] {
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
export function microStepOptions(cfg: TrainConfig, step: { lr: number; weight: number; last: boolean; logging: boolean }): NativeTrainStepOptions {
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
      warning: `step ${context.step}: the float16 loss is not finite${where}; update skipped${context.worldSize !== null ? ' on every rank' : ''}, loss scale now ${update.lossScale}`,
    }
  }
  if (update.skipped === 'nonfinite-grad') {
    if (!context.fp16) return { loss, stop: { what: 'the gradient norm', value: update.gradNorm, ranks: [] } }
    return { loss, warning: `step ${context.step}: float16 gradients overflowed; update skipped, loss scale now ${update.lossScale}` }
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
        (plan.group ? `${ranks.length > 0 ? ` (on rank ${ranks.join(', ')} of ${plan.group.worldSize})` : ''}; training stopped on every rank` : '; training stopped') +
        ' without saving this state. ' +
        `The last good checkpoint is ${run.lastCheckpoint ?? 'none (no checkpoint was written yet)'}. ` +
        'Lower learning_rate, check the data, or train in bf16 or float32.',
    )
  const loopStart = performance.now()
  run.tokens.since = loopStart
  const outcome: LoopOutcome = { aborted: false, runLoss: 0, runTokens: 0, evalLoss: null, evalLosses: {}, allReducedBytes: 0, loopSeconds: 0 }
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
        ...(cfg.finetuningType === 'lora' && cfg.loraDropout > 0 ? { dropoutSeed: dropoutSeed(cfg.seed, plan.group?.rank ?? 0, step, j) } : {}),
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
    run.emit({ type: 'step', step: progress.step, totalSteps, loss: stepLoss, lr, gradNorm: update.gradNorm, tokens: stepTokens, seconds: (performance.now() - run.started) / 1000 })

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
          ...(plan.group ? { allreduce_bytes: outcome.allReducedBytes, optimizer_state_bytes: model.optimizer.stateBytes() } : {}),
        }),
      )
      progress.window = { loss: 0, steps: 0 }
      windowTokens = 0
      windowStart = performance.now()
    }
    const done = progress.step
    const epochEnded = done % stepsPerEpoch === 0
    const evalDue = plan.evalSets.length > 0 && split.eval.length > 0 && ((cfg.evalStrategy === 'steps' && done % cfg.evalSteps === 0) || (cfg.evalStrategy === 'epoch' && epochEnded) || done === totalSteps)
    if (evalDue && cfg.evalStrategy !== 'no') {
      const evaluation = await evaluateSets(model, plan.evalSets, { batchSize: cfg.perDeviceEvalBatchSize, padId: plan.tokenizer.padId, group: plan.group })
      outcome.evalLosses = evaluation.losses
      outcome.evalLoss = evaluation.loss
      run.emit({ type: 'eval', step: done, evalLoss: evaluation.loss, losses: evaluation.losses, tokens: evaluation.tokens })
      const rounded = Object.fromEntries(Object.entries(evaluation.losses).map(([key, loss]) => [key, Number(loss.toFixed(6))]))
      await run.log(run.record(rounded))
    }
    const saveDue = (cfg.saveStrategy === 'steps' && done % cfg.saveSteps === 0) || (cfg.saveStrategy === 'epoch' && epochEnded)
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
    if (cfg.saveDelta) await writeDelta(model, join(cfg.outputDir, 'delta'), { baseModel: cfg.modelNameOrPath, dtype: checkpoint.dtype, trainable: policy.trainable })
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
    await writeFile(join(cfg.outputDir, outcome.aborted ? 'interrupted_results.json' : 'all_results.json'), `${JSON.stringify(results, null, 2)}\n`)
    if (!outcome.aborted && Object.keys(outcome.evalLosses).length > 0) await writeEvalResults(cfg.outputDir, results.epoch, outcome.evalLosses, cfg.stage)
    if (cfg.plotLoss) await writeLossPlot(cfg.outputDir, progress.logHistory, run.warn)
    run.runLog!.line(outcome.aborted ? `interrupted at step ${step}; a checkpoint was saved` : `finished: ${step} steps, train_loss ${result.trainLoss.toFixed(4)}`)
    await run.runLog!.close()
    if (run.plan.group) await run.plan.group.barrier('releasing the other ranks after writing the model')
  }
  run.emit({ type: 'done', result })
  return result
}

export async function train(config: TrainConfig | string, options: TrainOptions = {}): Promise<TrainResult> {
  const cfg = typeof config === 'string' ? await loadTrainConfig(config, options.overrides, { cwd: options.cwd }) : config
  const started = performance.now()
  const warn = (message: string) => options.onEvent?.({ type: 'warning', message })
  for (const key of cfg.ignoredKeys) warn(`key "${key}" has no effect in llamapro (accepted for LLaMA-Factory compatibility)`)
  for (const message of cfg.configWarnings ?? []) warn(message)

  const env = options.distributed === undefined ? distributedFromEnv() : options.distributed
  const ranks = env && env.worldSize > 1 ? env : null
  if (cfg.zeroStage === 1 && !ranks) warn('zero_stage: 1 has no effect in a single process (it shards the optimizer state over the ranks of a data-parallel run)')
  // Temporaries that a killed run left in output_dir (half-written checkpoints, the final model's staging folder).
  if (!ranks || ranks.rank === 0) {
    const stale = await removeStaleTemporaries(cfg.outputDir)
    if (stale.length > 0) warn(describeStaleRemoval(stale))
  }
  let device = chooseDevice(cfg.device, cfg.device === 'auto' ? info().cuda : null)
  // Under torchrun each rank of a node takes its own GPU: cuda means cuda:LOCAL_RANK.
  if (ranks && (cfg.device === 'cuda' || (cfg.device === 'auto' && device.device !== 'cpu'))) {
    device = { device: `cuda:${ranks.localRank}`, reason: `${device.reason}, one GPU per rank (LOCAL_RANK ${ranks.localRank})` }
  }
  const group = ranks ? await ProcessGroup.connect(ranks, { timeoutSeconds: cfg.ddpTimeout, device: device.device, bucketBytes: Math.max(1, Math.round(cfg.ddpBucketCapMb * 1024 * 1024)) }) : null
  try {
    const log = (message: string) => options.onEvent?.({ type: 'data', message })
    const plan = await prepareData(cfg, warn, group, device, log, options.signal).catch((error: unknown) => {
      // Streams stopped by the signal throw a generic AbortError: report the interruption the caller asked for.
      if (options.signal?.aborted) throw options.signal.reason instanceof Error ? options.signal.reason : new InterruptedError()
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
      trainableParams: model.parameters().filter((p) => p.requiresGrad).reduce((s, p) => s + p.numel, 0),
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
    if (tensorboard) run.emit({ type: 'report', message: `TensorBoard events in ${tensorboard} (tensorboard --logdir ${tensorboard})` })
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
