/**
 * Model shapes for `llamapro bench`, with random weights generated in memory (no download):
 *   tiny   overhead-bound: per-op costs dominate, which is where a C++ step beats Python
 *   small  8 layers, hidden 256, batch 4 x 128: compute-bound on a CPU
 *   1b     a Llama-3.2-1B shape, for a GPU
 *   8b     a Llama-3-8B shape, for a GPU
 */
export interface Preset {
  name: string
  config: Record<string, unknown>
  batch: number
  seq: number
}

const llama = (shape: Record<string, unknown>): Record<string, unknown> => ({
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  max_position_embeddings: 8192,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  initializer_range: 0.02,
  hidden_act: 'silu',
  torch_dtype: 'float32',
  ...shape,
})

export const PRESETS: Record<string, Preset> = {
  tiny: {
    name: 'tiny',
    config: llama({
      vocab_size: 512,
      hidden_size: 64,
      intermediate_size: 172,
      num_hidden_layers: 4,
      num_attention_heads: 4,
      num_key_value_heads: 2,
    }),
    batch: 2,
    seq: 32,
  },
  small: {
    name: 'small',
    config: llama({
      vocab_size: 32000,
      hidden_size: 256,
      intermediate_size: 688,
      num_hidden_layers: 8,
      num_attention_heads: 8,
      num_key_value_heads: 8,
    }),
    batch: 4,
    seq: 128,
  },
  '1b': {
    name: '1b',
    config: llama({
      vocab_size: 128256,
      hidden_size: 2048,
      intermediate_size: 8192,
      num_hidden_layers: 16,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      rope_theta: 500000,
      tie_word_embeddings: true,
      torch_dtype: 'bfloat16',
    }),
    batch: 8,
    seq: 1024,
  },
  '8b': {
    name: '8b',
    config: llama({
      vocab_size: 128256,
      hidden_size: 4096,
      intermediate_size: 14336,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      rope_theta: 500000,
      torch_dtype: 'bfloat16',
    }),
    batch: 4,
    seq: 1024,
  },
}
