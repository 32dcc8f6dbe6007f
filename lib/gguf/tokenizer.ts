/**
 * tokenizer.ggml.* <-> tokenizer.json (a Hugging Face "fast" tokenizer) + tokenizer_config.json.
 *
 * Two vocabularies are understood, as llama.cpp names them in tokenizer.ggml.model:
 *  - "gpt2": byte-level BPE (tokens already spelled in GPT-2's byte alphabet, merges listed). How text is split
 *    before BPE is named by tokenizer.ggml.pre; each name maps to the split llama.cpp applies for it.
 *  - "llama": SentencePiece BPE with byte fallback (▁ for spaces, <0xNN> byte tokens, scores; merges rebuilt from
 *    the scores when the file has none, as transformers does).
 * Token types (llama.cpp): 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. Control and unknown
 * tokens become special added tokens; user-defined ones plain added tokens (matched whole, as llama.cpp does).
 */
import { GgufError, type GgufMetadata } from './reader.js'
import type { GgufMetadataValue } from './llama-model.js'

const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| " +
  '?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+'
const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| " +
  '?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+'

type Json = Record<string, unknown>

const byteLevel = (useRegex: boolean): Json => ({
  type: 'ByteLevel',
  add_prefix_space: false,
  trim_offsets: true,
  use_regex: useRegex,
})
const splitThenBytes = (regex: string): Json => ({
  type: 'Sequence',
  pretokenizers: [{ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false }, byteLevel(false)],
})

interface PreTokenizer {
  json: Json
  /** Llama 3's BPE looks a whole pre-token up in the vocabulary before merging (llama.cpp: ignore_merges). */
  ignoreMerges: boolean
}

/** tokenizer.ggml.pre -> how text is split before BPE (llama.cpp's llama-vocab.cpp, per pre-tokenizer type). */
const PRE_TOKENIZERS: Record<string, PreTokenizer> = {
  default: { json: byteLevel(true), ignoreMerges: false },
  gpt2: { json: byteLevel(true), ignoreMerges: false },
  // SmolLM: every digit alone, then GPT-2's split (llama.cpp: "\p{N}" before the GPT-2 regex; the model's own
  // tokenizer.json: Digits(individual_digits) then ByteLevel).
  smollm: {
    json: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel(true)] },
    ignoreMerges: false,
  },
  'llama-bpe': { json: splitThenBytes(LLAMA3_SPLIT), ignoreMerges: true },
  llama3: { json: splitThenBytes(LLAMA3_SPLIT), ignoreMerges: true },
  'llama-v3': { json: splitThenBytes(LLAMA3_SPLIT), ignoreMerges: true },
  'smaug-bpe': { json: splitThenBytes(LLAMA3_SPLIT), ignoreMerges: false },
  qwen2: { json: splitThenBytes(QWEN2_SPLIT), ignoreMerges: false },
  'deepseek-r1-qwen': { json: splitThenBytes(QWEN2_SPLIT), ignoreMerges: false },
}
export const SUPPORTED_PRE_TOKENIZERS = Object.keys(PRE_TOKENIZERS)

export const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const

export interface ImportedTokenizer {
  tokenizerJson: Json
  tokenizerConfig: Json
  generationConfig: Json
  vocabSize: number
}

