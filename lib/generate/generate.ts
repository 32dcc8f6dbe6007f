/**
 * generate(): text (or token ids) from a loaded model, one native call per token, so the event loop runs
 * between tokens. Prefill feeds the whole prompt through the KV cache; each later step feeds the token just
 * chosen. Sampling, stop rules, streaming and cancellation live here (see sampling.ts for why).
 *
 * Defaults follow transformers' generate and the model folder: generation_config.json gives eos_token_id (one
 * or a list), max_new_tokens, do_sample, temperature, top_k, top_p and repetition_penalty; without do_sample
 * (or with temperature 0) decoding is greedy.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { randomInt } from 'node:crypto'
import type { Message } from '../data/dataset.js'
import { type TextTokenizer, loadTokenizer } from '../data/tokenizer.js'
import { LlamaproError } from '../errors.js'
import type { LlamaModel } from '../model/llama-model.js'
import { type GenerationDefaults, readGenerationConfig } from './generation-config.js'
import type { FinishReason, GenerateInput, GenerateOptions, GenerationChunk } from './generate-types.js'
import type { GenerationResult } from './generate-types.js'
import { KvCache } from './kv-cache.js'
import { defaultTemplateName, encodePrompt, generationPrompt } from './prompt.js'
import { type SamplingOptions, checkSamplingOptions, pickToken, samplerRandom } from './sampling.js'

export type { FinishReason, GenerateInput, GenerateOptions, GenerationChunk } from './generate-types.js'
export type { GenerationResult } from './generate-types.js'

const tokenizers = new WeakMap<LlamaModel, Promise<TextTokenizer | null>>()
const generationDefaults = new WeakMap<LlamaModel, Promise<GenerationDefaults>>()

/** The tokenizer of the folder the model came from, or null when it has none. Loaded once per model. */
export function modelTokenizer(model: LlamaModel): Promise<TextTokenizer | null> {
  let found = tokenizers.get(model)
  if (!found) {
    const dir = model.sourceDir
    found = dir && existsSync(join(dir, 'tokenizer.json')) ? loadTokenizer(dir) : Promise.resolve(null)
    tokenizers.set(model, found)
  }
  return found
}

function modelDefaults(model: LlamaModel): Promise<GenerationDefaults> {
  let found = generationDefaults.get(model)
  if (!found) {
    found = readGenerationConfig(model.sourceDir)
    generationDefaults.set(model, found)
  }
  return found
}

interface Plan {
  promptIds: number[]
  tokenizer: TextTokenizer | null
  sampling: SamplingOptions
  maxNewTokens: number
  stopIds: Set<number>
  stopStrings: string[]
  seed: number
}

