/**
 * Training configuration with LLaMA-Factory's YAML keys (and transformers' TrainingArguments names). Every key
 * is checked: an unknown key is an error that suggests the closest known one; a wrong type or value names the
 * key and what is allowed. Keys that belong to LLaMA-Factory features llamapro has no use for (report_to,
 * preprocessing_num_workers, ...) are accepted with a warning, so existing configs run unchanged.
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, isAbsolute, resolve } from 'node:path'
import { parseDocument } from 'yaml'
import type { ModelDtype } from '../checkpoint/dtypes.js'
import { LlamaproError } from '../errors.js'
import { zeroStageFromDeepspeed } from './deepspeed.js'

export class ConfigKeyError extends LlamaproError {
  constructor(message: string) {
    super('LLAMAPRO_TRAIN_CONFIG', message)
    this.name = 'ConfigKeyError'
  }
}

type Kind =
  | { type: 'string'; choices?: readonly string[] }
  | { type: 'int'; min?: number; max?: number }
  | { type: 'number'; min?: number; max?: number }
  | { type: 'bool' }
  | { type: 'list' }
  | { type: 'string-or-bool' }
  | { type: 'number-or-null' }

interface KeySpec {
  kind: Kind
  default: unknown
  help: string
}

const KEYS = {
  model_name_or_path: { kind: { type: 'string' }, default: undefined, help: 'model folder (Hugging Face format)' },
  stage: { kind: { type: 'string', choices: ['pt', 'sft'] }, default: 'sft', help: 'pt: continued pre-training on raw text; sft: supervised fine-tuning' },
  finetuning_type: { kind: { type: 'string', choices: ['freeze', 'full'] }, default: 'freeze', help: 'freeze or full' },
  freeze_trainable_layers: { kind: { type: 'int' }, default: 2, help: 'N > 0: last N layers; N < 0: first |N|; with use_llama_pro: number of expanded blocks' },
  freeze_trainable_modules: { kind: { type: 'list' }, default: 'all', help: 'all, or per-layer modules (mlp, self_attn, ...)' },
  freeze_extra_modules: { kind: { type: 'list' }, default: null, help: 'non-layer modules that also train (embed_tokens, norm, lm_head)' },
  freeze_trainable_layer_ids: { kind: { type: 'list' }, default: null, help: 'explicit layer indices, e.g. 10,16,17,23 (llamapro)' },
  use_llama_pro: { kind: { type: 'bool' }, default: false, help: 'train only the expanded blocks' },
  dataset: { kind: { type: 'list' }, default: undefined, help: 'JSON/JSONL files (or names in dataset_dir/dataset_info.json), comma-separated' },
  dataset_dir: { kind: { type: 'string' }, default: 'data', help: 'folder of dataset_info.json' },
  template: { kind: { type: 'string' }, default: 'default', help: "a LLaMA-Factory template name (default, empty, alpaca, chatml, llama3, qwen, ...: TEMPLATE_NAMES, README's list) or model (the model's own chat template)" },
  default_system: { kind: { type: 'string' }, default: null, help: "replaces the template's default system prompt" },
  enable_thinking: { kind: { type: 'bool' }, default: true, help: 'reasoning templates (qwen3): learn the empty thought of answers without one (false: put it in the prompt)' },
  cutoff_len: { kind: { type: 'int', min: 2 }, default: 2048, help: 'maximum tokens per sequence' },
  packing: { kind: { type: 'bool' }, default: null, help: 'pack examples into cutoff_len blocks (default: true for pt, false for sft)' },
  max_samples: { kind: { type: 'int', min: 1 }, default: null, help: 'use at most this many examples per dataset' },
  val_size: { kind: { type: 'number', min: 0 }, default: 0, help: 'held-out fraction (< 1) or number of examples' },
  per_device_train_batch_size: { kind: { type: 'int', min: 1 }, default: 8, help: 'sequences per micro-batch' },
  per_device_eval_batch_size: { kind: { type: 'int', min: 1 }, default: 8, help: 'sequences per evaluation batch' },
  gradient_accumulation_steps: { kind: { type: 'int', min: 1 }, default: 1, help: 'micro-batches per optimizer step' },
  learning_rate: { kind: { type: 'number', min: 0 }, default: 5e-5, help: 'peak learning rate' },
  num_train_epochs: { kind: { type: 'number', min: 0 }, default: 3, help: 'passes over the data (unless max_steps is set)' },
  max_steps: { kind: { type: 'int' }, default: -1, help: 'optimizer steps; overrides num_train_epochs when > 0' },
  lr_scheduler_type: { kind: { type: 'string', choices: ['linear', 'cosine', 'constant', 'constant_with_warmup'] }, default: 'linear', help: 'learning-rate schedule' },
  warmup_ratio: { kind: { type: 'number', min: 0, max: 1 }, default: 0, help: 'fraction of steps spent warming up' },
  warmup_steps: { kind: { type: 'int', min: 0 }, default: 0, help: 'warm-up steps (overrides warmup_ratio when > 0)' },
  weight_decay: { kind: { type: 'number', min: 0 }, default: 0, help: 'AdamW decoupled weight decay' },
  adam_beta1: { kind: { type: 'number', min: 0, max: 1 }, default: 0.9, help: 'AdamW beta1' },
  adam_beta2: { kind: { type: 'number', min: 0, max: 1 }, default: 0.999, help: 'AdamW beta2' },
  adam_epsilon: { kind: { type: 'number', min: 0 }, default: 1e-8, help: 'AdamW epsilon' },
  max_grad_norm: { kind: { type: 'number', min: 0 }, default: 1, help: 'gradient clipping (0: none)' },
  bf16: { kind: { type: 'bool' }, default: false, help: 'bfloat16 activations, float32 master weights' },
  fp16: { kind: { type: 'bool' }, default: false, help: 'float16 activations with loss scaling (CUDA)' },
  pure_bf16: { kind: { type: 'bool' }, default: false, help: 'bfloat16 everywhere, master weights included' },
  disable_gradient_checkpointing: { kind: { type: 'bool' }, default: false, help: 'keep every activation instead of recomputing decoder layers in backward' },
  checkpoint_frozen_layers: {
    kind: { type: 'bool' },
    default: false,
    help: 'with checkpointing, also recompute the frozen layers above the lowest trainable one (least memory, slower; llamapro)',
  },
  seed: { kind: { type: 'int' }, default: 42, help: 'random seed (data order)' },
  logging_steps: { kind: { type: 'int', min: 1 }, default: 500, help: 'log every N optimizer steps' },
  save_steps: { kind: { type: 'int', min: 1 }, default: 500, help: 'checkpoint every N optimizer steps' },
  save_strategy: { kind: { type: 'string', choices: ['steps', 'epoch', 'no'] }, default: 'steps', help: 'when to write checkpoints' },
  save_total_limit: { kind: { type: 'int', min: 1 }, default: null, help: 'keep at most N checkpoints' },
  eval_steps: { kind: { type: 'int', min: 1 }, default: null, help: 'evaluate every N optimizer steps (default: logging_steps)' },
  eval_strategy: { kind: { type: 'string', choices: ['steps', 'epoch', 'no'] }, default: null, help: 'when to evaluate (default: steps when val_size > 0)' },
  output_dir: { kind: { type: 'string' }, default: undefined, help: 'where checkpoints and the final model go' },
  overwrite_output_dir: { kind: { type: 'bool' }, default: false, help: 'replace an existing output_dir' },
  resume_from_checkpoint: { kind: { type: 'string-or-bool' }, default: null, help: 'checkpoint folder, or true for the latest in output_dir' },
  plot_loss: { kind: { type: 'bool' }, default: false, help: 'write training_loss.png and .svg' },
  // llamapro's own keys
  device: { kind: { type: 'string' }, default: 'auto', help: 'auto (the first CUDA device when LibTorch has CUDA and a GPU is visible, else cpu), cpu, cuda or cuda:N (llamapro)' },
  threads: { kind: { type: 'int', min: 0, max: 1024 }, default: 0, help: 'LibTorch intra-op threads, 0 = default (llamapro)' },
  save_delta: { kind: { type: 'bool' }, default: false, help: 'also write only the trained tensors to <output_dir>/delta (llamapro)' },
  save_only_model: { kind: { type: 'bool' }, default: false, help: 'checkpoints without optimizer state (not resumable)' },
  ddp_timeout: { kind: { type: 'int', min: 1 }, default: 1800, help: 'seconds a rank waits for the others in a collective before it fails (multi-rank runs)' },
  ddp_bucket_cap_mb: { kind: { type: 'number', min: 0.001 }, default: 25, help: 'MiB of trainable gradients per all-reduce bucket (multi-rank runs)' },
  deepspeed: {
    kind: { type: 'string' },
    default: null,
    help: "a DeepSpeed JSON config (LLaMA-Factory's examples/deepspeed/ds_z*_config.json): only its zero_optimization.stage is read, as zero_stage (2 and 3 run as 1)",
  },
  zero_stage: { kind: { type: 'int', min: 0, max: 1 }, default: 0, help: '1: ZeRO stage 1, each rank keeps AdamW state for its shard of the trainable parameters only (multi-rank runs; llamapro)' },
} satisfies Record<string, KeySpec>

export type TrainKey = keyof typeof KEYS

/** LLaMA-Factory / transformers keys that configure things llamapro does not have; accepted with a warning. */
const IGNORED_KEYS = [
  'do_train',
  'do_eval',
  'report_to',
  'preprocessing_num_workers',
  'dataloader_num_workers',
  'overwrite_cache',
  'trust_remote_code',
  'flash_attn',
  'logging_dir',
  'run_name',
  'tokenized_path',
  'disable_tqdm',
  'include_num_input_tokens_seen',
]