export function tokenizerFromGguf(meta: GgufMetadata, contextLength: number): ImportedTokenizer {
  const path = meta.file.path
  const model = meta.string('tokenizer.ggml.model', true)
  const tokens = meta.strings('tokenizer.ggml.tokens', true)
  const types = meta.numbers('tokenizer.ggml.token_type')
  if (types && types.length !== tokens.length) {
    throw new GgufError(path, `tokenizer.ggml.token_type has ${types.length} entries for ${tokens.length} tokens`)
  }
  const scores = meta.numbers('tokenizer.ggml.scores')
  if (scores && scores.length !== tokens.length)
    throw new GgufError(path, `tokenizer.ggml.scores has ${scores.length} entries for ${tokens.length} tokens`)
  const idKey = (key: string): number | undefined => {
    const id = meta.integer(`tokenizer.ggml.${key}`)
    if (id !== undefined && id >= tokens.length)
      throw new GgufError(path, `tokenizer.ggml.${key} is ${id}, beyond the ${tokens.length} tokens`)
    return id
  }
  const bos = idKey('bos_token_id')
  const eos = idKey('eos_token_id')
  const unk = idKey('unknown_token_id')
  const pad = idKey('padding_token_id')
  const eot = idKey('eot_token_id')

  const vocab: Record<string, number> = {}
  for (let i = 0; i < tokens.length; i++) if (!Object.hasOwn(vocab, tokens[i]!)) vocab[tokens[i]!] = i
  const typeOf = (i: number) => types?.[i] ?? TOKEN_TYPE.normal

  const added: Json[] = []
  for (let i = 0; i < tokens.length; i++) {
    const t = typeOf(i)
    const special = t === TOKEN_TYPE.control || t === TOKEN_TYPE.unknown
    if (!special && t !== TOKEN_TYPE.userDefined) continue
    added.push({
      id: i,
      content: tokens[i],
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special,
    })
  }

  let tokenizerJson: Json
  let addBos: boolean
  if (model === 'gpt2') {
    const merges = meta.strings('tokenizer.ggml.merges', true)
    const preName = meta.string('tokenizer.ggml.pre') ?? 'default'
    const pre = PRE_TOKENIZERS[preName]
    if (!pre) {
      throw new GgufError(
        path,
        `tokenizer.ggml.pre "${preName}" is not known to llamapro (known: ${SUPPORTED_PRE_TOKENIZERS.join(', ')}); ` +
          `its split rules decide the token ids, so it is not guessed`,
      )
    }
    addBos = meta.bool('tokenizer.ggml.add_bos_token') ?? false
    tokenizerJson = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: pre.json,
      post_processor:
        addBos && bos !== undefined
          ? bosTemplate(tokens[bos]!, bos)
          : { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: pre.ignoreMerges,
        vocab,
        merges: merges.map((m, i) => splitMerge(m, i, path)),
      },
    }
  } else if (model === 'llama') {
    if (!scores) throw new GgufError(path, 'a "llama" (SentencePiece) vocabulary needs tokenizer.ggml.scores')
    const fileMerges = meta.strings('tokenizer.ggml.merges')
    const merges = fileMerges ? fileMerges.map((m, i) => splitMerge(m, i, path)) : mergesFromScores(tokens, scores)
    const prefix = meta.bool('tokenizer.ggml.add_space_prefix') ?? true
    addBos = meta.bool('tokenizer.ggml.add_bos_token') ?? true
    const replace = { type: 'Replace', pattern: { String: ' ' }, content: '▁' }
    tokenizerJson = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: prefix ? { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, replace] } : replace,
      pre_tokenizer: null,
      post_processor: addBos && bos !== undefined ? bosTemplate(tokens[bos]!, bos) : null,
      decoder: {
        type: 'Sequence',
        decoders: [
          { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
          { type: 'ByteFallback' },
          { type: 'Fuse' },
          ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
        ],
      },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: unk !== undefined ? tokens[unk] : null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: true,
        byte_fallback: true,
        ignore_merges: false,
        vocab,
        merges,
      },
    }
  } else {
    throw new GgufError(path, `tokenizer.ggml.model "${model}" is not supported (valid: gpt2, llama)`)
  }

  const text = (id: number | undefined) => (id === undefined ? null : tokens[id]!)
  const addedDecoder: Json = {}
  for (const a of added) {
    addedDecoder[String(a.id)] = {
      content: a.content,
      lstrip: false,
      normalized: false,
      rstrip: false,
      single_word: false,
      special: a.special,
    }
  }
  const tokenizerConfig: Json = {
    add_bos_token: addBos,
    add_eos_token: meta.bool('tokenizer.ggml.add_eos_token') ?? false,
    added_tokens_decoder: addedDecoder,
    bos_token: text(bos),
    eos_token: text(eos),
    unk_token: text(unk),
    pad_token: text(pad),
    clean_up_tokenization_spaces: false,
    model_max_length: contextLength,
    tokenizer_class: 'PreTrainedTokenizerFast',
  }
  const template = meta.string('tokenizer.chat_template')
  if (template !== undefined) tokenizerConfig.chat_template = template

  const generationConfig: Json = {}
  if (bos !== undefined) generationConfig.bos_token_id = bos
  if (eos !== undefined) generationConfig.eos_token_id = eot !== undefined && eot !== eos ? [eos, eot] : eos
  if (pad !== undefined) generationConfig.pad_token_id = pad
  return { tokenizerJson, tokenizerConfig, generationConfig, vocabSize: tokens.length }
}

