/**
 * The `llama` architecture between GGUF and Hugging Face: metadata <-> config.json, and tensor names. Facts from
 * llama.cpp's convert_hf_to_gguf.py (what it writes) and transformers' GGUF loader (what it reads back).
 */
import { GgufError, type GgufMetadata } from './reader.js'

/** GGUF tensor name (without .weight/.bias) -> HF module name, per layer and outside the layers. */
const LAYER_NAMES: Record<string, string> = {
  attn_norm: 'input_layernorm',
  ffn_norm: 'post_attention_layernorm',
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
}
const GLOBAL_NAMES: Record<string, string> = {
  token_embd: 'model.embed_tokens',
  output_norm: 'model.norm',
  output: 'lm_head',
}
const HF_LAYER_NAMES = Object.fromEntries(Object.entries(LAYER_NAMES).map(([g, h]) => [h, g]))
const HF_GLOBAL_NAMES = Object.fromEntries(Object.entries(GLOBAL_NAMES).map(([g, h]) => [h, g]))

/** The HF name of a GGUF tensor, or undefined when llamapro has no place for it. */
export function hfTensorName(ggufName: string): string | undefined {
  const layer = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(ggufName)
  if (layer) {
    const module = LAYER_NAMES[layer[2]!]
    return module ? `model.layers.${Number(layer[1])}.${module}.${layer[3]}` : undefined
  }
  const global = /^([a-z_]+)\.(weight|bias)$/.exec(ggufName)
  const module = global ? GLOBAL_NAMES[global[1]!] : undefined
  return module ? `${module}.${global![2]}` : undefined
}

export function ggufTensorName(hfName: string): string | undefined {
  const layer = /^model\.layers\.(\d+)\.([a-z_]+\.[a-z_]+|[a-z_]+)\.(weight|bias)$/.exec(hfName)
  if (layer) {
    const module = HF_LAYER_NAMES[layer[2]!]
    return module ? `blk.${layer[1]}.${module}.${layer[3]}` : undefined
  }
  const global = /^(model\.embed_tokens|model\.norm|lm_head)\.(weight|bias)$/.exec(hfName)
  return global ? `${HF_GLOBAL_NAMES[global[1]!]}.${global[2]}` : undefined
}

/** q and k projections are stored with llama.cpp's rotary row order; the number of heads their rows hold. */
export function permutedHeads(hfName: string, numHeads: number, numKvHeads: number): number | undefined {
  if (/\.self_attn\.q_proj\.(weight|bias)$/.test(hfName)) return numHeads
  if (/\.self_attn\.k_proj\.(weight|bias)$/.test(hfName)) return numKvHeads
  return undefined
}

