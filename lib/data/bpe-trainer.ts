import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * Trains a small byte-level BPE tokenizer (the GPT-2 / LLaMA-3 kind) and writes it as a Hugging Face
 * tokenizer.json, so the demo and the tests have a real tokenizer without downloading one. The files it writes
 * load in the Python `tokenizers` package and in @huggingface/tokenizers alike.
 */

/** GPT-2's reversible map from bytes to printable characters. */
export function bytesToUnicode(): string[] {
  const printable: number[] = []
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b)
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b)
  for (let b = 0xae; b <= 0xff; b++) printable.push(b)
  const map: string[] = new Array(256)
  let extra = 0
  for (let b = 0; b < 256; b++) {
    map[b] = printable.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++)
  }
  return map
}

/** GPT-2's pre-tokenizer pattern (what the ByteLevel pre-tokenizer applies with use_regex). */
const PRE_TOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu

export interface BpeTrainingOptions {
  /** Target vocabulary size, special tokens included. */
  vocabSize: number
  /** Special tokens, given the first ids. */
  specialTokens: string[]
  /** Pairs seen fewer times than this are not merged. */
  minFrequency?: number
}

export interface TrainedTokenizer {
  tokenizerJson: Record<string, unknown>
  vocabSize: number
}

export function trainByteLevelBpe(texts: Iterable<string>, options: BpeTrainingOptions): TrainedTokenizer {
  const byteChars = bytesToUnicode()
  const encoder = new TextEncoder()
  const wordCounts = new Map<string, number>()
  for (const text of texts) {
    for (const match of text.matchAll(PRE_TOKENIZE)) {
      const mapped = Array.from(encoder.encode(match[0]), (b) => byteChars[b]).join('')
      wordCounts.set(mapped, (wordCounts.get(mapped) ?? 0) + 1)
    }
  }
  const words = [...wordCounts].map(([word, count]) => ({ symbols: Array.from(word), count }))

  const vocab = new Map<string, number>()
  for (const token of options.specialTokens) vocab.set(token, vocab.size)
  for (const ch of [...byteChars].sort()) vocab.set(ch, vocab.size)
  const merges: [string, string][] = []
  const minFrequency = options.minFrequency ?? 2

  while (vocab.size < options.vocabSize) {
    const pairs = new Map<string, number>()
    for (const { symbols, count } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = `${symbols[i]}\u0000${symbols[i + 1]}`
        pairs.set(key, (pairs.get(key) ?? 0) + count)
      }
    }
    let best: string | undefined
    let bestCount = 0
    for (const [key, count] of pairs) {
      if (count > bestCount || (count === bestCount && best !== undefined && key < best)) {
        best = key
        bestCount = count
      }
    }
    if (best === undefined || bestCount < minFrequency) break
    const [a, b] = best.split('\u0000') as [string, string]
    const merged = a + b
    merges.push([a, b])
    if (!vocab.has(merged)) vocab.set(merged, vocab.size)
    for (const word of words) {
      const s = word.symbols
      for (let i = 0; i + 1 < s.length; i++) {
        if (s[i] === a && s[i + 1] === b) s.splice(i, 2, merged)
      }
    }
  }

  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: options.specialTokens.map((content) => ({
      id: vocab.get(content),
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab),
      merges,
    },
  }
  return { tokenizerJson, vocabSize: vocab.size }
}

/** A ChatML chat template (the format Qwen models use). */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + " +
  "'\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

export const CHATML_SPECIAL_TOKENS = ['<|endoftext|>', '<|pad|>', '<|im_start|>', '<|im_end|>']

/** tokenizer_config.json for a tokenizer trained with CHATML_SPECIAL_TOKENS. */
export function chatMlTokenizerConfig(modelMaxLength: number): Record<string, unknown> {
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: null,
    eos_token: '<|endoftext|>',
    pad_token: '<|pad|>',
    model_max_length: modelMaxLength,
    clean_up_tokenization_spaces: false,
    chat_template: CHATML_TEMPLATE,
  }
}

/** Trains a ChatML byte-level BPE tokenizer on `texts` and writes tokenizer.json and tokenizer_config.json. */
export async function writeTrainedTokenizer(
  dir: string,
  texts: Iterable<string>,
  vocabSize: number,
  modelMaxLength = 2048,
): Promise<number> {
  const trained = trainByteLevelBpe(texts, { vocabSize, specialTokens: CHATML_SPECIAL_TOKENS })
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(trained.tokenizerJson))
  await writeFile(
    join(dir, 'tokenizer_config.json'),
    `${JSON.stringify(chatMlTokenizerConfig(modelMaxLength), null, 2)}\n`,
  )
  return trained.vocabSize
}