function bosTemplate(token: string, id: number): Json {
  return {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: token, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [
      { SpecialToken: { id: token, type_id: 0 } },
      { Sequence: { id: 'A', type_id: 0 } },
      { SpecialToken: { id: token, type_id: 1 } },
      { Sequence: { id: 'B', type_id: 1 } },
    ],
    special_tokens: { [token]: { id: token, ids: [id], tokens: [token] } },
  }
}

function splitMerge(merge: string, index: number, path: string): [string, string] {
  const parts = merge.split(' ')
  if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
    throw new GgufError(
      path,
      `tokenizer.ggml.merges[${index}] is ${JSON.stringify(merge)}; a merge is two tokens separated by one space`,
    )
  }
  return [parts[0]!, parts[1]!]
}

/**
 * SentencePiece files list no merges: every token that splits into two tokens yields a merge, ranked by the
 * merged token's score (higher first), then by the pieces' lengths (longer first), then by the pieces' ids
 * (transformers' generate_merges, which its GGUF loader uses).
 */
export function mergesFromScores(tokens: readonly string[], scores: readonly number[]): [string, string][] {
  const ids = new Map<string, number>()
  tokens.forEach((t, i) => {
    if (!ids.has(t)) ids.set(t, i)
  })
  const found: {
    l: string
    r: string
    score: number
    ll: number
    rl: number
    li: number
    ri: number
    order: number
  }[] = []
  let order = 0
  for (const [token, id] of ids) {
    const chars = Array.from(token)
    const local: typeof found = []
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join('')
      const r = chars.slice(k).join('')
      const li = ids.get(l)
      const ri = ids.get(r)
      if (li !== undefined && ri !== undefined)
        local.push({ l, r, score: scores[id]!, ll: k, rl: chars.length - k, li, ri, order: 0 })
    }
    local.sort((a, b) => a.li - b.li || a.ri - b.ri)
    for (const m of local) found.push({ ...m, order: order++ })
  }
  found.sort((a, b) => b.score - a.score || b.ll - a.ll || b.rl - a.rl || a.order - b.order)
  return found.map((m) => [m.l, m.r])
}