export interface TrainConfig {
  modelNameOrPath: string
  stage: 'pt' | 'sft'
  finetuningType: 'freeze' | 'full'
  freezeTrainableLayers: number
  freezeTrainableModules: string
  freezeExtraModules: string | null
  freezeTrainableLayerIds: string | null
  useLlamaPro: boolean
  dataset: string[]
  datasetDir: string
  template: string
  defaultSystem: string | null
  enableThinking: boolean
  cutoffLen: number
  packing: boolean
  maxSamples: number | null
  valSize: number
  perDeviceTrainBatchSize: number
  perDeviceEvalBatchSize: number
  gradientAccumulationSteps: number
  learningRate: number
  numTrainEpochs: number
  maxSteps: number
  lrSchedulerType: 'linear' | 'cosine' | 'constant' | 'constant_with_warmup'
  warmupRatio: number
  warmupSteps: number
  weightDecay: number
  adamBeta1: number
  adamBeta2: number
  adamEpsilon: number
  maxGradNorm: number
  bf16: boolean
  fp16: boolean
  pureBf16: boolean
  /** false (default, as LLaMA-Factory): decoder layers are recomputed in backward (activation checkpointing). */
  disableGradientCheckpointing: boolean
  /** true: checkpointing also recomputes frozen layers (llamapro's key; LLaMA-Factory checkpoints only trainable layers). */
  checkpointFrozenLayers: boolean
  seed: number
  loggingSteps: number
  saveSteps: number
  saveStrategy: 'steps' | 'epoch' | 'no'
  saveTotalLimit: number | null
  evalSteps: number
  evalStrategy: 'steps' | 'epoch' | 'no'
  outputDir: string
  overwriteOutputDir: boolean
  resumeFromCheckpoint: string | true | null
  plotLoss: boolean
  device: string
  threads: number
  saveDelta: boolean
  saveOnlyModel: boolean
  /** Seconds a collective waits for the other ranks (transformers' ddp_timeout). */
  ddpTimeout: number
  /** MiB per gradient all-reduce bucket (DDP's bucket_cap_mb). */
  ddpBucketCapMb: number
  /** ZeRO stage: 1 shards AdamW's state over the ranks, 0 keeps it whole on every rank. */
  zeroStage: 0 | 1
  /** What the configuration means differently from what it says (e.g. a `deepspeed:` file), for the run to warn. */
  configWarnings?: string[]
  /** Keys that were accepted but have no effect, for a warning. */
  ignoredKeys: string[]
  /** The folder relative paths were resolved against: the working directory, as in LLaMA-Factory. */
  baseDir: string
}

