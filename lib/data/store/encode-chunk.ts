/**
 * Turns a chunk of examples into token sequences, exactly as preprocess.ts does, but with the Rust Hugging Face
 * tokenizer (npm `tokenizers`, the code of Python's `tokenizers`, measured 3-4× faster per core than
 * @huggingface/tokenizers on SmolLM2's tokenizer: docs/guides/data-at-scale.md). Its encode is asynchronous while the
 * templates encode synchronously, so a chunk is encoded twice: the first pass only records the strings the
 * templates ask for, one encodeBatch tokenizes them all, and the second pass answers from that table. The
 * templates, truncation and EOS/BOS rules are preprocess.ts's own functions, so the ids cannot drift from it.
 */
import { join } from 'node:path'
import { Tokenizer as RustTokenizer } from 'tokenizers'
import { DatasetError } from '../dataset.js'
import type { LocatedExample } from '../dataset.js'
import { encodeConversation } from '../preprocess.js'
import { type ConversationRenderer, chatTemplate, pretrainTokenizer } from '../template.js'
import type { TextTokenizer } from '../tokenizer.js'

/** What a worker needs of the model's tokenizer besides tokenizer.json: plain data, sent once to each worker. */
export type TokenizerFacts = Pick<
  TextTokenizer,
  'eosId' | 'eosToken' | 'bosToken' | 'bosId' | 'addBosToken' | 'padId' | 'maxId' | 'chatTemplate' | 'chatTemplateFile'
>

export function tokenizerFacts(tokenizer: TextTokenizer): TokenizerFacts {
  const { eosId, eosToken, bosToken, bosId, addBosToken, padId, maxId, chatTemplate, chatTemplateFile } = tokenizer
  return {
    eosId,
    eosToken,
    bosToken,
    bosId,
    addBosToken,
    padId,
    maxId,
    chatTemplate,
    chatTemplateFile: chatTemplateFile ?? null,
  }
}

export interface EncoderSettings {
  modelDir: string
  tokenizer: TokenizerFacts
  stage: 'pt' | 'sft'
  template: string
  defaultSystem: string | null
  enableThinking: boolean
  cutoffLen: number
  packing: boolean
}

/**
 * A chunk's sequences, flat: sequence k is ids[sum(lengths[<k]) ...][lengths[k]]. For packed pt the chunk is one
 * stream of tokens (texts, each followed by EOS) that the builder cuts into blocks across chunks.
 */
export interface ChunkResult {
  ids: Int32Array
  /** null when labels equal ids (stage pt). */
  labels: Int32Array | null
  lengths: Int32Array
  examples: number
  droppedExamples: number
  droppedTokens: number
  /** Strings sent to the tokenizer (each counted once per chunk). */
  encodedStrings: number
}

