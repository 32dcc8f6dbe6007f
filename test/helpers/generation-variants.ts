/** The tiny architectures generation is checked on: each path of the training forward that decoding must match. */
import type { TinyModelOptions } from './tiny-model.js'

export const GENERATION_VARIANTS: Record<string, TinyModelOptions> = {
  llama: { kvHeads: 2, seed: 3 },
  // A window of 5 with prompts and outputs far longer than it.
  mistral_window: { modelType: 'mistral', kvHeads: 1, seed: 5, config: { sliding_window: 5 } },
  qwen2_bias: { modelType: 'qwen2', kvHeads: 2, seed: 7 },
  tied: { tie: true, seed: 9, headDim: 16 },
  llama3_rope: {
    seed: 11,
    config: {
      rope_theta: 500000,
      rope_scaling: {
        rope_type: 'llama3',
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 16,
      },
    },
  },
}
