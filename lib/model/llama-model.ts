/**
 * LlamaModel: a Hugging Face LLaMA-family checkpoint loaded into LibTorch. Every method that touches tensors
 * runs off the main thread and returns a Promise; the event loop keeps running while a model loads or computes.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type Checkpoint, CONFIG_FILE, openCheckpoint } from '../checkpoint/checkpoint.js'
import { type ModelConfig, parseModelConfig } from '../checkpoint/config.js'
import {
  MODEL_DTYPES,
  type ModelDtype,
  modelDtypeSize,
  parseModelDtype,
  toSafetensorsDtype,
} from '../checkpoint/dtypes.js'
import { copySideFiles } from '../checkpoint/side-files.js'
import { DEFAULT_SHARD_SIZE } from '../checkpoint/shards.js'
import { configJson, writeShardedSafetensors } from '../checkpoint/write-shards.js'
import { LlamaproError } from '../errors.js'
import { expandedRawConfig } from '../expand/expanded-config.js'
import { planExpansion } from '../expand/plan.js'
import type { GenerateInput, GenerateOptions, GenerationChunk, GenerationResult } from '../generate/generate-types.js'
import { EXPANSION_RECORD_FILE, type ExpansionRecord, expansionRecord, readExpansionRecord } from '../expand/record.js'
import type {
  NativeModelHandle,
  NativeModelOptions,
  NativeModelSpec,
  NativeParameter,
  NativeReadItem,
  NativeTrainStepOptions,
  NativeTrainStepResult,
} from '../native/binding.js'
import { callNative, callNativeSync } from '../native/call.js'
import { native } from '../native/load.js'
import { checkOutputDir, writeFolderAtomically } from '../util/atomic-dir.js'
import { parseSize } from '../util/size.js'
import {
  type AdapterFolder,
  ADAPTER_WEIGHTS_FILE,
  type LoraAdapterConfig,
  PEFT_PREFIX,
  adapterLoadItems,
  readAdapter,
  writeAdapterConfig,
} from '../adapters/peft-adapter.js'
import { encodeSafetensorsHeader } from '../checkpoint/safetensors.js'
import { GradientSync } from './gradient-sync.js'
import { ModelOptimizer } from './model-optimizer.js'
import { nativeSpec } from './native-spec.js'
import { type TokenBatch, flattenBatch } from './token-batch.js'

export type Device = 'cpu' | 'cuda' | `cuda:${number}`

export interface LoadOptions {
  /** Where the weights live (default 'cpu'). 'cuda' needs a LibTorch built with CUDA and a visible GPU. */
  device?: Device
  /**
   * The dtype of the weights in memory and of the computation. Default: float32 on the CPU (LibTorch's CPU
   * half-precision kernels are slow), the checkpoint's own dtype on a GPU.
   */
  dtype?: ModelDtype
  /**
   * Activation checkpointing (default true, as LLaMA-Factory's disable_gradient_checkpointing: false): each
   * decoder layer that holds a trainable parameter keeps only its input and is recomputed in backward, as
   * LLaMA-Factory does; frozen layers keep what their input gradient needs. Costs one more forward pass of the
   * trainable layers; results are the same.
   */
  gradientCheckpointing?: boolean
  /**
   * With checkpointing, also recompute the frozen layers backward passes through (default false): the least
   * activation memory (one layer input each), for one more forward pass of every such layer — in a LLaMA-Pro
   * model most of them.
   */
  checkpointFrozenLayers?: boolean
  /** A PEFT LoRA adapter folder to apply on top of the weights (unmerged; see loadAdapter). */
  adapter?: string
}

/** The LoRA adapters a model carries (addLora / loadAdapter). */
export interface LoraState {
  config: LoraAdapterConfig
  /** Adapted modules, e.g. model.layers.3.self_attn.q_proj. */
  targets: string[]
  /** Parameters that train in full beside the adapters (PEFT's modules_to_save), saved with the adapter. */
  fullyTrained: string[]
}

export interface AddLoraOptions {
  targets: readonly string[]
  rank: number
  alpha: number
  useRslora?: boolean
  dropout?: number
  /** Seed of lora_A's kaiming-uniform initialisation (default 0). */
  seed?: number
  /** Recorded in adapter_config.json. */
  targetModules?: string[] | string
  modulesToSave?: string[] | null
  fullyTrained?: readonly string[]
  baseModelNameOrPath?: string | null
}

