/** The raw shape of the compiled addon. lib/ wraps it; nothing outside lib/ calls it directly. */
import type { NativeModelContract, NativeModelSpec } from '../checkpoint/model-contract.js'
import type { KernelOptions } from './kernel-options.js'

export interface RawRuntimeInfo {
  torchVersion: string
  torchLibrary: string
  torchCmakeDir: string
  cuda: {
    compiled: boolean
    available: boolean
    devices: { index: number; name: string; totalMemory: number; computeCapability: string }[]
  }
  threads: { intraOp: number; interOp: number; configured: number; blas?: number }
  blas: { name: string; library: string; buildSetting: string; config?: string }
  cpuGemm: { library: 'onednn' | 'blas'; threads: number }
  parallelInfo: string
  buildConfig: string
}

/** lib/model/native-spec.ts builds it from a validated ModelConfig; lib/checkpoint/model-contract.ts declares it. */
export type { NativeModelSpec }

export interface NativeModelOptions {
  device: string
  dtype: string
  gradientCheckpointing?: boolean
  checkpointFrozenLayers?: boolean
}

export interface NativeReadItem {
  name: string
  file: string
  offset: number
  nbytes: number
  dtype: string
  shape: number[]
}

export interface NativeWriteItem {
  name: string
  dtype: string
  begin: number
  end: number
}

export interface NativeParameter {
  name: string
  shape: number[]
  dtype: 'float32' | 'bfloat16' | 'float16'
  numel: number
  requiresGrad: boolean
}

export interface NativeTrainStepOptions {
  lossMultiplier: number
  update: boolean
  lr: number
  beta1: number
  beta2: number
  eps: number
  weightDecay: number
  maxGradNorm: number
  reportParamNorms: boolean
  /** On the update: this rank was asked to stop; with a process group the result says whether any rank was. */
  stopRequested?: boolean
  /** LoRA dropout: the masks of this micro-step are drawn from generators seeded with this (exact resume). */
  dropoutSeed?: number
}

/** Why an optimizer step was skipped — on every rank alike, since the ranks decide on numbers summed over them. */
export type NativeSkipReason = 'nonfinite-loss' | 'nonfinite-grad'

export interface NativeTrainStepResult {
  /** This micro-batch's mean loss over its target tokens (NaN or ±Infinity when it is not finite). */
  loss: number
  /** This micro-batch's target tokens. */
  tokens: number
  updated: boolean
  /** On the update micro-step: why the optimizer step was skipped (every rank skips it), or null. */
  skipped: NativeSkipReason | null
  gradNorm: number
  /** Host wall time of the update (norms, clipping, AdamW), in ms. */
  updateMs: number
  lossScale: number
  paramGradNorms?: Record<string, number>
  /**
   * On the update: the optimizer step's loss, Σ loss × lossMultiplier over its micro-batches, summed over the ranks.
   */
  stepLoss?: number
  /** On the update: whether any rank passed stopRequested. */
  stopRequested?: boolean
  /** On the update: the ranks whose loss was not finite in this step ([] when none). */
  nonfiniteLossRanks?: number[]
  /** With a process group attached, on the update: the gradient bytes this rank all-reduced, and the time it took. */
  reducedBytes?: number
  reduceMs?: number
}

export interface NativeProcessGroupOptions {
  rank: number
  worldSize: number
  localRank: number
  masterAddr: string
  masterPort: number
  timeoutMs: number
  backend: 'gloo' | 'nccl'
  bucketBytes: number
}

/** One rank's c10d objects (TCPStore + process group); every method is a collective. */
export interface NativeProcessGroupHandle {
  connect(options: NativeProcessGroupOptions): Promise<void>
  allReduce(values: Float64Array): Promise<Float64Array>
  barrier(): Promise<void>
  /** Closes this rank's c10d objects off the JS thread (with a dead peer that is not instant). */
  destroy(): Promise<void>
}

export interface NativeOptimizerConfig {
  noDecay: string[]
  step: number
  lossScaling: boolean
  lossScale?: number
  goodSteps?: number
  /** Per-parameter learning-rate factors (LoRA+); replaces the previous ones. */
  lrScale?: Record<string, number>
}

/** native/lora.h: adapters on linear layers (module names such as model.layers.3.self_attn.q_proj). */
export interface NativeLoraOptions {
  targets: string[]
  rank: number
  alpha: number
  useRslora: boolean
  dropout: number
  seed: number
}