/** Levenshtein distance, for "did you mean". */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1))
      previous = current
    }
  }
  return row[b.length]!
}

export function closestKey(key: string): string | undefined {
  const known = [...Object.keys(KEYS), ...IGNORED_KEYS]
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate)
    if (distance < bestDistance) {
      bestDistance = distance
      best = candidate
    }
  }
  return best !== undefined && bestDistance <= Math.max(3, Math.floor(key.length / 3)) ? best : undefined
}

function coerce(key: string, spec: KeySpec, value: unknown, where: string): unknown {
  const kind = spec.kind
  const fail = (expected: string): never => {
    throw new ConfigKeyError(`${where}: ${key} must be ${expected}, got ${JSON.stringify(value)}`)
  }
  if (value === null) {
    if (spec.default === null || kind.type === 'number-or-null') return null
    return fail(describe(kind))
  }
  switch (kind.type) {
    case 'string': {
      if (typeof value !== 'string' && typeof value !== 'number') return fail(describe(kind))
      const text = String(value)
      if (kind.choices && !kind.choices.includes(text)) return fail(`one of ${kind.choices.join(', ')}`)
      return text
    }
    case 'int': {
      const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value
      if (typeof n !== 'number' || !Number.isInteger(n)) return fail('an integer')
      if (kind.min !== undefined && n < kind.min) return fail(`an integer >= ${kind.min}`)
      if (kind.max !== undefined && n > kind.max) return fail(`an integer <= ${kind.max}`)
      return n
    }
    case 'number':
    case 'number-or-null': {
      const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value
      if (typeof n !== 'number' || !Number.isFinite(n)) return fail('a number')
      if (kind.type === 'number' && kind.min !== undefined && n < kind.min) return fail(`a number >= ${kind.min}`)
      if (kind.type === 'number' && kind.max !== undefined && n > kind.max) return fail(`a number <= ${kind.max}`)
      return n
    }
    case 'bool': {
      if (typeof value === 'boolean') return value
      if (value === 'true' || value === 'false') return value === 'true'
      return fail('true or false')
    }
    case 'list': {
      if (Array.isArray(value)) return value.map(String).join(',')
      if (typeof value === 'string' || typeof value === 'number') return String(value)
      return fail('a comma-separated list')
    }
    case 'string-or-bool': {
      if (typeof value === 'boolean') return value ? true : null
      if (typeof value === 'string') return value
      return fail('a checkpoint folder or true')
    }
  }
}

