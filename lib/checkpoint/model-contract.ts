/**
 * The model contract: the decoder's shape as lib/ hands it to the addon, declared once. The TypeScript types
 * (NativeModelSpec, and ModelConfig built on it), config.json's size limits (CONFIG_LIMITS) and the spec lib/ sends
 * (modelSpec) come from here; so do the addon's checks: lib/native/load.ts passes nativeModelContract() to the addon
 * when it loads, which refuses to load if its own fields (native/model_spec.h) differ, and then checks every spec
 * against these limits before it allocates anything (native/model_contract.cc SpecFromJs). A spec that slipped past
 * lib/ must not make the addon allocate per-layer modules or tensors until the process aborts.
 */

/**
 * The integer sizes, each with its config.json key and upper bound. The bounds are far above any published
 * LLaMA-family model (the largest have ~130 layers, hidden 16384, vocab ~260k); they exist so that a corrupt or
 * hostile config.json is refused instead of allocated.
 */
export const MODEL_SIZE_FIELDS = {
  vocabSize: { configKey: 'vocab_size', max: 1 << 24 },
  hiddenSize: { configKey: 'hidden_size', max: 1 << 17 },
  intermediateSize: { configKey: 'intermediate_size', max: 1 << 19 },
  numLayers: { configKey: 'num_hidden_layers', max: 4096 },
  numHeads: { configKey: 'num_attention_heads', max: 1 << 12 },
  numKvHeads: { configKey: 'num_key_value_heads', max: 1 << 12 },
  headDim: { configKey: 'head_dim', max: 1 << 12 },
} as const satisfies Record<string, { configKey: string; max: number }>

/**
 * Which linear layers have biases (q/k/v: Qwen2, or LLaMA with attention_bias; o: LLaMA with attention_bias;
 * gate/up/down: LLaMA with mlp_bias), and whether lm_head is the embedding.
 */
export const MODEL_FLAG_FIELDS = ['qkvBias', 'oBias', 'mlpBias', 'tieWordEmbeddings'] as const

/** Rotary scaling the addon implements (native/llama_modules.cc RotaryInverseFrequencies). */
export const ROPE_TYPES = ['default', 'linear', 'llama3'] as const
/** theta; factor (linear and llama3); lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings (llama3). */
export const ROPE_NUMBER_FIELDS = [
  'theta',
  'factor',
  'lowFreqFactor',
  'highFreqFactor',
  'originalMaxPositionEmbeddings',
] as const

/** Bounds config.json only: the addon has no position table. */
export const MAX_POSITION_EMBEDDINGS_LIMIT = 1 << 24

export type ModelSizeField = keyof typeof MODEL_SIZE_FIELDS
export type ModelFlagField = (typeof MODEL_FLAG_FIELDS)[number]
export type RopeType = (typeof ROPE_TYPES)[number]
export type RopeConfig = { type: RopeType } & { [K in (typeof ROPE_NUMBER_FIELDS)[number]]: number }

/** What the native module is built from. */
export type NativeModelSpec = { [K in ModelSizeField]: number } & { [K in ModelFlagField]: boolean } & {
  rmsNormEps: number
  rope: RopeConfig
  /** Per layer: the sliding attention window in tokens, or null for full causal attention. */
  slidingWindows: (number | null)[]
}

type ConfigKey = (typeof MODEL_SIZE_FIELDS)[ModelSizeField]['configKey'] | 'max_position_embeddings'

/** config.json's upper bounds, by key (lib/checkpoint/config.ts refuses a value above them). */
export const CONFIG_LIMITS: Readonly<Record<ConfigKey, number>> = Object.freeze({
  ...(Object.fromEntries(Object.values(MODEL_SIZE_FIELDS).map((f) => [f.configKey, f.max])) as Record<
    ConfigKey,
    number
  >),
  max_position_embeddings: MAX_POSITION_EMBEDDINGS_LIMIT,
})

/** The spec's fields taken from a config that has them (a ModelConfig), copied so the addon gets plain values. */
export function modelSpec(config: NativeModelSpec): NativeModelSpec {
  const spec: Record<string, unknown> = {}
  for (const field of Object.keys(MODEL_SIZE_FIELDS) as ModelSizeField[]) spec[field] = config[field]
  for (const field of MODEL_FLAG_FIELDS) spec[field] = config[field]
  spec.rmsNormEps = config.rmsNormEps
  spec.rope = { ...config.rope }
  spec.slidingWindows = [...config.slidingWindows]
  return spec as NativeModelSpec
}

/** What the addon checks specs against (native/model_contract.cc SetModelContract). */
export interface NativeModelContract {
  sizes: Record<ModelSizeField, number>
  flags: string[]
  ropeTypes: string[]
  ropeNumbers: string[]
}

export function nativeModelContract(): NativeModelContract {
  return {
    sizes: Object.fromEntries(Object.entries(MODEL_SIZE_FIELDS).map(([field, f]) => [field, f.max])) as Record<
      ModelSizeField,
      number
    >,
    flags: [...MODEL_FLAG_FIELDS],
    ropeTypes: [...ROPE_TYPES],
    ropeNumbers: [...ROPE_NUMBER_FIELDS],
  }
}
