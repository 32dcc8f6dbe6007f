/** llamapro's public API. */
export { info, setThreads } from './info.js'
export type { RuntimeInfo, CudaDevice } from './info.js'
export { VERSION } from './version.js'
export { setAddonDir, loadedAddon } from './native/load.js'
export {
  kernelOptions,
  setKernelOptions,
  kernelOptionsFromEnv,
  describeKernelOptions,
} from './native/kernel-options.js'
export type { KernelOptions, GemmChoice, OpProfileMode } from './native/kernel-options.js'
export type { AddonLocation } from './native/load.js'
export { bundle } from './bundle/bundle.js'
export type { BundleOptions, BundleResult } from './bundle/bundle.js'
export type { BundleManifest, BundleFile } from './bundle/manifest.js'
export { ERROR_CODES, LlamaproError, isErrorCode } from './errors.js'
export type { ErrorCode } from './errors.js'
export { LlamaModel } from './model/llama-model.js'
export type {
  Device,
  LoadOptions,
  RandomModelOptions,
  SaveOptions,
  SaveResult,
  ParameterInfo,
  ForwardResult,
  AddLoraOptions,
  LoraState,
} from './model/llama-model.js'
export type { TokenBatch } from './model/token-batch.js'
export { openCheckpoint, readModelConfig } from './checkpoint/checkpoint.js'
export type { Checkpoint, TensorLocation } from './checkpoint/checkpoint.js'
export { parseModelConfig } from './checkpoint/config.js'
export type { ModelConfig, RopeConfig } from './checkpoint/config.js'
export { readSafetensorsHeader, encodeSafetensorsHeader } from './checkpoint/safetensors.js'
export type { SafetensorsFile, TensorEntry } from './checkpoint/safetensors.js'
export type { ModelDtype } from './checkpoint/dtypes.js'
export { expandCheckpoint } from './expand/expand-checkpoint.js'
export type { ExpandCheckpointOptions, ExpandProgress, ExpandResult } from './expand/expand-checkpoint.js'
export { planExpansion } from './expand/plan.js'
export type { ExpansionPlan } from './expand/plan.js'
export { verifyExpansion } from './expand/verify.js'
export type { VerifyOptions, VerifyResult } from './expand/verify.js'
export { freezePolicy } from './policy/freeze-policy.js'
export type { FreezeOptions, TrainablePlan } from './policy/freeze-policy.js'
export { planTraining } from './policy/plan.js'
export type { PlanInput, PlanReport } from './policy/plan.js'
export { estimateTrainingMemory } from './policy/memory-estimate.js'
export type { MemoryEstimate, MemoryEstimateInput } from './policy/memory-estimate.js'
export { mergeDelta } from './merge/merge-delta.js'
export { loraPolicy } from './adapters/lora-targets.js'
export type { LoraPlan, LoraTargetOptions } from './adapters/lora-targets.js'
export { readAdapter, AdapterError } from './adapters/peft-adapter.js'
export type { AdapterFolder, LoraAdapterConfig } from './adapters/peft-adapter.js'
export { mergeAdapter } from './adapters/merge-adapter.js'
export type { AdapterMergeResult } from './adapters/merge-adapter.js'
export type { MergeResult } from './merge/merge-delta.js'
export { train, TrainingError } from './train/trainer.js'
export type { TrainOptions } from './train/trainer.js'
export { distributedFromEnv } from './distributed/environment.js'
export type { DistributedEnv } from './distributed/environment.js'
export { loadTrainConfig, parseTrainConfig } from './train/config.js'
export type { TrainConfig } from './train/config.js'
export type { TrainEvent, TrainResult, LogRecord } from './train/events.js'
export { TensorBoardWriter, tensorboardScalars, defaultLoggingDir } from './report/tensorboard.js'
export type { TensorBoardWriterOptions } from './report/tensorboard.js'
export { chatTemplate, TEMPLATE_NAMES } from './data/template.js'
export type { ChatTemplate, Segment, SegmentPart, TemplateOptions } from './data/template.js'
export { loadTokenizer } from './data/tokenizer.js'
export type { TextTokenizer } from './data/tokenizer.js'
export { runDemo } from './demo/demo.js'
export type { DemoOptions, DemoResult } from './demo/demo.js'
export { runBench } from './bench/run-bench.js'
export type { BenchOptions, BenchReport, StrategyResult } from './bench/run-bench.js'
export { benchTrainConfig } from './bench/train-config-bench.js'
export type {
  CheckpointingMode,
  TrainConfigBenchOptions,
  TrainConfigBenchReport,
  TrainConfigBenchResult,
} from './bench/train-config-bench.js'
export { importGguf, exportGguf } from './gguf/convert.js'
export type { ImportGgufOptions, ImportGgufResult, ExportGgufOptions, ExportGgufResult } from './gguf/convert.js'
export { readGgufFile } from './gguf/reader.js'
export type { GgufFile, GgufTensorInfo } from './gguf/reader.js'
export { generate, generateStream } from './generate/generate.js'
export type {
  GenerateInput,
  GenerateOptions,
  GenerationChunk,
  GenerationResult,
  FinishReason,
} from './generate/generate.js'
export { KvCache } from './generate/kv-cache.js'
export { evaluateModels } from './generate/evaluate.js'
export type { EvaluateOptions, EvaluateResult, ModelEvaluation } from './generate/evaluate.js'
export { startBoard } from './board/server.js'
export type { Board, BoardOptions } from './board/server.js'
export type { RunDetail, RunList, RunStatus, RunSummary } from './board/wire.js'
export { runSweep } from './sweep/run.js'
export { planSweep } from './sweep/plan.js'
export type { SweepPlan, PlannedRun, SweepStrategy } from './sweep/plan.js'
export type { SweepOptions, SweepResult, SweepEvent, RunRecord } from './sweep/run.js'
export type { SweepReport, StrategySummary, Statement } from './sweep/report.js'
export { compare as compareSpreads, spread } from './sweep/statistics.js'
export type { Spread, Verdict } from './sweep/statistics.js'