/** An Int32Array that grows: chunk results without a per-token JavaScript array. */
class IdBuilder {
  #data = new Int32Array(1 << 16)
  length = 0
  push(id: number): void {
    if (this.length === this.#data.length) this.#grow(1)
    this.#data[this.length++] = id
  }
  append(ids: ArrayLike<number>, count = ids.length): void {
    if (this.length + count > this.#data.length) this.#grow(count)
    const data = this.#data
    let at = this.length
    for (let i = 0; i < count; i++) data[at++] = ids[i]!
    this.length = at
  }
  #grow(extra: number): void {
    const next = new Int32Array(Math.max(this.#data.length * 2, this.length + extra))
    next.set(this.#data.subarray(0, this.length))
    this.#data = next
  }
  take(): Int32Array {
    return this.#data.slice(0, this.length)
  }
}

export class ChunkEncoder {
  readonly #memo = new Map<string, number[]>()
  #recording: Set<string> | null = null

  private constructor(
    readonly settings: EncoderSettings,
    private readonly rust: RustTokenizer,
    private readonly data: TextTokenizer,
    private readonly render: ConversationRenderer | undefined,
    private readonly efficientEos: boolean,
  ) {}

  /**
   * Only the Rust tokenizer is loaded here (a worker holding a second, JavaScript tokenizer would cost about 100 MB
   * more). The template is built twice, like a chunk: the strings its construction encodes (stop words, llama3's
   * <|end_of_text|>) are recorded, tokenized, and kept.
   */
  static async create(settings: EncoderSettings): Promise<ChunkEncoder> {
    const rust = RustTokenizer.fromFile(join(settings.modelDir, 'tokenizer.json'))
    const kept = new Map<string, number[]>()
    let recorder: ChunkEncoder | undefined
    let constructing: Set<string> | null = new Set()
    const tokenizer: TextTokenizer = {
      ...settings.tokenizer,
      encode: (text) => {
        // biome-ignore lint/complexity/useOptionalChain: an optional chain cannot reach a #private field
        const hit = kept.get(text) ?? (recorder && recorder.#memo.get(text))
        if (hit) return hit
        // biome-ignore lint/complexity/useOptionalChain: an optional chain cannot reach a #private field
        const recording = constructing ?? (recorder && recorder.#recording)
        if (recording) {
          recording.add(text)
          return []
        }
        throw new Error(`internal: ${JSON.stringify(text.slice(0, 40))} was not tokenized in the first pass`)
      },
      decode: () => {
        throw new Error('internal: the data workers do not decode')
      },
      tokenId: (token) => rust.tokenToId(token) ?? undefined,
    }
    const ignore = () => undefined
    const build = () => {
      const template =
        settings.stage === 'sft'
          ? chatTemplate(settings.template, tokenizer, ignore, {
              defaultSystem: settings.defaultSystem,
              enableThinking: settings.enableThinking,
            })
          : undefined
      return { template, data: template?.tokenizer ?? pretrainTokenizer(settings.template, tokenizer) }
    }
    try {
      build()
    } catch {
      // with placeholder ids a template may fail where real ids would not; the second build reports real errors
    }
    const strings = [...constructing]
    constructing = null
    if (strings.length > 0) {
      const encodings = await rust.encodeBatch(strings, { addSpecialTokens: false })
      strings.forEach((text, i) => kept.set(text, encodings[i]!.getIds()))
    }
    const { template, data } = build()
    recorder = new ChunkEncoder(settings, rust, data, template?.renderConversation, template?.efficientEos ?? false)
    return recorder
  }

  async encode(examples: readonly LocatedExample[]): Promise<ChunkResult> {
    this.#memo.clear()
    this.#recording = new Set()
    try {
      this.#encodeAll(examples)
    } catch {
      // with placeholder ids a template may fail where real ids would not; the second pass reports real errors
    }
    const strings = [...this.#recording]
    this.#recording = null
    if (strings.length > 0) {
      const encodings = await this.rust.encodeBatch(strings, { addSpecialTokens: false })
      strings.forEach((text, i) => this.#memo.set(text, encodings[i]!.getIds()))
    }
    const result = this.#encodeAll(examples)
    this.#memo.clear()
    return { ...result, encodedStrings: strings.length }
  }

  #encodeAll(examples: readonly LocatedExample[]): Omit<ChunkResult, 'encodedStrings'> {
    const { stage, cutoffLen, packing } = this.settings
    const ids = new IdBuilder()
    const labels = stage === 'pt' ? null : new IdBuilder()
    const lengths: number[] = []
    let droppedExamples = 0
    let droppedTokens = 0
    const tok = this.data
    if (stage === 'pt') {
      const bos = tok.addBosToken ? tok.bosId : null
      let stream = 0
      for (const { example, where } of examples) {
        if (example.kind !== 'text')
          throw new DatasetError(
            `${where}: stage pt reads raw text from a "text" field, and this record is a conversation (alpaca and ` +
              `sharegpt records are for stage sft)`,
          )
        const encoded = tok.encode(example.text)
        if (packing) {
          ids.append(encoded)
          ids.push(tok.eosId)
          stream += encoded.length + 1
          continue
        }
        const sequence: number[] = bos === null ? [] : [bos]
        for (const id of encoded) sequence.push(id)
        sequence.push(tok.eosId)
        if (sequence.length > cutoffLen) {
          droppedTokens += sequence.length - cutoffLen
          sequence.length = cutoffLen
        }
        if (sequence.length < 2) continue
        ids.append(sequence)
        lengths.push(sequence.length)
      }
      if (packing) lengths.push(stream)
    } else {
      for (const { example, where } of examples) {
        if (example.kind !== 'conversation')
          throw new DatasetError(
            `${where}: not a recognised record: alpaca needs "instruction" and "output", sharegpt needs ` +
              `"conversations" or "messages" (this one holds only text, which stage pt reads)`,
          )
        const sequence = encodeConversation(this.render!(example.messages), tok, cutoffLen, {
          efficientEos: this.efficientEos,
        })
        if (!sequence) {
          droppedExamples++
          continue
        }
        ids.append(sequence.ids)
        labels!.append(sequence.labels)
        lengths.push(sequence.ids.length)
      }
    }
    return {
      ids: ids.take(),
      labels: labels ? labels.take() : null,
      lengths: Int32Array.from(lengths),
      examples: examples.length,
      droppedExamples,
      droppedTokens,
    }
  }
}