function describe(kind: Kind): string {
  switch (kind.type) {
    case 'string':
      return kind.choices ? `one of ${kind.choices.join(', ')}` : 'a string'
    case 'int':
      return 'an integer'
    case 'bool':
      return 'true or false'
    default:
      return 'a value'
  }
}

/** Parses a value given on the command line (`--key value` or `key=value`) as YAML would. */
function parseScalar(text: string): unknown {
  const doc = parseDocument(text)
  return doc.errors.length ? text : doc.toJS()
}

/**
 * Validates raw key/value pairs (from YAML and overrides) into a TrainConfig. Relative paths (model_name_or_path,
 * dataset_dir, dataset files, output_dir, resume_from_checkpoint) are resolved against `baseDir`, which callers set
 * to the working directory: LLaMA-Factory's paths are plain Python paths, so its YAMLs (and their examples, run from
 * the repository root) mean the working directory, never the YAML file's folder.
 */
/** zero_stage, from the key itself or else from a `deepspeed:` JSON file's zero_optimization.stage. */
function zeroSettings(values: Record<string, unknown>, deepspeed: string | null, path: (p: string) => string, where: string): { zeroStage: 0 | 1; configWarnings: string[] } {
  if ('zero_stage' in values || deepspeed === null) return { zeroStage: (values.zero_stage as 0 | 1 | undefined) ?? 0, configWarnings: [] }
  const { zeroStage, warning } = zeroStageFromDeepspeed(path(deepspeed), where)
  return { zeroStage, configWarnings: [warning] }
}