export interface RandomModelOptions extends LoadOptions {
  seed?: number
  /** Standard deviation of the normal init of weight matrices (default: config initializer_range or 0.02). */
  std?: number
}

export interface SaveOptions {
  /** Largest shard, as transformers' max_shard_size: '5GB' (default), '500MB', or bytes. */
  shardSize?: string | number
  /** Dtype of the saved tensors. Default: the dtype of the checkpoint the model was loaded from. */
  dtype?: ModelDtype
  /** Replace a non-empty output folder (default false: that is an error). */
  overwrite?: boolean
  /** Told when temporaries of `dir` left by killed processes were removed (default: a process warning). */
  onWarning?: (message: string) => void
}

export interface SaveResult {
  dir: string
  files: string[]
  bytes: number
}

export type ParameterInfo = NativeParameter

export interface ForwardResult {
  logits: Float32Array
  shape: [number, number, number]
}

/** A batch as lib/data collates it: row-major ids and labels (-100 = not a target), checked against the vocabulary. */
export interface FlatTokenBatch {
  ids: Int32Array
  labels: Int32Array
  batch: number
  seq: number
}

/** What one training micro-step is told: learning rate and AdamW settings, clipping, loss weight, whether to update. */
export type TrainStepOptions = NativeTrainStepOptions
/** What one training micro-step reports (lib/train reads loss, tokens, skipped, gradNorm, lossScale, …). */
export type TrainStepResult = NativeTrainStepResult

/** Creates the native model off the JS thread (CUDA initialisation and parameter allocation can take seconds). */
async function createNativeModel(spec: NativeModelSpec, options: NativeModelOptions): Promise<NativeModelHandle> {
  return callNative('creating the model', () => native().NativeModel.create(spec, options))
}

const DEVICE_PATTERN = /^(cpu|cuda|cuda:\d+)$/

function checkLoadOptions(
  options: LoadOptions,
  fallbackDtype: ModelDtype,
): { device: Device; dtype: ModelDtype; gradientCheckpointing: boolean; checkpointFrozenLayers: boolean } {
  const device = options.device ?? 'cpu'
  if (typeof device !== 'string' || !DEVICE_PATTERN.test(device)) {
    throw new LlamaproError('LLAMAPRO_ARG', `device must be 'cpu', 'cuda' or 'cuda:<n>', got ${JSON.stringify(device)}`)
  }
  const dtype = options.dtype ?? (device === 'cpu' ? 'float32' : fallbackDtype)
  if (!MODEL_DTYPES.includes(dtype)) {
    throw new LlamaproError(
      'LLAMAPRO_ARG',
      `dtype must be one of ${MODEL_DTYPES.join(', ')}, got ${JSON.stringify(dtype)}`,
    )
  }
  const gradientCheckpointing = options.gradientCheckpointing ?? true
  if (typeof gradientCheckpointing !== 'boolean') {
    throw new LlamaproError(
      'LLAMAPRO_ARG',
      `gradientCheckpointing must be true or false, got ${JSON.stringify(gradientCheckpointing)}`,
    )
  }
  const checkpointFrozenLayers = options.checkpointFrozenLayers ?? false
  if (typeof checkpointFrozenLayers !== 'boolean') {
    throw new LlamaproError(
      'LLAMAPRO_ARG',
      `checkpointFrozenLayers must be true or false, got ${JSON.stringify(checkpointFrozenLayers)}`,
    )
  }
  return { device, dtype, gradientCheckpointing, checkpointFrozenLayers }
}

export class LlamaModel {
  /** The parsed, validated config.json. */
  get config(): ModelConfig {
    return this.#config
  }
  /** config.json as read (updated by insertBlocks); written back by save(). */
  get rawConfig(): Readonly<Record<string, unknown>> {
    return this.#rawConfig
  }
  readonly device: Device
  readonly dtype: ModelDtype
  /** The folder the model was loaded from, if any: its tokenizer and generation files are copied on save. */
  readonly sourceDir: string | undefined
  /** The dtype of the checkpoint it was loaded from (the default dtype for save). */
  readonly sourceDtype: ModelDtype
  /** Set when blocks were inserted (insertBlocks) or the checkpoint carried an expansion record. */
  expansion: ExpansionRecord | undefined

