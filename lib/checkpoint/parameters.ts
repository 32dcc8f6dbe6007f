/**
 * The parameters a config implies, with Hugging Face names and shapes, in the order transformers' state_dict
 * lists them. Checkpoints are validated against this list, and the native module registers the same names.
 */
import type { ModelConfig } from './config.js'

export interface ParameterSpec {
  name: string
  shape: number[]
}

export const layerPrefix = (layer: number): string => `model.layers.${layer}.`

/** The parameters of decoder layer `layer`. */
export function layerParameters(config: ModelConfig, layer: number): ParameterSpec[] {
  const p = layerPrefix(layer)
  const { hiddenSize: h, intermediateSize: f, numHeads, numKvHeads, headDim } = config
  const q = numHeads * headDim
  const kv = numKvHeads * headDim
  const out: ParameterSpec[] = []
  const linear = (name: string, outFeatures: number, inFeatures: number, bias: boolean) => {
    out.push({ name: `${p}${name}.weight`, shape: [outFeatures, inFeatures] })
    if (bias) out.push({ name: `${p}${name}.bias`, shape: [outFeatures] })
  }
  linear('self_attn.q_proj', q, h, config.qkvBias)
  linear('self_attn.k_proj', kv, h, config.qkvBias)
  linear('self_attn.v_proj', kv, h, config.qkvBias)
  linear('self_attn.o_proj', h, q, config.oBias)
  linear('mlp.gate_proj', f, h, config.mlpBias)
  linear('mlp.up_proj', f, h, config.mlpBias)
  linear('mlp.down_proj', h, f, config.mlpBias)
  out.push({ name: `${p}input_layernorm.weight`, shape: [h] })
  out.push({ name: `${p}post_attention_layernorm.weight`, shape: [h] })
  return out
}

/** Every parameter of the model; `lm_head.weight` only when embeddings are not tied. */
export function expectedParameters(config: ModelConfig): ParameterSpec[] {
  const out: ParameterSpec[] = [{ name: 'model.embed_tokens.weight', shape: [config.vocabSize, config.hiddenSize] }]
  for (let i = 0; i < config.numLayers; i++) out.push(...layerParameters(config, i))
  out.push({ name: 'model.norm.weight', shape: [config.hiddenSize] })
  if (!config.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [config.vocabSize, config.hiddenSize] })
  return out
}

const LAYER_NAME = /^model\.layers\.(\d+)\.(.+)$/

/**
 * Splits a parameter name into its layer index and the rest, reading the index at its position
 * (`model.layers.<i>.`), so numbers elsewhere in a name (MoE expert indices) are never taken for a layer.
 */
export function parseLayerName(name: string): { layer: number; rest: string } | undefined {
  const match = LAYER_NAME.exec(name)
  if (!match) return undefined
  return { layer: Number(match[1]), rest: match[2]! }
}

/** Tensors some checkpoints carry that are not parameters (recomputed buffers): skipped when loading. */
export const IGNORED_TENSOR = /(^|\.)rotary_emb\.inv_freq$/
