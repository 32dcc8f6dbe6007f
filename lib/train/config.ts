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
import { zeroStageFromDeepspeed } from './deepspeed.js'
import { ConfigKeyError } from './errors.js'
import { type ReportTarget, parseReportTo } from './report-to.js'

type Kind =
  | { type: 'string'; choices?: readonly string[] }
  | { type: 'int'; min?: number; max?: number }
  | { type: 'number'; min?: number; max?: number }
  | { type: 'bool' }
  | { type: 'list' }
  | { type: 'string-or-bool' }

interface KeySpec {
  kind: Kind
  default: unknown
  help: string
}

const KEYS = {
  model_name_or_path: { kind: { type: 'string' }, default: undefined, help: 'model folder (Hugging Face format)' },
  stage: {
    kind: { type: 'string', choices: ['pt', 'sft'] },
    default: 'sft',
    help: 'pt: continued pre-training on raw text; sft: supervised fine-tuning',
  },
  finetuning_type: {
    kind: { type: 'string', choices: ['freeze', 'full', 'lora'] },
    default: 'freeze',
    help: 'freeze, full or lora',
  },
  freeze_trainable_layers: {
    kind: { type: 'int' },
    default: 2,
    help: 'N > 0: last N layers; N < 0: first |N|; with use_llama_pro: number of expanded blocks',
  },
  freeze_trainable_modules: {
    kind: { type: 'list' },
    default: 'all',
    help: 'all, or per-layer modules (mlp, self_attn, ...)',
  },
  freeze_extra_modules: {
    kind: { type: 'list' },
    default: null,
    help: 'non-layer modules that also train (embed_tokens, norm, lm_head)',
  },
  freeze_trainable_layer_ids: {
    kind: { type: 'list' },
    default: null,
    help: 'explicit layer indices, e.g. 10,16,17,23 (llamapro)',
  },
  use_llama_pro: {
    kind: { type: 'bool' },
    default: false,
    help: 'train only the expanded blocks (freeze: those layers; lora: adapters on them only)',
  },
  lora_rank: { kind: { type: 'int', min: 1 }, default: 8, help: 'LoRA rank r' },
  lora_alpha: {
    kind: { type: 'number' },
    default: null,
    help: 'LoRA scale numerator (default 2 x lora_rank); scale = alpha / r',
  },
  lora_dropout: { kind: { type: 'number', min: 0, max: 0.999 }, default: 0, help: "dropout on the adapters' input" },
  lora_target: {
    kind: { type: 'list' },
    default: 'all',
    help: 'all (every linear layer but lm_head) or module names, e.g. q_proj,v_proj',
  },
  additional_target: {
    kind: { type: 'list' },
    default: null,
    help: "modules trained in full beside the adapters (PEFT's modules_to_save), e.g. embed_tokens,lm_head",
  },
  use_rslora: { kind: { type: 'bool' }, default: false, help: 'rank-stabilised LoRA: scale = alpha / sqrt(r)' },
  adapter_name_or_path: {
    kind: { type: 'list' },
    default: null,
    help:
      'PEFT adapter folder(s): all but the last are merged into the model; training continues the last (unless ' +
      'create_new_adapter)',
  },
  create_new_adapter: {
    kind: { type: 'bool' },
    default: false,
    help: 'merge every adapter_name_or_path and train a new adapter on top',
  },
  loraplus_lr_ratio: {
    kind: { type: 'number' },
    default: null,
    help: 'LoRA+: lora_B trains at this multiple of learning_rate',
  },
  loraplus_lr_embedding: {
    kind: { type: 'number', min: 0 },
    default: 1e-6,
    help: 'LoRA+ learning rate of embedding adapters (llamapro puts no adapter on embeddings: no effect)',
  },
  dataset: {
    kind: { type: 'list' },
    default: undefined,
    help:
      'names in dataset_dir/dataset_info.json, or paths of .json/.jsonl/.parquet/.csv/.txt/.arrow files or ' +
      'folders, comma-separated',
  },
  dataset_dir: { kind: { type: 'string' }, default: 'data', help: 'folder of dataset_info.json' },
  template: {
    kind: { type: 'string' },
    default: 'default',
    help:
      'a LLaMA-Factory template name (default, empty, alpaca, chatml, llama3, qwen, ...: TEMPLATE_NAMES; ' +
      "docs/cli/train.md lists them) or model (the model's own chat template)",
  },
  default_system: { kind: { type: 'string' }, default: null, help: "replaces the template's default system prompt" },
  enable_thinking: {
    kind: { type: 'bool' },
    default: true,
    help: 'reasoning templates (qwen3): learn the empty thought of answers without one (false: put it in the prompt)',
  },
  cutoff_len: { kind: { type: 'int', min: 2 }, default: 2048, help: 'maximum tokens per sequence' },
  packing: {
    kind: { type: 'bool' },
    default: null,
    help: 'pack examples into cutoff_len blocks (default: true for pt, false for sft)',
  },
  max_samples: { kind: { type: 'int', min: 1 }, default: null, help: 'use at most this many examples per dataset' },
  val_size: {
    kind: { type: 'number', min: 0 },
    default: 0,
    help: 'held-out fraction (< 1) or number of sequences, from the token store',
  },
  eval_dataset: {
    kind: { type: 'list' },
    default: null,
    help: 'datasets for evaluation (not with val_size), comma-separated',
  },
  mix_strategy: {
    kind: { type: 'string', choices: ['concat', 'interleave_under', 'interleave_over'] },
    default: 'concat',
    help: 'how several datasets are mixed (LLaMA-Factory)',
  },
  interleave_probs: {
    kind: { type: 'list' },
    default: null,
    help: 'with interleave_*: the probability of drawing from each dataset, comma-separated',
  },
  preprocessing_num_workers: {
    kind: { type: 'int', min: 1 },
    default: null,
    help: 'worker threads that tokenize the data (default: the cores)',
  },
  tokenized_path: {
    kind: { type: 'string' },
    default: null,
    help: 'token store folder: loaded when it exists (data files not read), else built there',
  },
  overwrite_cache: { kind: { type: 'bool' }, default: false, help: 'rebuild the token store even when one exists' },
  streaming: {
    kind: { type: 'bool' },
    default: false,
    help: 'tokenize while training instead of into a token store first (needs max_steps; docs/guides/data-at-scale.md)',
  },
  buffer_size: { kind: { type: 'int', min: 1 }, default: 16384, help: 'sequences in the streaming shuffle buffer' },
  per_device_train_batch_size: { kind: { type: 'int', min: 1 }, default: 8, help: 'sequences per micro-batch' },
  per_device_eval_batch_size: { kind: { type: 'int', min: 1 }, default: 8, help: 'sequences per evaluation batch' },
  gradient_accumulation_steps: { kind: { type: 'int', min: 1 }, default: 1, help: 'micro-batches per optimizer step' },
  learning_rate: { kind: { type: 'number', min: 0 }, default: 5e-5, help: 'peak learning rate' },
  num_train_epochs: {
    kind: { type: 'number', min: 0 },
    default: 3,
    help: 'passes over the data (unless max_steps is set)',
  },
  max_steps: { kind: { type: 'int' }, default: -1, help: 'optimizer steps; overrides num_train_epochs when > 0' },
  lr_scheduler_type: {
    kind: { type: 'string', choices: ['linear', 'cosine', 'constant', 'constant_with_warmup'] },
    default: 'linear',
    help: 'learning-rate schedule',
  },
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
  disable_gradient_checkpointing: {
    kind: { type: 'bool' },
    default: false,
    help: 'keep every activation instead of recomputing decoder layers in backward',
  },
  checkpoint_frozen_layers: {
    kind: { type: 'bool' },
    default: false,
    help:
      'with checkpointing, also recompute the frozen layers above the lowest trainable one (least memory, ' +
      'slower; llamapro)',
  },
  seed: { kind: { type: 'int' }, default: 42, help: 'random seed (data order)' },
  logging_steps: { kind: { type: 'int', min: 1 }, default: 500, help: 'log every N optimizer steps' },
  save_steps: { kind: { type: 'int', min: 1 }, default: 500, help: 'checkpoint every N optimizer steps' },
  save_strategy: {
    kind: { type: 'string', choices: ['steps', 'epoch', 'no'] },
    default: 'steps',
    help: 'when to write checkpoints',
  },
  save_total_limit: { kind: { type: 'int', min: 1 }, default: null, help: 'keep at most N checkpoints' },
  eval_steps: {
    kind: { type: 'int', min: 1 },
    default: null,
    help: 'evaluate every N optimizer steps (default: logging_steps)',
  },
  eval_strategy: {
    kind: { type: 'string', choices: ['steps', 'epoch', 'no'] },
    default: null,
    help: 'when to evaluate (default: steps when val_size > 0)',
  },
  output_dir: { kind: { type: 'string' }, default: undefined, help: 'where checkpoints and the final model go' },
  overwrite_output_dir: { kind: { type: 'bool' }, default: false, help: 'replace an existing output_dir' },
  resume_from_checkpoint: {
    kind: { type: 'string-or-bool' },
    default: null,
    help: 'checkpoint folder, or true for the latest in output_dir',
  },
  plot_loss: { kind: { type: 'bool' }, default: false, help: 'write training_loss.png and .svg' },
  eval_on_each_dataset: {
    kind: { type: 'bool' },
    default: false,
    help: 'with several eval_dataset: one evaluation loss per dataset, logged as eval_<name>_loss',
  },
  report_to: {
    kind: { type: 'list' },
    default: 'none',
    help: 'where to report besides trainer_log.jsonl: tensorboard, all (= tensorboard) or none',
  },
  logging_dir: {
    kind: { type: 'string' },
    default: null,
    help: 'TensorBoard folder (default output_dir/runs/<date>_<host>, as transformers)',
  },
  // llamapro's own keys
  device: {
    kind: { type: 'string' },
    default: 'auto',
    help:
      'auto (the first CUDA device when LibTorch has CUDA and a GPU is visible, else cpu), cpu, cuda or cuda:N ' +
      '(llamapro)',
  },
  threads: {
    kind: { type: 'int', min: 0, max: 1024 },
    default: 0,
    help: 'LibTorch intra-op threads, 0 = default (llamapro)',
  },
  save_delta: {
    kind: { type: 'bool' },
    default: false,
    help: 'also write only the trained tensors to <output_dir>/delta (llamapro)',
  },
  save_only_model: {
    kind: { type: 'bool' },
    default: false,
    help: 'checkpoints without optimizer state (not resumable)',
  },
  ddp_timeout: {
    kind: { type: 'int', min: 1 },
    default: 1800,
    help: 'seconds a rank waits for the others in a collective before it fails (multi-rank runs)',
  },
  ddp_bucket_cap_mb: {
    kind: { type: 'number', min: 0.001 },
    default: 25,
    help: 'MiB of trainable gradients per all-reduce bucket (multi-rank runs)',
  },
  deepspeed: {
    kind: { type: 'string' },
    default: null,
    help:
      "a DeepSpeed JSON config (LLaMA-Factory's examples/deepspeed/ds_z*_config.json): only its " +
      'zero_optimization.stage is read, as zero_stage (2 and 3 run as 1)',
  },
  zero_stage: {
    kind: { type: 'int', min: 0, max: 1 },
    default: 0,
    help:
      '1: ZeRO stage 1, each rank keeps AdamW state for its shard of the trainable parameters only (multi-rank ' +
      'runs; llamapro)',
  },
} as const satisfies Record<string, KeySpec>

