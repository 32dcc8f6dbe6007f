/**
 * The types of generate()'s input, options and result, in their own file: LlamaModel's generate() methods name
 * them, and generate.ts names LlamaModel, so with the types there the two files would import each other's types.
 */
import type { Message } from '../data/dataset.js'
import type { TextTokenizer } from '../data/tokenizer.js'
import type { KvCache } from './kv-cache.js'

/** A plain text prompt, a chat conversation (rendered by a template), or token ids fed as they are. */
export type GenerateInput = string | readonly Message[] | { ids: readonly number[] }

export interface GenerateOptions {
  /** Most tokens to generate (default: generation_config.json max_new_tokens, else 256). */
  maxNewTokens?: number
  /** 0 is greedy. Default: generation_config.json's temperature when it says do_sample, else 0. */
  temperature?: number
  /** Default: generation_config.json top_k, else 50 (transformers' default); 0 is no limit. Only when sampling. */
  topK?: number
  /** Default: generation_config.json top_p, else 1. Only when sampling. */
  topP?: number
  /** Default: generation_config.json repetition_penalty, else 1 (off). */
  repetitionPenalty?: number
  /** Strings that end the reply (not included in the text). */
  stop?: readonly string[]
  /**
   * Token ids that end the reply (not included). Default: generation_config.json eos_token_id, config.json's
   * eos_token_id, the tokenizer's EOS and, for chat messages, the template's end-of-turn token (ChatML's
   * <|im_end|>). Passing a list replaces them; [] generates until maxNewTokens.
   */
  stopTokenIds?: readonly number[]
  /** Seed of the sampler (default: random; the one used is in the result). */
  seed?: number
  /** Stops generation; the result then has finishReason 'aborted' and the text so far. */
  signal?: AbortSignal
  /** Chat template for messages: 'default', 'empty', 'model' (default: the model's own if it has one, else
   * 'default'). */
  template?: string
  /** Called for each token with the text it adds (the text may lag a token behind at a multi-byte character). */
  onToken?: (chunk: GenerationChunk) => void
  /** The tokenizer (default: the one in the folder the model was loaded from). */
  tokenizer?: TextTokenizer
  /** A cache to reuse (a chat keeps one: the shared prefix of the next prompt is not computed again). */
  cache?: KvCache
  /** Warnings (e.g. a template name that falls back to the model's own); default: ignored. */
  warn?: (message: string) => void
}

export interface GenerationChunk {
  /** The token chosen, or null for text held back until the end (a possible stop string that was not). */
  tokenId: number | null
  /** Text this token adds. */
  text: string
}

export type FinishReason = 'stop' | 'length' | 'aborted'

export interface GenerationResult {
  text: string
  /** Generated token ids, without the stop token. */
  tokenIds: number[]
  promptTokenIds: number[]
  finishReason: FinishReason
  /** The stop token id or stop string that ended the reply. */
  stoppedBy?: number | string
  seed: number
  timings: {
    /** Tokens fed by the prefill (fewer than the prompt when a reused cache already held a prefix). */
    prefillTokens: number
    prefillMs: number
    /** Single-token steps after the prefill. */
    decodeSteps: number
    decodeMs: number
  }
}