async function plan(model: LlamaModel, input: GenerateInput, o: GenerateOptions): Promise<Plan> {
  const tokenizer = o.tokenizer ?? (await modelTokenizer(model))
  const defaults = await modelDefaults(model)
  const needTokenizer = (what: string): TextTokenizer => {
    if (!tokenizer) {
      throw new LlamaproError(
        'LLAMAPRO_TOKENIZER',
        `generate: ${what} needs a tokenizer, and ${model.sourceDir ?? 'this model'} has no tokenizer.json (pass ` +
          `options.tokenizer or token ids as { ids })`,
      )
    }
    return tokenizer
  }
  let promptIds: number[]
  const stopStrings = [...(o.stop ?? [])]
  const templateStopIds: number[] = []
  if (typeof input === 'string') {
    const tk = needTokenizer('a text prompt')
    promptIds = tk.encode(input)
    // As transformers' tokenizer(prompt): the BOS token first where the tokenizer adds one.
    if (tk.addBosToken && tk.bosId !== null) promptIds.unshift(tk.bosId)
  } else if (Array.isArray(input)) {
    const tk = needTokenizer('a chat conversation')
    const prompt = generationPrompt(
      o.template ?? defaultTemplateName(tk),
      input as readonly Message[],
      tk,
      o.warn ?? (() => {}),
    )
    promptIds = encodePrompt(prompt)
    // A stop word that is one token (an added special token, as they usually are) stops as that token id.
    for (const word of prompt.stopWords) {
      const ids = prompt.tokenizer.encode(word)
      if (ids.length === 1) templateStopIds.push(ids[0]!)
      else stopStrings.push(word)
    }
  } else if (input && typeof input === 'object' && 'ids' in input && Array.isArray(input.ids)) {
    promptIds = [...input.ids]
  } else {
    throw new LlamaproError(
      'LLAMAPRO_ARG',
      'generate: the input must be a string, an array of chat messages, or { ids: number[] }',
    )
  }
  const vocab = model.config.vocabSize
  if (promptIds.length === 0) throw new LlamaproError('LLAMAPRO_ARG', 'generate: the prompt has no tokens')
  const badId = promptIds.find((id) => !Number.isInteger(id) || id < 0 || id >= vocab)
  if (badId !== undefined)
    throw new LlamaproError(
      'LLAMAPRO_ARG',
      `generate: prompt token id ${badId} is outside the vocabulary (0..${vocab - 1})`,
    )
  const context = model.config.maxPositionEmbeddings
  if (promptIds.length >= context) {
    throw new LlamaproError(
      'LLAMAPRO_PROMPT_TOO_LONG',
      `generate: the prompt has ${promptIds.length} tokens; the model's context (max_position_embeddings) is ${context}`,
    )
  }

  const sampling: SamplingOptions = {
    temperature: o.temperature ?? (defaults.doSample ? (defaults.temperature ?? 1) : 0),
    topK: o.topK ?? defaults.topK ?? 50,
    topP: o.topP ?? defaults.topP ?? 1,
    repetitionPenalty: o.repetitionPenalty ?? defaults.repetitionPenalty ?? 1,
  }
  checkSamplingOptions(sampling)
  const maxNewTokens = o.maxNewTokens ?? defaults.maxNewTokens ?? 256
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) {
    throw new LlamaproError('LLAMAPRO_ARG', `maxNewTokens must be a positive integer, got ${maxNewTokens}`)
  }
  let stopIds: number[]
  if (o.stopTokenIds) stopIds = [...o.stopTokenIds]
  else {
    const configEos = model.rawConfig.eos_token_id
    stopIds = [
      ...defaults.eosTokenIds,
      ...(Array.isArray(configEos) ? configEos : [configEos]).filter((x): x is number => Number.isInteger(x)),
    ]
    if (tokenizer) stopIds.push(tokenizer.eosId)
    stopIds.push(...templateStopIds)
  }
  if (stopStrings.some((s) => typeof s !== 'string' || s.length === 0))
    throw new LlamaproError('LLAMAPRO_ARG', 'stop: stop strings must be non-empty strings')
  if (stopStrings.length > 0 && !tokenizer) needTokenizer('a stop string')
  const seed = o.seed ?? randomInt(2 ** 31)
  if (!Number.isInteger(seed)) throw new LlamaproError('LLAMAPRO_ARG', `seed must be an integer, got ${seed}`)
  return { promptIds, tokenizer, sampling, maxNewTokens, stopIds: new Set(stopIds), stopStrings, seed }
}

/** Where the earliest stop string starts in `text`, and which it is. */
function findStop(text: string, stops: readonly string[]): { at: number; stop: string } | null {
  let best: { at: number; stop: string } | null = null
  for (const stop of stops) {
    const at = text.indexOf(stop)
    if (at >= 0 && (best === null || at < best.at)) best = { at, stop }
  }
  return best
}

/** How much of the end of `text` might be the start of a stop string (held back until it is known). */
function heldBack(text: string, stops: readonly string[]): number {
  let hold = 0
  for (const stop of stops) {
    for (let n = Math.min(stop.length - 1, text.length); n > hold; n--) {
      if (text.endsWith(stop.slice(0, n))) {
        hold = n
        break
      }
    }
  }
  // An incomplete UTF-8 sequence decodes to U+FFFD until its last byte arrives.
  let end = text.length - hold
  while (end > 0 && text.charCodeAt(end - 1) === 0xfffd) end--
  return text.length - end
}

