/**
 * KvCache: the keys and values of one sequence over a loaded model, for incremental decoding. The first step
 * (prefill) feeds the whole prompt; each later step feeds the token just chosen and gets the next logits.
 * It remembers the tokens it holds, so a follow-up prompt that shares a prefix (the next chat turn) only feeds
 * what is new.
 */
import { LlamaproError } from '../errors.js'
import type { NativeBackedModel } from '../model/native-backed.js'
import type { NativeKvCacheHandle } from '../native/binding.js'
import { callNative, callNativeSync } from '../native/call.js'
import { native } from '../native/load.js'

/** `Model` is the LlamaModel it was made for (NativeBackedModel is what the cache uses of it). */
export class KvCache<Model extends NativeBackedModel = NativeBackedModel> {
  readonly model: Model
  #handle: NativeKvCacheHandle | undefined
  #tokens: number[] = []
  #stepping = false

  constructor(model: Model) {
    this.model = model
    this.#handle = callNativeSync('creating a KV cache', () => new (native().NativeKvCache)(model.native))
  }

  /** The token ids whose keys and values the cache holds, in order. */
  get tokens(): readonly number[] {
    return this.#tokens
  }

  get length(): number {
    return this.#tokens.length
  }

  get #native(): NativeKvCacheHandle {
    if (!this.#handle) throw new LlamaproError('LLAMAPRO_DISPOSED', 'this KV cache was disposed')
    return this.#handle
  }

  /**
   * Feeds `ids` at the next positions. Returns the float32 logits of the last position ([vocab]), or with
   * allLogits those of every fed position ([ids.length * vocab], row-major).
   */
  async step(ids: readonly number[] | Int32Array, options: { allLogits?: boolean } = {}): Promise<Float32Array> {
    const vocab = this.model.config.vocabSize
    if (ids.length === 0) throw new LlamaproError('LLAMAPRO_ARG', 'KvCache.step: no token ids')
    const data = Int32Array.from(ids)
    for (let i = 0; i < data.length; i++) {
      if (data[i]! < 0 || data[i]! >= vocab || data[i] !== Number(ids[i])) {
        throw new LlamaproError(
          'LLAMAPRO_ARG',
          `KvCache.step: token id ${ids[i]} at position ${i} is not in the vocabulary (0..${vocab - 1})`,
        )
      }
    }
    const handle = this.#native
    // Steps must run in order (the pool may start two queued workers in any order), so one at a time.
    if (this.#stepping)
      throw new LlamaproError('LLAMAPRO_BUSY', 'KvCache.step: a previous step is still running (await it first)')
    this.#stepping = true
    try {
      const logits = await callNative('generation step', () => handle.step(data, options.allLogits ?? false))
      for (const id of data) this.#tokens.push(id)
      return logits
    } finally {
      this.#stepping = false
    }
  }

  /** Keeps the first `length` positions and forgets the rest. */
  truncate(length: number): void {
    if (this.#stepping)
      throw new LlamaproError('LLAMAPRO_BUSY', 'KvCache.truncate: a step is still running (await it first)')
    if (!Number.isInteger(length) || length < 0 || length > this.#tokens.length) {
      throw new LlamaproError(
        'LLAMAPRO_ARG',
        `KvCache.truncate: length must be an integer in 0..${this.#tokens.length}, got ${length}`,
      )
    }
    callNativeSync('truncating the KV cache', () => this.#native.truncate(length))
    this.#tokens.length = length
  }

  /**
   * Prepares the cache for `prompt`: keeps the longest prefix it already holds (at least one prompt token is
   * left to feed, since its logits are needed) and returns the ids still to feed.
   */
  reuse(prompt: readonly number[]): number[] {
    let common = 0
    const limit = Math.min(this.#tokens.length, prompt.length - 1)
    while (common < limit && this.#tokens[common] === prompt[common]) common++
    if (common < this.#tokens.length) this.truncate(common)
    return prompt.slice(common)
  }

  dispose(): void {
    this.#handle?.dispose()
    this.#handle = undefined
  }
}