export type TrainKey = keyof typeof KEYS

/** snake_case → camelCase, for types (learning_rate → learningRate) and values (camelCase below). */
type Camel<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<Camel<Tail>>}` : S

function camelCase<S extends string>(key: S): Camel<S> {
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()) as Camel<S>
}

/** What coerce() makes of a value of this kind. */
type KindValue<K> = K extends { type: 'string'; choices: readonly (infer C)[] }
  ? C
  : K extends { type: 'string' }
    ? string
    : K extends { type: 'int' | 'number' }
      ? number
      : K extends { type: 'bool' }
        ? boolean
        : K extends { type: 'list' }
          ? string
          : K extends { type: 'string-or-bool' }
            ? string | true
            : never

/** A key's value as get() returns it: null where null is its default ("not set"). */
type KeyValue<S extends KeySpec> = KindValue<S['kind']> | (S['default'] extends null ? null : never)

/** Every key of KEYS, camel-cased, with the type of its value. */
type KeyValues = { -readonly [K in TrainKey as Camel<K>]: KeyValue<(typeof KEYS)[K]> }

/** A key's value as YAML gives it: a list as a comma list or an array, resume_from_checkpoint as a path or a flag. */
type RawKindValue<K> = K extends { type: 'list' }
  ? string | readonly (string | number)[]
  : K extends { type: 'string-or-bool' }
    ? string | boolean
    : KindValue<K>
type RawValue<S extends KeySpec> = RawKindValue<S['kind']> | (S['default'] extends null ? null : never)

/** Training keys in their YAML spelling, values as YAML gives them, typed from KEYS (see lib/train/overrides.ts). */
export type TrainOverrides = { [K in TrainKey]?: RawValue<(typeof KEYS)[K]> }

/** Keys parseTrainConfig reads and does not pass on: they are turned into another field (deepspeed → zeroStage). */
const CONSUMED_KEYS = ['loraplus_lr_embedding', 'deepspeed', 'report_to'] as const satisfies readonly TrainKey[]

/** Fields whose value parseTrainConfig derives from the keys rather than passing one on as it is. */
interface DerivedFields {
  /** Already defaulted to 2 x lora_rank (LLaMA-Factory's LoraArguments). */
  loraAlpha: number
  /** adapter_name_or_path, split and resolved. */
  adapterNameOrPath: string[]
  dataset: string[]
  evalDataset: string[]
  interleaveProbs: number[] | null
  /** Defaulted by stage: true for pt, false for sft. */
  packing: boolean
  /** Default: logging_steps. */
  evalSteps: number
  /** Default: steps when there is evaluation data, else no. */
  evalStrategy: 'steps' | 'epoch' | 'no'
  /**
   * ZeRO stage: 1 shards AdamW's state over the ranks, 0 keeps it whole on every rank (zero_stage, or a deepspeed:
   * file).
   */
  zeroStage: 0 | 1
  /** What the configuration means differently from what it says (e.g. a `deepspeed:` file), for the run to warn. */
  configWarnings?: string[]
  /** report_to, parsed: the reporters llamapro writes (TensorBoard) besides trainer_log.jsonl. */
  reportTo: ReportTarget[]
  /** Keys that were accepted but have no effect, for a warning. */
  ignoredKeys: string[]
  /** The keys and values as given (YAML merged with overrides): written to output_dir/training_args.yaml. */
  given: Record<string, unknown>
  /** The folder relative paths were resolved against: the working directory, as in LLaMA-Factory. */
  baseDir: string
}

/**
 * A validated training configuration: every key of KEYS in camelCase (relative paths resolved against baseDir), with
 * the derived fields above. Derived from KEYS, so a key added there reaches TrainConfig and parseTrainConfig at once.
 */
export type TrainConfig = Omit<KeyValues, Camel<(typeof CONSUMED_KEYS)[number]> | keyof DerivedFields> & DerivedFields

/**
 * LLaMA-Factory keys of its LoRA family and quantisation that llamapro does not implement: set to anything but
 * their off value they are an error naming the key, never silently ignored.
 */
const UNSUPPORTED_KEYS: Record<string, { off: unknown[]; what: string }> = {
  use_dora: { off: [false, null], what: 'DoRA (weight-decomposed LoRA)' },
  pissa_init: { off: [false, null], what: 'PiSSA initialisation' },
  pissa_convert: { off: [false, null], what: 'PiSSA conversion' },
  pissa_iter: { off: [16, null], what: 'PiSSA initialisation' },
  oft_rank: { off: [0, null], what: 'OFT' },
  oft_block_size: { off: [32, null], what: 'OFT' },
  oft_target: { off: ['all', null], what: 'OFT' },
  module_dropout: { off: [0, null], what: 'OFT' },
  quantization_bit: { off: [null], what: 'QLoRA / quantised training' },
  quantization_method: { off: [null, 'bnb', 'bitsandbytes'], what: 'QLoRA / quantised training' },
  quantization_type: { off: [null, 'nf4'], what: 'QLoRA / quantised training' },
  double_quantization: { off: [null, true, false], what: 'QLoRA / quantised training' },
  use_unsloth: { off: [false, null], what: 'Unsloth' },
}

/** LLaMA-Factory / transformers keys that configure things llamapro does not have; accepted with a warning. */
const IGNORED_KEYS = [
  'do_train',
  'do_eval',
  'dataloader_num_workers',
  'trust_remote_code',
  'flash_attn',
  'run_name',
  'disable_tqdm',
  'include_num_input_tokens_seen',
]

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
  // null is accepted where it is the default (the key's "not set")
  if (value === null) {
    if (spec.default === null) return null
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
    case 'number': {
      const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value
      if (typeof n !== 'number' || !Number.isFinite(n)) return fail('a number')
      if (kind.min !== undefined && n < kind.min) return fail(`a number >= ${kind.min}`)
      if (kind.max !== undefined && n > kind.max) return fail(`a number <= ${kind.max}`)
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

function withWarnings<T extends { configWarnings: string[] }>(settings: T, warnings: string[]): T {
  return { ...settings, configWarnings: [...settings.configWarnings, ...warnings] }
}

/** zero_stage, from the key itself or else from a `deepspeed:` JSON file's zero_optimization.stage. */
function zeroSettings(
  values: Record<string, unknown>,
  deepspeed: string | null,
  path: (p: string) => string,
  where: string,
): { zeroStage: 0 | 1; configWarnings: string[] } {
  if ('zero_stage' in values || deepspeed === null)
    return { zeroStage: (values.zero_stage as 0 | 1 | undefined) ?? 0, configWarnings: [] }
  const { zeroStage, warning } = zeroStageFromDeepspeed(path(deepspeed), where)
  return { zeroStage, configWarnings: [warning] }
}

/**
 * Validates raw key/value pairs (from YAML and overrides) into a TrainConfig. Relative paths (model_name_or_path,
 * dataset_dir, dataset files, output_dir, resume_from_checkpoint) are resolved against `baseDir`, which callers set
 * to the working directory: LLaMA-Factory's paths are plain Python paths, so its YAMLs (and their examples, run from
 * the repository root) mean the working directory, never the YAML file's folder.
 */
export function parseTrainConfig(
  raw: Record<string, unknown>,
  where: string,
  baseDir: string,
  options: { partial?: boolean } = {},
): TrainConfig {
  const values: Record<string, unknown> = {}
  const ignoredKeys: string[] = []
  for (const [key, value] of Object.entries(raw)) {
    if (key in KEYS) {
      values[key] = coerce(key, KEYS[key as TrainKey], value, where)
    } else if (key in UNSUPPORTED_KEYS) {
      const { off, what } = UNSUPPORTED_KEYS[key]!
      if (!off.includes(value as never)) {
        throw new ConfigKeyError(
          `${where}: ${key}: ${JSON.stringify(value)} asks for ${what}, which llamapro does not support ` +
            `(finetuning_type lora trains plain LoRA / rsLoRA adapters); remove ${key}`,
        )
      }
      ignoredKeys.push(key)
    } else if (IGNORED_KEYS.includes(key)) {
      ignoredKeys.push(key)
    } else {
      const suggestion = closestKey(key)
      throw new ConfigKeyError(`${where}: unknown key "${key}"${suggestion ? ` (did you mean "${suggestion}"?)` : ''}`)
    }
  }
  const get = <K extends TrainKey>(key: K): unknown => (key in values ? values[key] : KEYS[key].default)
  const requiredKeys = options.partial
    ? (['model_name_or_path'] as const)
    : values.tokenized_path
      ? (['model_name_or_path', 'output_dir'] as const)
      : (['model_name_or_path', 'output_dir', 'dataset'] as const)
  for (const required of requiredKeys) {
    if (get(required) === undefined)
      throw new ConfigKeyError(`${where}: missing key "${required}" (${KEYS[required].help})`)
  }
  const stage = get('stage') as 'pt' | 'sft'
  const path = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p))
  const loggingSteps = get('logging_steps') as number
  const valSize = get('val_size') as number
  if (get('bf16') && get('fp16')) throw new ConfigKeyError(`${where}: bf16 and fp16 are both true; choose one`)
  const resume = get('resume_from_checkpoint') as string | true | null
  const finetuningType = get('finetuning_type') as TrainConfig['finetuningType']
  const loraRank = get('lora_rank') as number
  // LLaMA-Factory's FinetuningArguments.__post_init__ checks
  if (finetuningType !== 'lora') {
    for (const key of ['loraplus_lr_ratio', 'adapter_name_or_path'] as const) {
      if (get(key) !== null)
        throw new ConfigKeyError(`${where}: \`${key}\` is only valid for LoRA training (finetuning_type: lora)`)
    }
  }
  const loraplus = get('loraplus_lr_ratio') as number | null
  if (loraplus !== null && !(loraplus > 0))
    throw new ConfigKeyError(`${where}: loraplus_lr_ratio must be a positive number, got ${loraplus}`)
  const adapters = ((get('adapter_name_or_path') as string | null) ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(path)
  const splitList = (key: TrainKey) =>
    ((get(key) as string | null | undefined) ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean)
  const evalDataset = splitList('eval_dataset')
  if (evalDataset.length > 0 && valSize > 1e-6)
    throw new ConfigKeyError(
      `${where}: val_size and eval_dataset are both set; use one (LLaMA-Factory: "Cannot specify \`val_size\` if ` +
        `\`eval_dataset\` is not None.")`,
    )
  const probs = splitList('interleave_probs')
  const interleaveProbs = probs.length > 0 ? probs.map(Number) : null
  if (interleaveProbs?.some((p) => !Number.isFinite(p)))
    throw new ConfigKeyError(
      `${where}: interleave_probs must be numbers, got ${JSON.stringify(get('interleave_probs'))}`,
    )
  if (get('streaming')) {
    // LLaMA-Factory's own checks (hparams/data_args.py, parser.py), in its words where it has them.
    if (!((get('max_steps') as number) > 0))
      throw new ConfigKeyError(
        `${where}: streaming: true needs max_steps (a stream has no known length, so num_train_epochs cannot say ` +
          `when to stop; LLaMA-Factory: "Please specify \`max_steps\` in streaming mode.")`,
      )
    if (valSize > 1e-6 && !Number.isInteger(valSize))
      throw new ConfigKeyError(
        `${where}: with streaming: true, val_size must be a count of sequences, got ${valSize} (LLaMA-Factory: ` +
          `"Streaming mode should have an integer val size.")`,
      )
    if (get('max_samples') !== null)
      throw new ConfigKeyError(
        `${where}: max_samples cannot be used with streaming: true (LLaMA-Factory: "\`max_samples\` is incompatible ` +
          `with \`streaming\`."); use max_steps to bound the run`,
      )
  }
  const tokenizedPath = get('tokenized_path') as string | null
  const report = parseReportTo(get('report_to') as string, where)
  const evalOnEach = get('eval_on_each_dataset') as boolean
  const eachWarnings =
    evalOnEach && evalDataset.length === 0
      ? [
          'eval_on_each_dataset: true has no effect without eval_dataset (as in LLaMA-Factory: it splits ' +
            'eval_dataset by name; val_size gives one split)',
        ]
      : []
  const loggingDir = get('logging_dir') as string | null
  const passed: Record<string, unknown> = {}
  for (const key of Object.keys(KEYS) as TrainKey[]) {
    if (!(CONSUMED_KEYS as readonly TrainKey[]).includes(key)) passed[camelCase(key)] = get(key)
  }
  const derived: DerivedFields = {
    loraAlpha: (get('lora_alpha') as number | null) || loraRank * 2,
    adapterNameOrPath: adapters,
    dataset: ((get('dataset') as string | undefined) ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    evalDataset,
    interleaveProbs,
    packing: (get('packing') as boolean | null) ?? stage === 'pt',
    evalSteps: (get('eval_steps') as number | null) ?? loggingSteps,
    evalStrategy:
      (get('eval_strategy') as TrainConfig['evalStrategy'] | null) ??
      (valSize > 0 || evalDataset.length > 0 ? 'steps' : 'no'),
    ...withWarnings(zeroSettings(values, get('deepspeed') as string | null, path, where), [
      ...report.warnings,
      ...eachWarnings,
    ]),
    reportTo: report.reportTo,
    ignoredKeys,
    given: { ...raw },
    baseDir,
  }
  return {
    ...(passed as Omit<KeyValues, keyof DerivedFields>),
    modelNameOrPath: path(get('model_name_or_path') as string),
    datasetDir: path(get('dataset_dir') as string),
    tokenizedPath: tokenizedPath === null ? null : path(tokenizedPath),
    outputDir: path((get('output_dir') as string | undefined) ?? '.'),
    resumeFromCheckpoint: typeof resume === 'string' ? path(resume) : resume,
    loggingDir: loggingDir === null ? null : path(loggingDir),
    ...derived,
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
      throw new ConfigKeyError(
        `unexpected argument "${arg}": overrides look like --learning_rate 1e-4 or learning_rate=1e-4`,
      )
    }
  }
  return out
}

