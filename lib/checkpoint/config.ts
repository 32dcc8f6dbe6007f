/**
 * config.json of a Hugging Face LLaMA-family checkpoint (llama, mistral, qwen2), validated and normalised into
 * what the decoder needs. Errors name the file and the key, and say what would be valid.
 */
import { LlamaproError } from '../errors.js'
import { type ModelDtype, parseModelDtype } from './dtypes.js'
import { CONFIG_LIMITS, type NativeModelSpec, ROPE_TYPES, type RopeConfig, type RopeType } from './model-contract.js'

export const SUPPORTED_MODEL_TYPES = ['llama', 'mistral', 'qwen2'] as const
export type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number]

export type { RopeConfig, RopeType } from './model-contract.js'
export const SUPPORTED_ROPE_TYPES: readonly RopeType[] = ROPE_TYPES

/**
 * The normalised config.json: the spec the addon is built from (its fields and limits declared once in
 * lib/checkpoint/model-contract.ts), and what only lib/ uses.
 */
export interface ModelConfig extends NativeModelSpec {
  modelType: ModelType
  maxPositionEmbeddings: number
  /** The dtype the checkpoint declares (torch_dtype / dtype), if any. */
  dtype: ModelDtype | null
}

export class ConfigError extends LlamaproError {
  constructor(path: string, message: string) {
    super('LLAMAPRO_CONFIG', `${path}: ${message}`)
    this.name = 'ConfigError'
  }
}

type Raw = Record<string, unknown>

/** config.json's size bounds (declared with the spec's fields in lib/checkpoint/model-contract.ts). */
export { CONFIG_LIMITS }

function positiveInt(path: string, raw: Raw, key: string, fallback?: number): number {
  const value = raw[key] ?? fallback
  if (value === undefined) throw new ConfigError(path, `missing key "${key}" (a positive integer)`)
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new ConfigError(path, `key "${key}" must be a positive integer, got ${JSON.stringify(value)}`)
  }
  const limit = (CONFIG_LIMITS as Record<string, number>)[key]
  if (limit !== undefined && value > limit) {
    throw new ConfigError(
      path,
      `key "${key}" is ${value}, above the largest llamapro supports (${limit}); is the file corrupt?`,
    )
  }
  return value
}

function positiveNumber(path: string, raw: Raw, key: string, fallback: number): number {
  const value = raw[key] ?? fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ConfigError(path, `key "${key}" must be a positive number, got ${JSON.stringify(value)}`)
  }
  return value
}

function bool(path: string, raw: Raw, key: string, fallback: boolean): boolean {
  const value = raw[key] ?? fallback
  if (typeof value !== 'boolean')
    throw new ConfigError(path, `key "${key}" must be true or false, got ${JSON.stringify(value)}`)
  return value
}

/** rope_scaling (transformers 4.x) or rope_parameters (newer), which also carries rope_theta. */
function parseRope(path: string, raw: Raw): RopeConfig {
  const source = raw.rope_parameters !== undefined && raw.rope_parameters !== null ? 'rope_parameters' : 'rope_scaling'
  const params = raw[source]
  if (params !== undefined && params !== null && (typeof params !== 'object' || Array.isArray(params))) {
    throw new ConfigError(path, `key "${source}" must be an object or null, got ${JSON.stringify(params)}`)
  }
  const p = (params ?? {}) as Raw
  const theta = positiveNumber(path, { rope_theta: p.rope_theta ?? raw.rope_theta }, 'rope_theta', 10000)
  const typeValue = p.rope_type ?? p.type ?? 'default'
  if (typeof typeValue !== 'string' || !(SUPPORTED_ROPE_TYPES as readonly string[]).includes(typeValue)) {
    throw new ConfigError(
      path,
      `${source}.rope_type ${JSON.stringify(typeValue)} is not supported (supported: ` +
        `${SUPPORTED_ROPE_TYPES.join(', ')})`,
    )
  }
  const type = typeValue as RopeType
  const where = (key: string) => `${source}.${key}`
  const num = (key: string, fallback?: number): number => {
    const value = p[key] ?? fallback
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new ConfigError(
        path,
        `key "${where(key)}" must be a positive number for rope_type ${type}, got ${JSON.stringify(value)}`,
      )
    }
    return value
  }
  if (p.partial_rotary_factor !== undefined && p.partial_rotary_factor !== 1) {
    throw new ConfigError(
      path,
      `${where('partial_rotary_factor')} ${JSON.stringify(p.partial_rotary_factor)} is not supported (only 1.0)`,
    )
  }
  const rope: RopeConfig = {
    type,
    theta,
    factor: 1,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 8192,
  }
  if (type === 'linear') rope.factor = num('factor')
  if (type === 'llama3') {
    rope.factor = num('factor')
    rope.lowFreqFactor = num('low_freq_factor')
    rope.highFreqFactor = num('high_freq_factor')
    rope.originalMaxPositionEmbeddings = num('original_max_position_embeddings')
    if (rope.highFreqFactor <= rope.lowFreqFactor) {
      throw new ConfigError(path, `${where('high_freq_factor')} must be larger than ${where('low_freq_factor')}`)
    }
  }
  return rope
}

