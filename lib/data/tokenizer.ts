/**
 * The model's own tokenizer: tokenizer.json (a Hugging Face "fast" tokenizer) read by @huggingface/tokenizers,
 * plus the special tokens of tokenizer_config.json and the chat template (chat_template.jinja, which transformers
 * >= 4.5x writes and prefers, else tokenizer_config.json's chat_template).
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'
import { LlamaproError } from '../errors.js'

export interface TextTokenizer {
  /** Token ids of `text`, without special tokens added (templates and EOS handling add them explicitly). */
  encode(text: string): number[]
  decode(ids: readonly number[]): string
  eosId: number
  eosToken: string
  bosToken: string | null
  bosId: number | null
  /** tokenizer_config.json's add_bos_token: pt sequences then start with BOS (as LLaMA-Factory's pretrain data). */
  addBosToken: boolean
  padId: number
  /**
   * The largest token id the tokenizer can produce (added tokens included): it must be below the model's vocab_size.
   */
  maxId: number
  /** The Jinja chat template (chat_template.jinja, else tokenizer_config.json's chat_template), if any. */
  chatTemplate: string | null
  /** The file chatTemplate was read from, for messages. */
  chatTemplateFile?: string | null
  /** The id of a token, by its text (added and special tokens included); undefined when the vocabulary has none. */
  tokenId?(token: string): number | undefined
}

export class TokenizerError extends LlamaproError {
  constructor(message: string) {
    super('LLAMAPRO_TOKENIZER', message)
    this.name = 'TokenizerError'
  }
}

type TokenValue = string | { content?: string } | null | undefined
const tokenText = (value: TokenValue): string | null => (typeof value === 'string' ? value : (value?.content ?? null))

async function readJson(path: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>
  } catch (error) {
    throw new TokenizerError(`${path}: cannot read it as JSON (${(error as Error).message})`)
  }
}

export async function loadTokenizer(dir: string): Promise<TextTokenizer> {
  const jsonPath = join(dir, 'tokenizer.json')
  if (!existsSync(jsonPath)) {
    throw new TokenizerError(
      `${dir} has no tokenizer.json. llamapro reads Hugging Face "fast" tokenizers; create one in Python with ` +
        'AutoTokenizer.from_pretrained(dir).save_pretrained(dir)',
    )
  }
  const tokenizerJson = await readJson(jsonPath)
  const configPath = join(dir, 'tokenizer_config.json')
  const config = existsSync(configPath) ? await readJson(configPath) : {}
  let tokenizer: Tokenizer
  try {
    tokenizer = new Tokenizer(tokenizerJson, config)
  } catch (error) {
    throw new TokenizerError(`${jsonPath}: not a tokenizer this library can read (${(error as Error).message})`)
  }
  // As transformers: a chat_template.jinja file takes priority over tokenizer_config.json's chat_template.
  let chatTemplate: string | null = null
  let chatTemplateFile: string | null = null
  const jinjaPath = join(dir, 'chat_template.jinja')
  const template = config.chat_template
  if (existsSync(jinjaPath)) {
    chatTemplate = await readFile(jinjaPath, 'utf8')
    chatTemplateFile = jinjaPath
  } else {
    if (typeof template === 'string') chatTemplate = template
    else if (Array.isArray(template))
      chatTemplate =
        (template.find((t: { name?: string }) => t.name === 'default') as { template?: string } | undefined)
          ?.template ?? null
    if (chatTemplate !== null) chatTemplateFile = `${configPath} (chat_template)`
  }

  const idOf = (token: string | null): number | undefined => (token === null ? undefined : tokenizer.token_to_id(token))
  const eosToken = tokenText(config.eos_token as TokenValue)
  const generationEos = await (async () => {
    const path = join(dir, 'generation_config.json')
    if (!existsSync(path)) return undefined
    const value = (await readJson(path)).eos_token_id
    return Array.isArray(value) ? (value[0] as number) : (value as number | undefined)
  })()
  const eosId = idOf(eosToken) ?? generationEos
  if (eosId === undefined) {
    throw new TokenizerError(
      `${dir}: no end-of-sequence token (tokenizer_config.json eos_token, or generation_config.json eos_token_id)`,
    )
  }
  const padId = idOf(tokenText(config.pad_token as TokenValue)) ?? eosId
  const bosToken = tokenText(config.bos_token as TokenValue)
  const bosId = idOf(bosToken) ?? null
  let maxId = Math.max(eosId, padId, bosId ?? 0)
  for (const id of tokenizer.get_vocab(true).values()) if (id > maxId) maxId = id
  return {
    encode: (text) => tokenizer.encode(text, { add_special_tokens: false }).ids,
    decode: (ids) => tokenizer.decode([...ids]),
    eosId,
    eosToken: eosToken ?? tokenizer.id_to_token(eosId) ?? '',
    bosToken,
    bosId,
    addBosToken: config.add_bos_token === true && bosId !== null,
    padId,
    maxId,
    chatTemplate,
    chatTemplateFile,
    tokenId: (token) => tokenizer.token_to_id(token),
  }
}