/**
 * Streaming generation: yields each token with the text it adds and returns the result. Breaking out of the
 * loop (or aborting the signal) stops it; a cache made here is freed either way.
 */
export async function* generateStream(
  model: LlamaModel,
  input: GenerateInput,
  options: GenerateOptions = {},
): AsyncGenerator<GenerationChunk, GenerationResult> {
  const p = await plan(model, input, options)
  const cache = options.cache ?? new KvCache(model)
  if (cache.model !== model) throw new LlamaproError('LLAMAPRO_ARG', 'generate: options.cache belongs to another model')
  const random = samplerRandom(p.seed)
  const seen = new Set(p.promptIds)
  const generated: number[] = []
  // An empty reply (a stop token first) decodes to '': the tokenizer refuses an empty id list.
  const decode = (ids: number[]) => (p.tokenizer && ids.length > 0 ? p.tokenizer.decode(ids) : '')
  let emitted = ''
  let finishReason: FinishReason = 'length'
  let stoppedBy: number | string | undefined
  const timings = { prefillTokens: 0, prefillMs: 0, decodeSteps: 0, decodeMs: 0 }
  const context = model.config.maxPositionEmbeddings
  try {
    const feed = cache.reuse(p.promptIds)
    timings.prefillTokens = feed.length
    let started = performance.now()
    let logits = await cache.step(feed)
    timings.prefillMs = performance.now() - started
    started = performance.now()
    for (;;) {
      if (options.signal?.aborted) {
        finishReason = 'aborted'
        break
      }
      const id = pickToken(logits, seen, p.sampling, random)
      if (p.stopIds.has(id)) {
        finishReason = 'stop'
        stoppedBy = id
        break
      }
      generated.push(id)
      seen.add(id)
      if (p.tokenizer) {
        const text = decode(generated)
        const stop = p.stopStrings.length > 0 ? findStop(text, p.stopStrings) : null
        const safe = stop ? text.slice(0, stop.at) : text.slice(0, text.length - heldBack(text, p.stopStrings))
        const delta = safe.startsWith(emitted) ? safe.slice(emitted.length) : ''
        if (safe.startsWith(emitted)) emitted = safe
        const chunk = { tokenId: id, text: delta }
        options.onToken?.(chunk)
        yield chunk
        if (stop) {
          finishReason = 'stop'
          stoppedBy = stop.stop
          break
        }
      } else {
        const chunk = { tokenId: id, text: '' }
        options.onToken?.(chunk)
        yield chunk
      }
      if (generated.length >= p.maxNewTokens || cache.length >= context) break
      if (options.signal?.aborted) {
        finishReason = 'aborted'
        break
      }
      logits = await cache.step([id])
      timings.decodeSteps++
    }
    timings.decodeMs = performance.now() - started
  } finally {
    if (!options.cache) cache.dispose()
  }
  let text = decode(generated)
  if (typeof stoppedBy === 'string') text = text.slice(0, text.indexOf(stoppedBy))
  if (text.length > emitted.length && text.startsWith(emitted)) {
    const chunk = { tokenId: null, text: text.slice(emitted.length) }
    options.onToken?.(chunk)
    yield chunk
  }
  return {
    text,
    tokenIds: generated,
    promptTokenIds: p.promptIds,
    finishReason,
    ...(stoppedBy !== undefined ? { stoppedBy } : {}),
    seed: p.seed,
    timings,
  }
}

/** generate(): the whole reply at once (onToken still streams it). */
export async function generate(
  model: LlamaModel,
  input: GenerateInput,
  options: GenerateOptions = {},
): Promise<GenerationResult> {
  const stream = generateStream(model, input, options)
  for (;;) {
    const next = await stream.next()
    if (next.done) return next.value
  }
}