/**
 * Reads a YAML config file and applies overrides. Relative paths in it resolve against the working directory (as
 * LLaMA-Factory's do), or against `options.cwd` when given.
 */
export async function loadTrainConfig(
  path: string,
  overrides: Record<string, unknown> = {},
  options: { partial?: boolean; cwd?: string } = {},
): Promise<TrainConfig> {
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
  if (typeof raw !== 'object' || Array.isArray(raw))
    throw new ConfigKeyError(`${path}: must be a mapping of keys to values`)
  const merged = { ...(raw as Record<string, unknown>), ...overrides }
  const config = parseTrainConfig(merged, path, resolve(options.cwd ?? process.cwd()), options)
  // Earlier llamapro resolved against the YAML's folder; say so rather than only "model folder not found".
  const model = merged.model_name_or_path
  if (
    typeof model === 'string' &&
    !isAbsolute(model) &&
    !existsSync(config.modelNameOrPath) &&
    existsSync(resolve(dirname(resolve(path)), model))
  ) {
    throw new ConfigKeyError(
      `${path}: model_name_or_path "${model}" is not in the working directory (${config.baseDir}), but is beside the ` +
        `YAML file: ` +
        `relative paths resolve against the working directory, as in LLaMA-Factory; run from ` +
        `${dirname(resolve(path))} or use an absolute path`,
    )
  }
  return config
}

/** Dtypes a config trains in: activations (and frozen weights), and trainable master weights. */
export function trainingDtypes(config: Pick<TrainConfig, 'bf16' | 'fp16' | 'pureBf16'>): {
  compute: ModelDtype
  master: ModelDtype
} {
  if (config.pureBf16) return { compute: 'bfloat16', master: 'bfloat16' }
  if (config.bf16) return { compute: 'bfloat16', master: 'float32' }
  if (config.fp16) return { compute: 'float16', master: 'float32' }
  return { compute: 'float32', master: 'float32' }
}

/** Every known key with its default and a one-line description (for help text). */
export function trainKeyHelp(): string {
  return Object.entries(KEYS)
    .map(
      ([key, spec]) =>
        `  ${key.padEnd(28)} ${spec.help}${spec.default !== undefined && spec.default !== null ? ` (default ${spec.default})` : ''}`,
    )
    .join('\n')
}