  #handle: NativeModelHandle | undefined
  #optimizer: ModelOptimizer | undefined
  #gradientSync: GradientSync | undefined
  #lora: LoraState | undefined
  #config: ModelConfig
  #rawConfig: Record<string, unknown>

  private constructor(
    handle: NativeModelHandle,
    config: ModelConfig,
    rawConfig: Record<string, unknown>,
    init: { device: Device; dtype: ModelDtype; sourceDir?: string; sourceDtype: ModelDtype },
  ) {
    this.#handle = handle
    this.#config = config
    this.#rawConfig = rawConfig
    this.device = init.device
    this.dtype = init.dtype
    this.sourceDir = init.sourceDir
    this.sourceDtype = init.sourceDtype
  }

  /** Loads a Hugging Face model folder (config.json + safetensors, single or sharded). */
  static async load(dir: string, options: LoadOptions = {}): Promise<LlamaModel> {
    const checkpoint = await openCheckpoint(dir)
    const model = await LlamaModel.fromCheckpoint(checkpoint, options)
    if (options.adapter !== undefined) {
      try {
        await model.loadAdapter(options.adapter)
      } catch (error) {
        model.dispose()
        throw error
      }
    }
    return model
  }

  /** Loads an already opened (validated) checkpoint. */
  static async fromCheckpoint(checkpoint: Checkpoint, options: LoadOptions = {}): Promise<LlamaModel> {
    const { device, dtype, gradientCheckpointing, checkpointFrozenLayers } = checkLoadOptions(options, checkpoint.dtype)
    const handle = await createNativeModel(nativeSpec(checkpoint.config), {
      device,
      dtype,
      gradientCheckpointing,
      checkpointFrozenLayers,
    })
    const model = new LlamaModel(
      handle,
      checkpoint.config,
      { ...checkpoint.rawConfig },
      {
        device,
        dtype,
        sourceDir: checkpoint.dir,
        sourceDtype: checkpoint.dtype,
      },
    )
    try {
      await callNative(`loading ${checkpoint.dir}`, () =>
        handle.load(
          checkpoint.tensors.map((t) => ({
            name: t.name,
            file: t.file,
            offset: t.offset,
            nbytes: t.nbytes,
            dtype: t.dtype,
            shape: t.shape,
          })),
        ),
      )
    } catch (error) {
      model.dispose()
      throw error
    }
    model.expansion = await readExpansionRecord(checkpoint.dir)
    return model
  }

  /**
   * A model with random weights from a config.json object (as transformers initialises one: normal(0, std)
   * matrices, unit norm weights, zero biases). Used for benchmarks and the demo's base model.
   */
  static async random(rawConfig: Record<string, unknown>, options: RandomModelOptions = {}): Promise<LlamaModel> {
    const config = parseModelConfig(rawConfig, 'config')
    const declared = config.dtype ?? 'float32'
    const { device, dtype, gradientCheckpointing, checkpointFrozenLayers } = checkLoadOptions(options, declared)
    const range = typeof rawConfig.initializer_range === 'number' ? rawConfig.initializer_range : 0.02
    const handle = await createNativeModel(nativeSpec(config), {
      device,
      dtype,
      gradientCheckpointing,
      checkpointFrozenLayers,
    })
    const model = new LlamaModel(
      handle,
      config,
      { ...rawConfig },
      { device, dtype, sourceDtype: options.dtype ?? declared },
    )
    try {
      await callNative('initialising random weights', () => handle.initRandom(options.seed ?? 0, options.std ?? range))
    } catch (error) {
      model.dispose()
      throw error
    }
    return model
  }