export interface NativeModelHandle {
  parameters(): NativeParameter[]
  load(items: NativeReadItem[]): Promise<void>
  initRandom(seed: number, std: number): Promise<void>
  forward(ids: Int32Array, batch: number, seq: number): Promise<Float32Array>
  loss(ids: Int32Array, labels: Int32Array, batch: number, seq: number): Promise<{ loss: number; tokens: number }>
  save(path: string, header: Uint8Array, items: NativeWriteItem[]): Promise<void>
  setTrainable(names: string[], masterDtype: string | null): Promise<void>
  configureOptimizer(options: NativeOptimizerConfig): void
  /** zeroStage 1: ZeRO stage 1 over the group (AdamW state sharded over the ranks). */
  attachProcessGroup(group: NativeProcessGroupHandle | null, options?: { zeroStage: 0 | 1 }): void
  /** ZeRO-1, a collective: rank 0 receives the whole AdamW state (for a checkpoint); a no-op without ZeRO. */
  gatherOptimizerState(): Promise<void>
  /** ZeRO-1: keeps this rank's shard of whole per-parameter AdamW state and frees the rest; a no-op without ZeRO. */
  scatterOptimizerState(): Promise<void>
  optimizerState(): { step: number; lossScale: number; goodSteps: number; names: string[] }
  trainStep(
    ids: Int32Array,
    labels: Int32Array,
    batch: number,
    seq: number,
    options: NativeTrainStepOptions,
  ): Promise<NativeTrainStepResult>
  setGradientCheckpointing(on: boolean, frozenLayers?: boolean): void
  insertBlocks(positions: number[]): Promise<number[]>
  /** Adds frozen LoRA adapters (A kaiming-uniform, B zero); returns their parameter names. */
  addLora(options: NativeLoraOptions): Promise<string[]>
  tensorInfo(name: string): { shape: number[]; dtype: 'float32' | 'bfloat16' | 'float16' }
  tensorBytes(name: string, dtype: string): Promise<Uint8Array>
  tensorMaxAbs(names: string[]): Promise<number[]>
  maxAbsDifference(other: NativeModelHandle, pairs: [string, string][]): Promise<number[]>
  gradients(): Promise<{ name: string; norm: number }[]>
  memory(): { parameterBytes: number; gradientBytes: number; optimizerBytes: number }
  dispose(): void
}

/** Incremental decoding state of one sequence over a NativeModel (native/kv_cache.cc). */
export interface NativeKvCacheHandle {
  /** Appends ids; logits (float32) of the last position, or of every new position when allLogits. */
  step(ids: Int32Array, allLogits: boolean): Promise<Float32Array>
  truncate(length: number): void
  readonly length: number
  dispose(): void
}

export interface MemoryCounters {
  current: number
  peak: number
}

/** One tensor converted by native/dequant.cc (lib/gguf/convert.ts builds the items; the C++ checks them again). */
export interface ConvertItem {
  name: string
  source: string
  srcOffset: number
  srcType: number
  rows: number
  cols: number
  dstOffset: number
  dstType: number
  order: 'as-is' | 'to-hf' | 'to-gguf'
  heads?: number
}

export interface NativeBinding {
  runtimeInfo(): RawRuntimeInfo
  setThreads(threads: number): void
  /** native/kernel_options.h: every field required; lib/native/kernel-options.ts is the only caller. */
  setKernelOptions(options: KernelOptions): void
  /** The kernel options C++ holds now. */
  kernelOptions(): KernelOptions
  /** At load (lib/native/load.ts): the limits specs are checked against; refused unless its fields are the addon's. */
  setModelContract(contract: NativeModelContract): void
  /** cpu.cached: bytes of freed CPU blocks held for reuse (not counted in current or peak; cpuCache false: none). */
  memoryStats(device?: number): { cpu: MemoryCounters & { cached: number }; cuda: MemoryCounters | null }
  resetPeakMemory(device?: number): void
  /** GGUF/safetensors tensor conversion (native/dequant.cc); lib/gguf/convert.ts builds the items. */
  convertTensors(target: string, header: Uint8Array, fileSize: number, items: ConvertItem[]): Promise<void>
  NativeModel: {
    /**
     * Checks the arguments at once; CUDA initialisation and the allocation of every parameter run off the JS thread.
     */
    create(spec: NativeModelSpec, options: NativeModelOptions): Promise<NativeModelHandle>
    readonly prototype: NativeModelHandle
  }
  NativeProcessGroup: new () => NativeProcessGroupHandle
  distributedBackends(): string[]
  NativeKvCache: new (model: NativeModelHandle) => NativeKvCacheHandle
}