/** tokenizer.json + tokenizer_config.json -> tokenizer.ggml.* metadata (the inverse of tokenizerFromGguf). */
export function tokenizerToGguf(
  tokenizerJson: Json,
  tokenizerConfig: Json,
  chatTemplate: string | null,
  vocabSize: number,
  path: string,
): [string, GgufMetadataValue][] {
  const model = tokenizerJson.model as Json | undefined
  if (model?.type !== 'BPE' || typeof model.vocab !== 'object' || model.vocab === null) {
    throw new GgufError(
      path,
      `tokenizer.json: only BPE tokenizers can be exported (this one is ${JSON.stringify(model?.type)})`,
    )
  }
  const sentencePiece = model.byte_fallback === true
  const tokens: (string | undefined)[] = []
  for (const [token, id] of Object.entries(model.vocab as Record<string, number>)) tokens[id] = token
  const specials = new Set<number>()
  const userDefined = new Set<number>()
  for (const a of (tokenizerJson.added_tokens ?? []) as { id: number; content: string; special: boolean }[]) {
    if (tokens[a.id] !== undefined && tokens[a.id] !== a.content) {
      throw new GgufError(
        path,
        `tokenizer.json: added token ${JSON.stringify(a.content)} has id ${a.id}, which the vocabulary gives to ` +
          `${JSON.stringify(tokens[a.id])}`,
      )
    }
    tokens[a.id] = a.content
    ;(a.special ? specials : userDefined).add(a.id)
  }
  const count = Math.max(tokens.length, vocabSize)
  const idOf = new Map<string, number>()
  const list: string[] = []
  const types: number[] = []
  const unkText = typeof model.unk_token === 'string' ? model.unk_token : null
  for (let i = 0; i < count; i++) {
    const t = tokens[i]
    if (t === undefined) {
      list.push(`[PAD${i}]`) // llama.cpp's filler for ids the tokenizer does not use
      types.push(TOKEN_TYPE.unused)
      continue
    }
    list.push(t)
    if (!idOf.has(t)) idOf.set(t, i)
    if (specials.has(i)) types.push(t === unkText ? TOKEN_TYPE.unknown : TOKEN_TYPE.control)
    else if (userDefined.has(i)) types.push(TOKEN_TYPE.userDefined)
    else if (sentencePiece && /^<0x[0-9A-F]{2}>$/.test(t)) types.push(TOKEN_TYPE.byte)
    else if (t === unkText) types.push(TOKEN_TYPE.unknown)
    else types.push(TOKEN_TYPE.normal)
  }
  const merges = ((model.merges ?? []) as (string | [string, string])[]).map((m) =>
    typeof m === 'string' ? m : `${m[0]} ${m[1]}`,
  )
  const out: [string, GgufMetadataValue][] = [
    ['tokenizer.ggml.model', { type: 'string', value: sentencePiece ? 'llama' : 'gpt2' }],
  ]
  if (!sentencePiece)
    out.push(['tokenizer.ggml.pre', { type: 'string', value: preNameOf(tokenizerJson.pre_tokenizer, path) }])
  out.push(['tokenizer.ggml.tokens', { type: 'strings', value: list }])
  if (sentencePiece)
    out.push([
      'tokenizer.ggml.scores',
      { type: 'f32s', value: list.map((_, i) => (types[i] === TOKEN_TYPE.normal ? -i : 0)) },
    ])
  out.push(['tokenizer.ggml.token_type', { type: 'i32s', value: types }])
  if (merges.length > 0) out.push(['tokenizer.ggml.merges', { type: 'strings', value: merges }])
  const tokenId = (key: string): number | undefined => {
    const v = tokenizerConfig[key] as string | { content?: string } | null | undefined
    const text = typeof v === 'string' ? v : v?.content
    return text === undefined ? undefined : idOf.get(text)
  }
  for (const [key, gguf] of [
    ['bos_token', 'bos_token_id'],
    ['eos_token', 'eos_token_id'],
    ['unk_token', 'unknown_token_id'],
    ['pad_token', 'padding_token_id'],
  ] as const) {
    const id = tokenId(key)
    if (id !== undefined) out.push([`tokenizer.ggml.${gguf}`, { type: 'u32', value: id }])
  }
  if (typeof tokenizerConfig.add_bos_token === 'boolean')
    out.push(['tokenizer.ggml.add_bos_token', { type: 'bool', value: tokenizerConfig.add_bos_token }])
  if (typeof tokenizerConfig.add_eos_token === 'boolean')
    out.push(['tokenizer.ggml.add_eos_token', { type: 'bool', value: tokenizerConfig.add_eos_token }])
  if (sentencePiece) {
    const normalizer = JSON.stringify(tokenizerJson.normalizer ?? null)
    out.push(['tokenizer.ggml.add_space_prefix', { type: 'bool', value: normalizer.includes('"Prepend"') }])
  }
  if (chatTemplate !== null) out.push(['tokenizer.chat_template', { type: 'string', value: chatTemplate }])
  return out
}

function preNameOf(pre: unknown, path: string): string {
  const text = JSON.stringify(pre ?? null)
  for (const name of ['smollm', 'llama-bpe', 'qwen2', 'default']) {
    if (JSON.stringify(PRE_TOKENIZERS[name]!.json) === text) return name
  }
  // Tokenizers saved by other tools differ in defaulted fields: recognise the split by its regex.
  if (text.includes(JSON.stringify(LLAMA3_SPLIT).slice(1, -1))) return 'llama-bpe'
  if (text.includes(JSON.stringify(QWEN2_SPLIT).slice(1, -1))) return 'qwen2'
  if (text.includes('"Digits"') && text.includes('"individual_digits":true') && text.includes('"ByteLevel"'))
    return 'smollm'
  if (/^\{"type":"ByteLevel"[^}]*"use_regex":true/.test(text)) return 'default'
  throw new GgufError(
    path,
    `tokenizer.json: its pre_tokenizer matches none llama.cpp knows by name ` +
      `(${SUPPORTED_PRE_TOKENIZERS.join(', ')}): ${text.slice(0, 200)}`,
  )
}
