/**
 * Tiny random Hugging Face checkpoints, written with nothing but TypeScript (no LibTorch), for tests.
 * Values are drawn from a seeded generator and returned as the float32 numbers actually stored (after rounding
 * to BF16/F16), so tests can compare what any reader sees with what was written.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseModelConfig, type ModelConfig } from '../../lib/checkpoint/config.js'
import { SAFETENSORS_DTYPE_SIZES } from '../../lib/checkpoint/dtypes.js'
import { expectedParameters } from '../../lib/checkpoint/parameters.js'
import { encodeSafetensorsHeader, safetensorsOrder } from '../../lib/checkpoint/safetensors.js'
import { planShards, shardIndexJson } from '../../lib/checkpoint/shards.js'
import { encodeFloats, type FloatDtype } from './floats.js'
import { mulberry32 } from '../../lib/util/random.js'

export interface TinyModelOptions {
  modelType?: 'llama' | 'mistral' | 'qwen2'
  hidden?: number
  intermediate?: number
  layers?: number
  heads?: number
  kvHeads?: number
  headDim?: number
  vocab?: number
  tie?: boolean
  attentionBias?: boolean
  mlpBias?: boolean
  dtype?: FloatDtype
  /** Write shards of at most this many bytes (with an index). */
  shardSize?: number
  seed?: number
  std?: number
  /** Extra or overriding config.json keys. */
  config?: Record<string, unknown>
  /** Tensor names whose values are all zero (for tests of expanded-block detection). */
  zero?: string[]
}

export interface TinyModel {
  dir: string
  config: ModelConfig
  rawConfig: Record<string, unknown>
  /** Stored values, as float32, in state_dict order. */
  tensors: Map<string, { shape: number[]; values: Float32Array }>
}

export function normalSampler(seed: number): () => number {
  const uniform = mulberry32(seed)
  return () => {
    const u = Math.max(uniform(), 1e-12)
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform())
  }
}

export function tinyRawConfig(o: TinyModelOptions = {}): Record<string, unknown> {
  const modelType = o.modelType ?? 'llama'
  const hidden = o.hidden ?? 32
  const heads = o.heads ?? 4
  const raw: Record<string, unknown> = {
    architectures: [{ llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' }[modelType]],
    model_type: modelType,
    vocab_size: o.vocab ?? 96,
    hidden_size: hidden,
    intermediate_size: o.intermediate ?? 64,
    num_hidden_layers: o.layers ?? 4,
    num_attention_heads: heads,
    num_key_value_heads: o.kvHeads ?? heads,
    max_position_embeddings: 256,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    tie_word_embeddings: o.tie ?? false,
    torch_dtype: { F32: 'float32', BF16: 'bfloat16', F16: 'float16' }[o.dtype ?? 'F32'],
    bos_token_id: 1,
    eos_token_id: 2,
    initializer_range: 0.02,
    hidden_act: 'silu',
  }
  if (o.headDim !== undefined) raw.head_dim = o.headDim
  if (modelType === 'llama') {
    raw.attention_bias = o.attentionBias ?? false
    raw.mlp_bias = o.mlpBias ?? false
  }
  return { ...raw, ...o.config }
}

export async function writeTinyModel(dir: string, o: TinyModelOptions = {}): Promise<TinyModel> {
  const rawConfig = tinyRawConfig(o)
  const config = parseModelConfig(rawConfig)
  const dtype = o.dtype ?? 'F32'
  const normal = normalSampler(o.seed ?? 1)
  const std = o.std ?? 0.2
  const zero = new Set(o.zero ?? [])
  const tensors = new Map<string, { shape: number[]; values: Float32Array }>()
  const bytes = new Map<string, Uint8Array>()
  for (const p of expectedParameters(config)) {
    const n = p.shape.reduce((a, b) => a * b, 1)
    const raw = new Float32Array(n)
    const isNorm = p.name.endsWith('norm.weight')
    for (let i = 0; i < n; i++) raw[i] = zero.has(p.name) ? 0 : isNorm ? 1 + 0.1 * normal() : std * normal()
    const { encoded, stored } = encodeFloats(raw, dtype)
    tensors.set(p.name, { shape: p.shape, values: stored })
    bytes.set(p.name, encoded)
  }
  await mkdir(dir, { recursive: true })
  const entries = [...tensors].map(([name, t]) => ({ name, dtype, shape: t.shape, nbytes: bytes.get(name)!.length }))
  const shards = planShards(entries, o.shardSize ?? Number.MAX_SAFE_INTEGER)
  for (const shard of shards) {
    const ordered = safetensorsOrder(shard.tensors)
    const header = encodeSafetensorsHeader(ordered)
    await writeFile(join(dir, shard.file), Buffer.concat([header.bytes, ...ordered.map((t) => bytes.get(t.name)!)]))
  }
  if (shards.length > 1) {
    const totalParameters = entries.reduce((s, e) => s + e.nbytes / SAFETENSORS_DTYPE_SIZES[dtype], 0)
    await writeFile(join(dir, 'model.safetensors.index.json'), shardIndexJson(shards, totalParameters))
  }
  await writeFile(join(dir, 'config.json'), `${JSON.stringify(rawConfig, null, 2)}\n`)
  return { dir, config, rawConfig, tensors }
}