export function parseTrainConfig(raw: Record<string, unknown>, where: string, baseDir: string, options: { partial?: boolean } = {}): TrainConfig {
  const values: Record<string, unknown> = {}
  const ignoredKeys: string[] = []
  for (const [key, value] of Object.entries(raw)) {
    if (key in KEYS) {
      values[key] = coerce(key, KEYS[key as TrainKey], value, where)
    } else if (IGNORED_KEYS.includes(key)) {
      ignoredKeys.push(key)
    } else {
      const suggestion = closestKey(key)
      throw new ConfigKeyError(`${where}: unknown key "${key}"${suggestion ? ` (did you mean "${suggestion}"?)` : ''}`)
    }
  }
  const get = <K extends TrainKey>(key: K): unknown => (key in values ? values[key] : KEYS[key].default)
  for (const required of options.partial ? (['model_name_or_path'] as const) : (['model_name_or_path', 'output_dir', 'dataset'] as const)) {
    if (get(required) === undefined) throw new ConfigKeyError(`${where}: missing key "${required}" (${KEYS[required].help})`)
  }
  const stage = get('stage') as 'pt' | 'sft'
  const path = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p))
  const loggingSteps = get('logging_steps') as number
  const valSize = get('val_size') as number
  if (get('bf16') && get('fp16')) throw new ConfigKeyError(`${where}: bf16 and fp16 are both true; choose one`)
  const resume = get('resume_from_checkpoint') as string | true | null
  return {
    modelNameOrPath: path(get('model_name_or_path') as string),
    stage,
    finetuningType: get('finetuning_type') as 'freeze' | 'full',
    freezeTrainableLayers: get('freeze_trainable_layers') as number,
    freezeTrainableModules: get('freeze_trainable_modules') as string,
    freezeExtraModules: get('freeze_extra_modules') as string | null,
    freezeTrainableLayerIds: get('freeze_trainable_layer_ids') as string | null,
    useLlamaPro: get('use_llama_pro') as boolean,
    dataset: ((get('dataset') as string | undefined) ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    datasetDir: path(get('dataset_dir') as string),
    template: get('template') as string,
    defaultSystem: get('default_system') as string | null,
    enableThinking: get('enable_thinking') as boolean,
    cutoffLen: get('cutoff_len') as number,
    packing: (get('packing') as boolean | null) ?? stage === 'pt',
    maxSamples: get('max_samples') as number | null,
    valSize,
    perDeviceTrainBatchSize: get('per_device_train_batch_size') as number,
    perDeviceEvalBatchSize: get('per_device_eval_batch_size') as number,
    gradientAccumulationSteps: get('gradient_accumulation_steps') as number,
    learningRate: get('learning_rate') as number,
    numTrainEpochs: get('num_train_epochs') as number,
    maxSteps: get('max_steps') as number,
    lrSchedulerType: get('lr_scheduler_type') as TrainConfig['lrSchedulerType'],
    warmupRatio: get('warmup_ratio') as number,
    warmupSteps: get('warmup_steps') as number,
    weightDecay: get('weight_decay') as number,
    adamBeta1: get('adam_beta1') as number,
    adamBeta2: get('adam_beta2') as number,
    adamEpsilon: get('adam_epsilon') as number,
    maxGradNorm: get('max_grad_norm') as number,
    bf16: get('bf16') as boolean,
    fp16: get('fp16') as boolean,
    pureBf16: get('pure_bf16') as boolean,
    disableGradientCheckpointing: get('disable_gradient_checkpointing') as boolean,
    checkpointFrozenLayers: get('checkpoint_frozen_layers') as boolean,
    seed: get('seed') as number,
    loggingSteps,
    saveSteps: get('save_steps') as number,
    saveStrategy: get('save_strategy') as TrainConfig['saveStrategy'],
    saveTotalLimit: get('save_total_limit') as number | null,
    evalSteps: (get('eval_steps') as number | null) ?? loggingSteps,
    evalStrategy: (get('eval_strategy') as TrainConfig['evalStrategy'] | null) ?? (valSize > 0 ? 'steps' : 'no'),
    outputDir: path((get('output_dir') as string | undefined) ?? '.'),
    overwriteOutputDir: get('overwrite_output_dir') as boolean,
    resumeFromCheckpoint: typeof resume === 'string' ? path(resume) : resume,
    plotLoss: get('plot_loss') as boolean,
    device: get('device') as string,
    threads: get('threads') as number,
    saveDelta: get('save_delta') as boolean,
    saveOnlyModel: get('save_only_model') as boolean,
    ddpTimeout: get('ddp_timeout') as number,
    ddpBucketCapMb: get('ddp_bucket_cap_mb') as number,
    ...zeroSettings(values, get('deepspeed') as string | null, path, where),
    ignoredKeys,
    baseDir,
  }
}

