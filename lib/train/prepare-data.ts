/**
 * Phase 1 of a run: everything a user can get wrong is checked, and the data prepared (token store or stream, the
 * eval sets, the schedule, the freeze or LoRA policy), before any model is loaded.
 */
import { existsSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { type Checkpoint, openCheckpoint } from '../checkpoint/checkpoint.js'
import { BatchSchedule, splitSource } from '../data/batches.js'
import { ConcatSource, type SequenceSource } from '../data/store/reader.js'
import {
  type TokenData,
  type TokenDataOptions,
  locateTokenData,
  openTokenData,
  prepareTokenData,
} from '../data/store/token-data.js'
import { type StreamSchedule, openStreaming } from '../data/streaming.js'
import { isStore } from '../data/store/reader.js'
import { chatTemplate, pretrainTokenizer } from '../data/template.js'
import { type TextTokenizer, loadTokenizer } from '../data/tokenizer.js'
import { type TrainablePlan as FreezePolicy, freezePolicy } from '../policy/freeze-policy.js'
import { OutputExistsError } from '../util/atomic-dir.js'
import { type TrainerState, listCheckpoints, readTrainerState } from './checkpoints.js'
import type { TrainConfig } from './config.js'
import { type LoraTrainingPolicy, loraTrainingPolicy, mergedBase } from './lora-setup.js'
import type { DeviceChoice } from './device.js'
import { TrainingError } from './errors.js'
import { checkOutputDirSeparate } from './output-dir.js'
import { warmupStepsFor } from './schedule.js'
import type { ProcessGroup } from '../distributed/process-group.js'
import { RankSchedule } from '../distributed/sharding.js'
import type { EvalSet } from './evaluate.js'

async function resolveResume(config: TrainConfig): Promise<string | null> {
  if (config.resumeFromCheckpoint === null) return null
  if (config.resumeFromCheckpoint === true) {
    const latest = (await listCheckpoints(config.outputDir)).pop()
    if (!latest)
      throw new TrainingError(
        'LLAMAPRO_RESUME',
        `resume_from_checkpoint: true, but ${config.outputDir} holds no checkpoint-<step> folder`,
      )
    return latest.path
  }
  if (!existsSync(config.resumeFromCheckpoint)) {
    throw new TrainingError('LLAMAPRO_RESUME', `resume_from_checkpoint: ${config.resumeFromCheckpoint} does not exist`)
  }
  return config.resumeFromCheckpoint
}

/** A checkpoint resumes exactly only with the settings that decide the data order and what one step is. */
function checkResumable(state: TrainerState, cfg: TrainConfig, dir: string, worldSize: number): void {
  if ((state.world_size ?? 1) !== worldSize) {
    const saved = state.world_size ?? 1
    throw new TrainingError(
      'LLAMAPRO_RESUME',
      `${dir} was trained on ${saved} rank(s), this run has ${worldSize}: each rank's share of the data and the step ` +
        `size depend on it, ` +
        `so the run would not continue where it stopped. Resume with ${saved} rank(s) (llamapro train … ` +
        `--nproc-per-node ${saved}, or WORLD_SIZE=${saved}), ` +
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
      throw new TrainingError(
        'LLAMAPRO_RESUME',
        `${dir} was trained with ${key}: ${saved}, this configuration says ${now}; resume with ${key}: ${saved}`,
      )
    }
  }
}

/**
 * Token ids index the embedding table, so an id at or above vocab_size is refused here, with the tokenizer named
 * as the cause, before the model is loaded (the native side checks again, but could only name a position).
 */
function checkTokenIds(
  maxStoreId: number,
  tokenizer: TextTokenizer,
  vocabSize: number,
  modelDir: string,
  warn: (message: string) => void,
): void {
  const largest = Math.max(tokenizer.padId, maxStoreId)
  if (largest >= vocabSize) {
    throw new TrainingError(
      'LLAMAPRO_TOKENIZER',
      `the tokenizer in ${modelDir} gives token id ` +
        `${largest}${largest === tokenizer.padId ? ' (its pad token)' : ''}, but the model's vocab_size is ` +
        `${vocabSize} ` +
        `(valid ids 0..${vocabSize - 1}): the tokenizer does not belong to this model, or tokens were added without ` +
        `resizing the embeddings`,
    )
  }
  if (tokenizer.maxId >= vocabSize) {
    warn(
      `the tokenizer knows ids up to ${tokenizer.maxId}, above the model's vocab_size ${vocabSize}; this data does ` +
        `not use them`,
    )
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
    throw new OutputExistsError(
      cfg.outputDir,
      'set overwrite_output_dir: true (or resume_from_checkpoint to continue a run)',
    )
  }
  if (cfg.fp16 && device.device === 'cpu') {
    throw new TrainingError(
      'LLAMAPRO_TRAIN_CONFIG',
      'fp16: true needs a CUDA device (float16 math on the CPU is slow and needs loss scaling); use bf16 or neither ' +
        'on the CPU',
    )
  }
  const resumeState = resumeDir ? await readTrainerState(resumeDir) : undefined
  if (resumeState) checkResumable(resumeState, cfg, resumeDir!, group?.worldSize ?? 1)
  // A LoRA checkpoint holds the adapter, not the model: the base model always comes from model_name_or_path.
  const modelDir = cfg.finetuningType === 'lora' ? cfg.modelNameOrPath : (resumeDir ?? cfg.modelNameOrPath)
  const checkpoint = await openCheckpoint(modelDir)
  const tokenizer = await loadTokenizer(modelDir)
  // The template is checked here, where its warnings reach the user; the workers that tokenize build their own.
  // LLaMA-Factory's template also sets the data's EOS (replace_eos), for pt as for sft.
  const template =
    cfg.stage === 'sft'
      ? chatTemplate(cfg.template, tokenizer, warn, {
          defaultSystem: cfg.defaultSystem,
          enableThinking: cfg.enableThinking,
        })
      : undefined
  const dataTokenizer = template?.tokenizer ?? pretrainTokenizer(cfg.template, tokenizer)
  const options = tokenDataOptions(cfg, modelDir, tokenizer, dataTokenizer, warn, log, signal)
  let data: TokenData | null = null
  let split: RunPlan['split']
  let evalEach: { name: string; source: SequenceSource }[] | null = null
  let schedule: RankSchedule | StreamSchedule
  if (cfg.streaming && !(cfg.tokenizedPath !== null && isStore(cfg.tokenizedPath))) {
    if (cfg.tokenizedPath !== null) {
      throw new TrainingError(
        'LLAMAPRO_TRAIN_CONFIG',
        `tokenized_path ${cfg.tokenizedPath} holds no token store, and streaming: true writes none: set streaming: ` +
          `false to build the store there (LLaMA-Factory: "Turn off \`streaming\` when saving dataset to disk."), or ` +
          `remove tokenized_path`,
      )
    }
    checkTokenIds(options.maxTokenId, tokenizer, checkpoint.config.vocabSize, modelDir, warn)
    const streamed = await openStreaming(options, {
      bufferSize: cfg.bufferSize,
      valSize: cfg.valSize,
      batchSize: cfg.perDeviceTrainBatchSize,
      seed: cfg.seed,
      padId: tokenizer.padId,
      rank: group?.rank ?? 0,
      worldSize: group?.worldSize ?? 1,
    })
    schedule = streamed
    split = { train: null, eval: streamed.evalSource }
    evalEach = streamed.evalEach
    log(
      `streaming: tokenizing while training with ${options.workers ?? 'all'} worker(s), shuffle buffer ` +
        `${cfg.bufferSize} sequences${split.eval.length ? `, ${split.eval.length} held out for evaluation` : ''}`,
    )
  } else {
    if (cfg.streaming)
      warn(
        `tokenized_path ${cfg.tokenizedPath} holds a token store: it is read from disk and streaming: true has no ` +
          `effect (as LLaMA-Factory, which loads a saved dataset as it is)`,
      )
    data = await tokenDataForRank(options, group)
    const manifest = data.train.manifest
    if (!data.reused && manifest.droppedExamples > 0)
      warn(
        `${manifest.droppedExamples} example(s) had no response tokens left within cutoff_len ${cfg.cutoffLen} and ` +
          `were skipped`,
      )
    const evalMaxId = Math.max(
      data.eval?.manifest.maxTokenId ?? 0,
      ...(data.evalEach ?? []).map((e) => e.store.manifest.maxTokenId),
    )
    checkTokenIds(Math.max(manifest.maxTokenId, evalMaxId), tokenizer, checkpoint.config.vocabSize, modelDir, warn)
    evalEach = data.evalEach?.map(({ name, store }) => ({ name, source: store as SequenceSource })) ?? null
    const evalSource = evalEach ? new ConcatSource(evalEach.map((e) => e.source)) : data.eval
    split = evalSource
      ? { train: data.train as SequenceSource, eval: evalSource }
      : splitSource(data.train, cfg.valSize, cfg.seed)
    if (cfg.evalOnEachDataset && cfg.evalDataset.length > 0 && !evalEach) {
      warn(
        `eval_on_each_dataset: true, but the token store ${data.dir} was built with the eval datasets merged: one ` +
          `eval_loss is logged (rebuild it with overwrite_cache: true for one loss per dataset)`,
      )
    }
    if (split.train!.length === 0) {
      throw new TrainingError(
        'LLAMAPRO_DATASET',
        `no training sequences: the data gave ${data.train.length} sequence(s) of up to ${cfg.cutoffLen} tokens`,
      )
    }
    const global = new BatchSchedule(split.train!, cfg.perDeviceTrainBatchSize, cfg.seed, tokenizer.padId)
    schedule = new RankSchedule(global, group?.rank ?? 0, group?.worldSize ?? 1)
  }
  const names = checkpoint.tensors.map((t) => t.name)
  const policy =
    cfg.finetuningType === 'lora'
      ? await loraTrainingPolicy(cfg, checkpoint)
      : freezePolicy(checkpoint.config.numLayers, names, { ...cfg, finetuningType: cfg.finetuningType })
  if (policy.trainable.length === 0) {
    throw new TrainingError(
      'LLAMAPRO_POLICY',
      'nothing to train: this strategy selects no parameter (freeze_trainable_layers: 0 and no freeze_extra_modules?)',
    )
  }

  // A stream's epoch has no known length: as transformers with an IterableDataset, an "epoch" is max_steps.
  const stepsPerEpoch =
    cfg.streaming && data === null
      ? cfg.maxSteps
      : Math.max(1, Math.ceil(schedule.batchesPerEpoch / cfg.gradientAccumulationSteps))
  const totalSteps = cfg.maxSteps > 0 ? cfg.maxSteps : Math.max(1, Math.ceil(cfg.numTrainEpochs * stepsPerEpoch))
  const warmup = warmupStepsFor(totalSteps, cfg.warmupSteps, cfg.warmupRatio)
  // adapter_name_or_path to merge first (create_new_adapter, or all but the last): training starts from the merged
  // model.
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
      `rank ${group.rank}: the first process of this node (LOCAL_RANK 0), which tokenizes the data, failed or died ` +
        `before the token store was ready; its output says why (${(error as Error).message})`,
    )
  }
  const located = await locateTokenData({ ...options, overwriteCache: false })
  if (!located.ready)
    throw new TrainingError(
      'LLAMAPRO_DATASET',
      `rank ${group.rank}: the token store ${located.dir} is not there after LOCAL_RANK 0 prepared it (is the cache ` +
        `folder on a disk this rank cannot see?)`,
    )
  return openTokenData(located.dir)
}