  /**
   * @internal The raw addon object: for the KV cache (lib/generate) and for tests that call the addon directly.
   * The rest of lib/ talks to the typed methods below; stripInternal keeps this out of the published .d.ts.
   */
  get native(): NativeModelHandle {
    if (!this.#handle) throw new LlamaproError('LLAMAPRO_DISPOSED', 'this model was disposed')
    return this.#handle
  }

  /** @internal The AdamW optimizer of the trainable parameters (lib/train). */
  get optimizer(): ModelOptimizer {
    return (this.#optimizer ??= new ModelOptimizer(() => this.native))
  }

  /** @internal How the gradients are combined across ranks (none, all-reduce, ZeRO-1) (lib/train, lib/bench). */
  get gradientSync(): GradientSync {
    return (this.#gradientSync ??= new GradientSync(() => this.native))
  }

  /**
   * @internal One micro-batch of training: forward, backward, and with `options.update` the gradient sync, clipping
   * and the optimizer step, in one native call off the JS thread. `batch` is already flattened and checked.
   */
  async trainStep(batch: FlatTokenBatch, options: TrainStepOptions): Promise<TrainStepResult> {
    return callNative('training step', () =>
      this.native.trainStep(batch.ids, batch.labels, batch.batch, batch.seq, options),
    )
  }

  /** @internal lossDetail() of an already flattened (collated) batch: the evaluation loops use it. */
  async batchLoss(batch: FlatTokenBatch, what = 'evaluation'): Promise<{ loss: number; tokens: number }> {
    return callNative(what, () => this.native.loss(batch.ids, batch.labels, batch.batch, batch.seq))
  }

  /** @internal Shape and dtype of a parameter or optimizer state tensor ("exp_avg:<name>", …). */
  tensorInfo(name: string): { shape: number[]; dtype: ModelDtype } {
    return callNativeSync('tensorInfo', () => this.native.tensorInfo(name))
  }

  /** @internal max |x| of each named tensor (0 for an all-zero tensor). */
  async tensorMaxAbs(names: readonly string[]): Promise<number[]> {
    return callNative('tensorMaxAbs', () => this.native.tensorMaxAbs([...names]))
  }

  /** @internal For each [name here, name in other]: max |a - b| in float64. */
  async maxAbsDifference(other: LlamaModel, pairs: readonly (readonly [string, string])[]): Promise<number[]> {
    return callNative('maxAbsDifference', () =>
      this.native.maxAbsDifference(
        other.native,
        pairs.map(([a, b]) => [a, b] as [string, string]),
      ),
    )
  }

  /** @internal Reads tensors (parameters or optimizer state) from safetensors byte ranges into the model. */
  async loadTensors(what: string, items: readonly NativeReadItem[]): Promise<void> {
    await callNative(what, () => this.native.load([...items]))
  }

  /**
   * Bytes this model holds now: its parameters, their gradients and the optimizer state (synchronous: a metadata read).
   */
  memory(): { parameterBytes: number; gradientBytes: number; optimizerBytes: number } {
    return callNativeSync('memory', () => this.native.memory())
  }

  /** Every parameter with its Hugging Face name, shape, dtype, size and whether it trains. */
  parameters(): ParameterInfo[] {
    return this.native.parameters()
  }

  /** Logits for a batch of token ids: Float32Array of shape [batch, seq, vocab]. */
  async forward(ids: TokenBatch): Promise<ForwardResult> {
    const batch = flattenBatch(ids, 'ids', this.#config.vocabSize)
    const logits = await callNative('forward', () => this.native.forward(batch.data, batch.batch, batch.seq))
    return { logits, shape: [batch.batch, batch.seq, this.#config.vocabSize] }
  }

  /**
   * Mean causal-LM cross-entropy: position t predicts token t+1; labels of -100 are ignored. Labels default to
   * the ids. Returns 0 when no label is counted.
   */
  async loss(ids: TokenBatch, labels?: TokenBatch): Promise<number> {
    return (await this.lossDetail(ids, labels)).loss
  }

  /** loss() plus the number of target tokens it averaged over. */
  async lossDetail(ids: TokenBatch, labels?: TokenBatch): Promise<{ loss: number; tokens: number }> {
    const x = flattenBatch(ids, 'ids', this.#config.vocabSize)
    const y = labels === undefined ? x : flattenBatch(labels, 'labels', this.#config.vocabSize, true)
    if (y.batch !== x.batch || y.seq !== x.seq) {
      throw new LlamaproError(
        'LLAMAPRO_ARG',
        `labels have shape [${y.batch}, ${y.seq}] but ids have [${x.batch}, ${x.seq}]`,
      )
    }
    return callNative('loss', () => this.native.loss(x.data, y.data, x.batch, x.seq))
  }

  /**
   * Turns activation checkpointing on or off for the following training steps (see LoadOptions): the decoder
   * layers that train are recomputed, and with `options.frozenLayers` (default: as loaded) the frozen ones
   * backward passes through (those above the lowest trainable parameter) as well.
   */
  setGradientCheckpointing(on: boolean, options: { frozenLayers?: boolean } = {}): void {
    if (typeof on !== 'boolean')
      throw new LlamaproError(
        'LLAMAPRO_ARG',
        `setGradientCheckpointing: expected true or false, got ${JSON.stringify(on)}`,
      )
    const frozen = options.frozenLayers
    if (frozen !== undefined && typeof frozen !== 'boolean') {
      throw new LlamaproError(
        'LLAMAPRO_ARG',
        `setGradientCheckpointing: frozenLayers must be true or false, got ${JSON.stringify(frozen)}`,
      )
    }
    callNativeSync('setGradientCheckpointing', () => this.native.setGradientCheckpointing(on, frozen))
  }

  /**
   * Makes exactly `names` trainable (requires_grad); everything else is frozen and holds no gradient or optimizer
   * state. Trainable parameters are kept in `masterDtype` (float32 master weights by default; pass the model's
   * dtype for pure bf16 training).
   */
  async setTrainable(names: readonly string[], options: { masterDtype?: ModelDtype | null } = {}): Promise<void> {
    const known = new Set(this.parameters().map((p) => p.name))
    const unknown = names.filter((n) => !known.has(n))
    if (unknown.length > 0) {
      throw new LlamaproError(
        'LLAMAPRO_ARG',
        `setTrainable: no parameter named ${unknown
          .slice(0, 3)
          .map((n) => `"${n}"`)
          .join(', ')} (names look like model.layers.0.mlp.down_proj.weight)`,
      )
    }
    const master = options.masterDtype === undefined ? 'float32' : options.masterDtype
    await callNative('setTrainable', () => this.native.setTrainable([...names], master))
  }

  /**
   * Block expansion in memory: after each original layer in `positions` a copy of it is inserted with zero
   * o_proj and down_proj, so the model computes exactly what it did before. Returns the new layer indices.
   */
  async insertBlocks(positions: readonly number[]): Promise<number[]> {
    const plan = planExpansion(this.#config.numLayers, { positions })
    const inserted = await callNative('insertBlocks', () => this.native.insertBlocks(plan.insertAfter))
    this.#rawConfig = expandedRawConfig(this.#rawConfig, this.#config.numLayers, plan.insertAfter)
    this.#config = parseModelConfig(this.#rawConfig, 'config.json (expanded)')
    this.expansion = expansionRecord(plan)
    return inserted
  }

  /** The LoRA adapters this model carries, if any. */
  get lora(): LoraState | undefined {
    return this.#lora
  }

  /**
   * Adds LoRA adapters (PEFT's LoraLayer: W x + scale · B A x, A kaiming-uniform, B zero, so the output is
   * unchanged) to the named linear layers. They are frozen until setTrainable names them. Returns their names.
   */
  async addLora(options: AddLoraOptions): Promise<string[]> {
    if (this.#lora)
      throw new LlamaproError(
        'LLAMAPRO_ARG',
        'addLora: this model already has LoRA adapters (merge them first: llamapro merge --adapter)',
      )
    const { rank, alpha } = options
    if (!Number.isInteger(rank) || rank <= 0)
      throw new LlamaproError('LLAMAPRO_ARG', `addLora: rank must be a positive integer, got ${rank}`)
    if (typeof alpha !== 'number' || !Number.isFinite(alpha))
      throw new LlamaproError('LLAMAPRO_ARG', `addLora: alpha must be a number, got ${alpha}`)
    const names = await callNative('addLora', () =>
      this.native.addLora({
        targets: [...options.targets],
        rank,
        alpha,
        useRslora: options.useRslora ?? false,
        dropout: options.dropout ?? 0,
        seed: options.seed ?? 0,
      }),
    )
    this.#lora = {
      config: {
        r: rank,
        loraAlpha: alpha,
        loraDropout: options.dropout ?? 0,
        useRslora: options.useRslora ?? false,
        targetModules: options.targetModules ?? [...options.targets],
        modulesToSave: options.modulesToSave ?? null,
        baseModelNameOrPath: options.baseModelNameOrPath ?? this.sourceDir ?? null,
      },
      targets: [...options.targets],
      fullyTrained: [...(options.fullyTrained ?? [])],
    }
    return names
  }

  /**
   * Applies a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors): its adapters are added
   * and loaded, and its modules_to_save tensors replace the base ones. `dropout` (default 0) is for training on.
   */
  async loadAdapter(dir: string, options: { dropout?: number } = {}): Promise<AdapterFolder> {
    const adapter = await readAdapter(dir)
    const shapes = new Map(this.parameters().map((p) => [p.name, p.shape]))
    for (const target of adapter.targets) {
      const weight = shapes.get(`${target}.weight`)
      if (!weight)
        throw new LlamaproError(
          'LLAMAPRO_ADAPTER',
          `${adapter.weightsPath}: adapts ${target}, which this model does not have: the adapter belongs to another ` +
            `model`,
        )
      const a = adapter.file.tensors.find((t) => t.name === `${PEFT_PREFIX}${target}.lora_A.weight`)!
      const b = adapter.file.tensors.find((t) => t.name === `${PEFT_PREFIX}${target}.lora_B.weight`)!
      if (a.shape[1] !== weight[1] || b.shape[0] !== weight[0]) {
        throw new LlamaproError(
          'LLAMAPRO_ADAPTER',
          `${adapter.weightsPath}: ${target}: lora_A [${a.shape}] / lora_B [${b.shape}] do not fit its weight ` +
            `[${weight}]: the adapter belongs to another model`,
        )
      }
    }
    for (const name of adapter.fullyTrained) {
      if (!shapes.has(name))
        throw new LlamaproError(
          'LLAMAPRO_ADAPTER',
          `${adapter.weightsPath}: holds ${PEFT_PREFIX}${name}, but this model has no parameter ${name}`,
        )
    }
    await this.addLora({
      targets: adapter.targets,
      rank: adapter.config.r,
      alpha: adapter.config.loraAlpha,
      useRslora: adapter.config.useRslora,
      dropout: options.dropout ?? 0,
      targetModules: adapter.config.targetModules,
      modulesToSave: adapter.config.modulesToSave,
      fullyTrained: adapter.fullyTrained,
      baseModelNameOrPath: adapter.config.baseModelNameOrPath,
    })
    await callNative(`loading ${adapter.weightsPath}`, () => this.native.load(adapterLoadItems(adapter)))
    return adapter
  }

  /** Writes the LoRA adapters (and modules_to_save parameters) as a PEFT adapter folder, atomically. */
  async saveAdapter(
    dir: string,
    options: { overwrite?: boolean; onWarning?: (message: string) => void } = {},
  ): Promise<SaveResult> {
    await checkOutputDir(dir, options.overwrite ?? false, 'pass overwrite: true')
    return writeFolderAtomically(dir, async (tmp) => ({ ...(await this.saveAdapterInto(tmp)), dir }), {
      onWarning: options.onWarning,
    })
  }

  /** saveAdapter without the atomic rename, into an existing folder. Tensors keep their dtype (float32 masters). */
  async saveAdapterInto(dir: string): Promise<SaveResult> {
    const lora = this.#lora
    if (!lora)
      throw new LlamaproError(
        'LLAMAPRO_ARG',
        'saveAdapter: this model has no LoRA adapters (addLora or loadAdapter first)',
      )
    const byName = new Map(this.parameters().map((p) => [p.name, p]))
    const names = [...lora.targets.flatMap((t) => [`${t}.lora_A.weight`, `${t}.lora_B.weight`]), ...lora.fullyTrained]
    const entries = names.map((name) => {
      const p = byName.get(name)!
      return { name, peft: `${PEFT_PREFIX}${name}`, dtype: toSafetensorsDtype(p.dtype), shape: p.shape }
    })
    const header = encodeSafetensorsHeader(
      entries.map((e) => ({ name: e.peft, dtype: e.dtype, shape: e.shape })),
      { format: 'pt' },
    )
    const path = join(dir, ADAPTER_WEIGHTS_FILE)
    await this.writeTensors(
      path,
      header.bytes,
      header.layout.map((l, i) => ({ ...l, name: entries[i]!.name })),
    )
    await writeAdapterConfig(dir, lora.config)
    return { dir, files: [ADAPTER_WEIGHTS_FILE, 'adapter_config.json'], bytes: header.bytes.length + header.dataSize }
  }

  /** Writes a complete Hugging Face model folder (atomically: a temporary folder renamed when complete). */
  async save(dir: string, options: SaveOptions = {}): Promise<SaveResult> {
    await checkOutputDir(dir, options.overwrite ?? false, 'pass overwrite: true')
    return writeFolderAtomically(dir, async (tmp) => ({ ...(await this.saveInto(tmp, options)), dir }), {
      onWarning: options.onWarning,
    })
  }

  /** Writes the model's files into an existing (empty) folder, without the atomic rename. */
  async saveInto(dir: string, options: Omit<SaveOptions, 'overwrite' | 'onWarning'> = {}): Promise<SaveResult> {
    if (this.#lora) {
      throw new LlamaproError(
        'LLAMAPRO_ARG',
        'save: this model carries LoRA adapters; write them with saveAdapter(), or merge them into the base with ' +
          'llamapro merge --adapter',
      )
    }
    const dtype = options.dtype === undefined ? this.sourceDtype : parseModelDtype(options.dtype)
    if (!dtype)
      throw new LlamaproError(
        'LLAMAPRO_ARG',
        `save: dtype must be one of ${MODEL_DTYPES.join(', ')}, got ${JSON.stringify(options.dtype)}`,
      )
    const shardSize = parseSize(options.shardSize ?? DEFAULT_SHARD_SIZE, 'shardSize')
    const stDtype = toSafetensorsDtype(dtype)
    const params = this.parameters()
    const tensors = params.map((p) => ({
      name: p.name,
      dtype: stDtype,
      shape: p.shape,
      nbytes: p.numel * modelDtypeSize(dtype),
    }))
    const totalParameters = params.reduce((sum, p) => sum + p.numel, 0)
    const written = await writeShardedSafetensors(dir, tensors, shardSize, totalParameters, (path, header) =>
      this.writeTensors(path, header.bytes, header.layout),
    )
    await this.writeFolderFiles(dir, dtype)
    return { dir, files: written.files, bytes: written.bytes }
  }

  /**
   * @internal Writes one safetensors file whose header (already encoded) lists parameters or optimizer state
   * ("exp_avg:<name>", "exp_avg_sq:<name>"); the bytes come straight from native tensors.
   */
  async writeTensors(
    path: string,
    header: Uint8Array,
    layout: readonly { name: string; dtype: string; begin: number; end: number }[],
  ): Promise<void> {
    await callNative(`saving ${path}`, () =>
      this.native.save(
        path,
        header,
        layout.map((l) => ({ name: l.name, dtype: l.dtype, begin: l.begin, end: l.end })),
      ),
    )
  }

  /** config.json (with the saved dtype), tokenizer and generation files, and the expansion record. */
  async writeFolderFiles(dir: string, dtype: ModelDtype): Promise<void> {
    const raw: Record<string, unknown> = { ...this.#rawConfig }
    if ('dtype' in raw && !('torch_dtype' in raw)) raw.dtype = dtype
    else raw.torch_dtype = dtype
    if (this.sourceDir) await copySideFiles(this.sourceDir, dir)
    await writeFile(join(dir, CONFIG_FILE), configJson(raw))
    if (this.expansion)
      await writeFile(join(dir, EXPANSION_RECORD_FILE), `${JSON.stringify(this.expansion, null, 2)}\n`)
  }

  /**
   * Generates a reply to a text prompt, chat messages (rendered by the training templates) or token ids, with a
   * KV cache; greedy unless sampling is asked for. See lib/generate/generate.ts for the options.
   */
  async generate(input: GenerateInput, options: GenerateOptions = {}): Promise<GenerationResult> {
    const { generate } = await import('../generate/generate.js')
    return generate(this, input, options)
  }

  /** generate() as an async iterator of { tokenId, text } chunks; its return value is the result. */
  async *generateStream(
    input: GenerateInput,
    options: GenerateOptions = {},
  ): AsyncGenerator<GenerationChunk, GenerationResult> {
    const { generateStream } = await import('../generate/generate.js')
    return yield* generateStream(this, input, options)
  }

  /** Frees the native memory now (otherwise it goes when the object is garbage-collected). */
  dispose(): void {
    this.#handle?.dispose()
    this.#handle = undefined
  }
}