/** `--key value` and `key=value` overrides, as LLaMA-Factory's CLI takes them. */
export function parseOverrides(argv: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg.startsWith('--')) {
      const body = arg.slice(2)
      const eq = body.indexOf('=')
      if (eq >= 0) {
        out[body.slice(0, eq).replaceAll('-', '_')] = parseScalar(body.slice(eq + 1))
      } else {
        const next = argv[i + 1]
        if (next === undefined || next.startsWith('--')) out[body.replaceAll('-', '_')] = true
        else {
          out[body.replaceAll('-', '_')] = parseScalar(next)
          i++
        }
      }
    } else if (arg.includes('=')) {
      const eq = arg.indexOf('=')
      out[arg.slice(0, eq)] = parseScalar(arg.slice(eq + 1))
    } else {
      throw new ConfigKeyError(`unexpected argument "${arg}": overrides look like --learning_rate 1e-4 or learning_rate=1e-4`)
    }
  }
  return out
}

/**
 * Reads a YAML config file and applies overrides. Relative paths in it resolve against the working directory (as
 * LLaMA-Factory's do), or against `options.cwd` when given.
 */
export async function loadTrainConfig(path: string, overrides: Record<string, unknown> = {}, options: { partial?: boolean; cwd?: string } = {}): Promise<TrainConfig> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new ConfigKeyError(`${path}: ${code === 'ENOENT' ? 'config file not found' : `cannot read (${code})`}`)
  }
  const doc = parseDocument(text, { uniqueKeys: true })
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!
    throw new ConfigKeyError(`${path}: invalid YAML: ${e.message.split('\n')[0]}`)
  }
  const raw = doc.toJS() ?? {}
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigKeyError(`${path}: must be a mapping of keys to values`)
  const merged = { ...(raw as Record<string, unknown>), ...overrides }
  const config = parseTrainConfig(merged, path, resolve(options.cwd ?? process.cwd()), options)
  // Earlier llamapro resolved against the YAML's folder; say so rather than only "model folder not found".
  const model = merged.model_name_or_path
  if (typeof model === 'string' && !isAbsolute(model) && !existsSync(config.modelNameOrPath) && existsSync(resolve(dirname(resolve(path)), model))) {
    throw new ConfigKeyError(
      `${path}: model_name_or_path "${model}" is not in the working directory (${config.baseDir}), but is beside the YAML file: ` +
        `relative paths resolve against the working directory, as in LLaMA-Factory; run from ${dirname(resolve(path))} or use an absolute path`,
    )
  }
  return config
}

/** Dtypes a config trains in: activations (and frozen weights), and trainable master weights. */
export function trainingDtypes(config: Pick<TrainConfig, 'bf16' | 'fp16' | 'pureBf16'>): { compute: ModelDtype; master: ModelDtype } {
  if (config.pureBf16) return { compute: 'bfloat16', master: 'bfloat16' }
  if (config.bf16) return { compute: 'bfloat16', master: 'float32' }
  if (config.fp16) return { compute: 'float16', master: 'float32' }
  return { compute: 'float32', master: 'float32' }
}

/** Every known key with its default and a one-line description (for help text). */
export function trainKeyHelp(): string {
  return Object.entries(KEYS)
    .map(([key, spec]) => `  ${key.padEnd(28)} ${spec.help}${spec.default !== undefined && spec.default !== null ? ` (default ${spec.default})` : ''}`)
    .join('\n')
}