function parseSlidingWindows(path: string, raw: Raw, modelType: ModelType, numLayers: number): (number | null)[] {
  const window = raw.sliding_window
  const windowSize = (): number => {
    if (typeof window !== 'number' || !Number.isSafeInteger(window) || window <= 0) {
      throw new ConfigError(
        path,
        `key "sliding_window" must be a positive integer when sliding attention is used, got ${JSON.stringify(window)}`,
      )
    }
    return window
  }
  // Qwen2 uses no window at all unless use_sliding_window is set, whatever layer_types says (as transformers).
  if (modelType === 'qwen2' && raw.use_sliding_window !== true) return Array.from({ length: numLayers }, () => null)
  if (raw.layer_types !== undefined && raw.layer_types !== null) {
    const types = raw.layer_types
    if (!Array.isArray(types) || types.length !== numLayers) {
      throw new ConfigError(
        path,
        `key "layer_types" must list one entry per layer (${numLayers}), got ` +
          `${Array.isArray(types) ? types.length : JSON.stringify(types)}`,
      )
    }
    return types.map((t, i) => {
      if (t === 'full_attention') return null
      if (t === 'sliding_attention') return windowSize()
      throw new ConfigError(
        path,
        `layer_types[${i}] is ${JSON.stringify(t)} (valid: "full_attention", "sliding_attention")`,
      )
    })
  }
  if (modelType === 'mistral' && window !== null) {
    // transformers' MistralConfig defaults sliding_window to 4096 when the key is absent
    const size = window === undefined ? 4096 : windowSize()
    return Array.from({ length: numLayers }, () => size)
  }
  if (modelType === 'qwen2' && window !== undefined && window !== null) {
    const first = positiveIntOrZero(path, raw, 'max_window_layers', numLayers)
    return Array.from({ length: numLayers }, (_, i) => (i >= first ? windowSize() : null))
  }
  return Array.from({ length: numLayers }, () => null)
}

function positiveIntOrZero(path: string, raw: Raw, key: string, fallback: number): number {
  const value = raw[key] ?? fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ConfigError(path, `key "${key}" must be a non-negative integer, got ${JSON.stringify(value)}`)
  }
  return value
}

/** Validates a parsed config.json. `path` is used in error messages. */
export function parseModelConfig(raw: unknown, path = 'config.json'): ModelConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(path, 'must be a JSON object')
  }
  const r = raw as Raw
  const modelType = r.model_type
  if (typeof modelType !== 'string' || !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw new ConfigError(
      path,
      `model_type ${JSON.stringify(modelType)} is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`,
    )
  }
  const type = modelType as ModelType
  const hiddenSize = positiveInt(path, r, 'hidden_size')
  const numHeads = positiveInt(path, r, 'num_attention_heads')
  const numKvHeads = positiveInt(path, r, 'num_key_value_heads', numHeads)
  const numLayers = positiveInt(path, r, 'num_hidden_layers')
  if (r.head_dim === null) delete r.head_dim
  if (r.head_dim === undefined && hiddenSize % numHeads !== 0) {
    throw new ConfigError(
      path,
      `hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}; set head_dim`,
    )
  }
  const headDim = positiveInt(path, r, 'head_dim', hiddenSize / numHeads)
  if (headDim % 2 !== 0)
    throw new ConfigError(path, `head_dim ${headDim} must be even (rotary embeddings rotate pairs)`)
  if (numHeads % numKvHeads !== 0) {
    throw new ConfigError(
      path,
      `num_attention_heads ${numHeads} must be divisible by num_key_value_heads ${numKvHeads}`,
    )
  }
  const activation = r.hidden_act ?? 'silu'
  if (activation !== 'silu') {
    throw new ConfigError(
      path,
      `hidden_act ${JSON.stringify(activation)} is not supported (LLaMA, Mistral and Qwen2 use "silu")`,
    )
  }
  if (r.partial_rotary_factor !== undefined && r.partial_rotary_factor !== null && r.partial_rotary_factor !== 1) {
    throw new ConfigError(
      path,
      `partial_rotary_factor ${JSON.stringify(r.partial_rotary_factor)} is not supported (only 1.0)`,
    )
  }
  const attentionBias = bool(path, r, 'attention_bias', false)
  if (type !== 'llama' && r.mlp_bias === true) throw new ConfigError(path, `mlp_bias is not used by ${type} models`)
  const dtypeValue = r.torch_dtype ?? r.dtype
  let dtype: ModelDtype | null = null
  if (typeof dtypeValue === 'string') {
    dtype = parseModelDtype(dtypeValue) ?? null
    if (!dtype)
      throw new ConfigError(
        path,
        `torch_dtype ${JSON.stringify(dtypeValue)} is not supported (float32, bfloat16, float16)`,
      )
  }
  return {
    modelType: type,
    vocabSize: positiveInt(path, r, 'vocab_size'),
    hiddenSize,
    intermediateSize: positiveInt(path, r, 'intermediate_size'),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: positiveNumber(path, r, 'rms_norm_eps', 1e-6),
    rope: parseRope(path, r),
    qkvBias: type === 'qwen2' ? true : attentionBias,
    oBias: type === 'llama' ? attentionBias : false,
    mlpBias: type === 'llama' ? bool(path, r, 'mlp_bias', false) : false,
    tieWordEmbeddings: bool(path, r, 'tie_word_embeddings', false),
    slidingWindows: parseSlidingWindows(path, r, type, numLayers),
    maxPositionEmbeddings: positiveInt(path, r, 'max_position_embeddings', 2048),
    dtype,
  }
}