/** config.json for the model a GGUF describes (transformers' LlamaConfig keys). */
export function llamaConfigFromGguf(
  meta: GgufMetadata,
  tensorNames: ReadonlySet<string>,
  vocabSize: number,
): Record<string, unknown> {
  const path = meta.file.path
  const arch = meta.string('general.architecture', true)
  if (arch !== 'llama') {
    throw new GgufError(
      path,
      `general.architecture is "${arch}"; llamapro imports the "llama" architecture (LLaMA, SmolLM, TinyLlama, ` +
        `Mistral-as-llama, ...)`,
    )
  }
  const k = (key: string) => `llama.${key}`
  const hidden = meta.integer(k('embedding_length'), true)
  const heads = meta.integer(k('attention.head_count'), true)
  const kvHeads = meta.integer(k('attention.head_count_kv')) ?? heads
  if (heads === 0 || kvHeads === 0 || heads % kvHeads !== 0) {
    throw new GgufError(
      path,
      `llama.attention.head_count (${heads}) must be a positive multiple of llama.attention.head_count_kv (${kvHeads})`,
    )
  }
  const headDim = meta.integer(k('attention.key_length')) ?? hidden / heads
  const valueLength = meta.integer(k('attention.value_length'))
  if (valueLength !== undefined && valueLength !== headDim) {
    throw new GgufError(
      path,
      `llama.attention.value_length (${valueLength}) differs from key_length (${headDim}); LLaMA needs them equal`,
    )
  }
  if (!Number.isInteger(headDim))
    throw new GgufError(
      path,
      `embedding_length ${hidden} is not divisible by head_count ${heads} and there is no llama.attention.key_length`,
    )
  const ropeDims = meta.integer(k('rope.dimension_count'))
  if (ropeDims !== undefined && ropeDims !== headDim) {
    throw new GgufError(
      path,
      `llama.rope.dimension_count is ${ropeDims} but a head has ${headDim} dimensions; partial rotary embeddings are ` +
        `not supported`,
    )
  }
  if (tensorNames.has('rope_freqs.weight')) {
    throw new GgufError(
      path,
      "the file holds rope_freqs.weight (llama.cpp's form of Llama 3.1 rope scaling); its factors cannot be " +
        'recovered exactly, so it is not imported',
    )
  }
  const config: Record<string, unknown> = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: hidden,
    intermediate_size: meta.integer(k('feed_forward_length'), true),
    num_hidden_layers: meta.integer(k('block_count'), true),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    hidden_act: 'silu',
    max_position_embeddings: meta.integer(k('context_length')) ?? 2048,
    rms_norm_eps: meta.number(k('attention.layer_norm_rms_epsilon')) ?? 1e-5,
    rope_theta: meta.number(k('rope.freq_base')) ?? 10000,
    vocab_size: vocabSize,
    tie_word_embeddings: !tensorNames.has('output.weight'),
    attention_bias: tensorNames.has('blk.0.attn_q.bias'),
    mlp_bias: tensorNames.has('blk.0.ffn_up.bias'),
    attention_dropout: 0,
    initializer_range: 0.02,
    pretraining_tp: 1,
    use_cache: true,
  }
  const scaling = meta.string(k('rope.scaling.type'))
  if (scaling !== undefined && scaling !== 'none') {
    if (scaling !== 'linear')
      throw new GgufError(path, `llama.rope.scaling.type "${scaling}" is not supported (valid: none, linear)`)
    const factor = meta.number(k('rope.scaling.factor'))
    if (factor === undefined || !(factor > 0))
      throw new GgufError(path, 'llama.rope.scaling.factor must be a positive number when rope.scaling.type is linear')
    config.rope_scaling = { rope_type: 'linear', factor }
  } else {
    config.rope_scaling = null
  }
  const ids = {
    bos_token_id: meta.integer('tokenizer.ggml.bos_token_id'),
    eos_token_id: meta.integer('tokenizer.ggml.eos_token_id'),
    pad_token_id: meta.integer('tokenizer.ggml.padding_token_id'),
  }
  for (const [key, id] of Object.entries(ids)) if (id !== undefined) config[key] = id
  return config
}

export type GgufMetadataValue =
  | { type: 'string'; value: string }
  | { type: 'u32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'strings'; value: string[] }
  | { type: 'f32s'; value: number[] }
  | { type: 'i32s'; value: number[] }

/** GGUF metadata for a HF llama config (the inverse of llamaConfigFromGguf). */
export function llamaMetadataFromConfig(
  raw: Record<string, unknown>,
  name: string,
  path: string,
): [string, GgufMetadataValue][] {
  const num = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new GgufError(path, `config.json: "${key}" must be a number`)
    return v
  }
  const hidden = num('hidden_size')
  const heads = num('num_attention_heads')
  const headDim = typeof raw.head_dim === 'number' ? raw.head_dim : hidden / heads
  const out: [string, GgufMetadataValue][] = [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: name }],
    ['llama.context_length', { type: 'u32', value: num('max_position_embeddings', 2048) }],
    ['llama.embedding_length', { type: 'u32', value: hidden }],
    ['llama.block_count', { type: 'u32', value: num('num_hidden_layers') }],
    ['llama.feed_forward_length', { type: 'u32', value: num('intermediate_size') }],
    ['llama.rope.dimension_count', { type: 'u32', value: headDim }],
    ['llama.attention.head_count', { type: 'u32', value: heads }],
    ['llama.attention.head_count_kv', { type: 'u32', value: num('num_key_value_heads', heads) }],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: num('rms_norm_eps', 1e-6) }],
    ['llama.rope.freq_base', { type: 'f32', value: num('rope_theta', 10000) }],
    ['llama.vocab_size', { type: 'u32', value: num('vocab_size') }],
  ]
  if (headDim !== hidden / heads) {
    out.push(
      ['llama.attention.key_length', { type: 'u32', value: headDim }],
      ['llama.attention.value_length', { type: 'u32', value: headDim }],
    )
  }
  const scaling = (raw.rope_scaling ?? null) as Record<string, unknown> | null
  if (scaling !== null) {
    const type = scaling.rope_type ?? scaling.type
    if (type === 'linear' && typeof scaling.factor === 'number') {
      out.push(
        ['llama.rope.scaling.type', { type: 'string', value: 'linear' }],
        ['llama.rope.scaling.factor', { type: 'f32', value: scaling.factor }],
      )
    } else if (type !== 'default') {
      throw new GgufError(
        path,
        `config.json: rope_scaling of type ${JSON.stringify(type)} cannot be exported (supported: linear)`,
      )
    }
  }
  return out
}
