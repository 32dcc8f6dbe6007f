/**
 * generation_config.json: the defaults transformers' generate() takes from a model folder. llamapro reads the
 * keys that matter to it; an unreadable file is an error that names it (a silently ignored eos_token_id would
 * make generation run to maxNewTokens).
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { LlamaproError } from '../errors.js'

export const GENERATION_CONFIG_FILE = 'generation_config.json'

export interface GenerationDefaults {
  /** eos_token_id, which may be a list (LLaMA 3, Qwen2 instruct models). */
  eosTokenIds: number[]
  maxNewTokens?: number
  doSample?: boolean
  temperature?: number
  topK?: number
  topP?: number
  repetitionPenalty?: number
}

export async function readGenerationConfig(dir: string | undefined): Promise<GenerationDefaults> {
  if (!dir) return { eosTokenIds: [] }
  const path = join(dir, GENERATION_CONFIG_FILE)
  if (!existsSync(path)) return { eosTokenIds: [] }
  let raw: Record<string, unknown>
  try {
    raw = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>
  } catch (error) {
    throw new LlamaproError('LLAMAPRO_CONFIG', `${path}: cannot read it as JSON (${(error as Error).message})`)
  }
  const eos = raw.eos_token_id
  const list = eos === undefined || eos === null ? [] : Array.isArray(eos) ? eos : [eos]
  if (list.some((id) => !Number.isInteger(id) || (id as number) < 0)) {
    throw new LlamaproError(
      'LLAMAPRO_CONFIG',
      `${path}: eos_token_id must be a token id or a list of them, got ${JSON.stringify(eos)}`,
    )
  }
  const num = (key: string): number | undefined =>
    typeof raw[key] === 'number' && Number.isFinite(raw[key]) ? (raw[key] as number) : undefined
  return {
    eosTokenIds: list as number[],
    maxNewTokens: num('max_new_tokens'),
    doSample: typeof raw.do_sample === 'boolean' ? raw.do_sample : undefined,
    temperature: num('temperature'),
    topK: num('top_k'),
    topP: num('top_p'),
    repetitionPenalty: num('repetition_penalty'),
  }
}
