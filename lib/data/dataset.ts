/**
 * Training data as LLaMA-Factory reads it: JSON or JSONL files (or names in dataset_dir/dataset_info.json) in
 * alpaca form (instruction / input / output, optional system and history), sharegpt form (conversations with
 * from/value, or messages with role/content), or plain `text` for continued pre-training. Every record is
 * normalised into a conversation or a text; a malformed record is an error naming the file and line.
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { extname, isAbsolute, join, resolve } from 'node:path'
import { parseStrictJson } from '../checkpoint/strict-json.js'
import { LlamaproError } from '../errors.js'

export class DatasetError extends LlamaproError {
  constructor(message: string) {
    super('LLAMAPRO_DATASET', message)
    this.name = 'DatasetError'
  }
}

export interface Message {
  role: 'system' | 'user' | 'assistant'
  content: string
}

export type Example = { kind: 'text'; text: string } | { kind: 'conversation'; messages: Message[] }

interface DatasetInfoEntry {
  file_name?: string
  formatting?: 'alpaca' | 'sharegpt'
  columns?: Record<string, string>
  tags?: Record<string, string>
}

export interface Source {
  file: string
  /**
   * Named in dataset_info.json: its columns are LLaMA-Factory's, whose `system` and `history` columns are read only
   * when `columns` maps them (a record's "system" field is ignored otherwise). Files named by path read them too.
   */
  fromDatasetInfo?: boolean
  formatting?: 'alpaca' | 'sharegpt'
  columns: Record<string, string>
  tags: Record<string, string>
}

/** Finds each dataset: a path (relative to the working directory or dataset_dir), or a dataset_info.json name. */
async function resolveSources(names: readonly string[], datasetDir: string, baseDir: string): Promise<Source[]> {
  let info: Record<string, DatasetInfoEntry> | undefined
  const infoPath = join(datasetDir, 'dataset_info.json')
  const sources: Source[] = []
  for (const name of names) {
    const candidates = isAbsolute(name) ? [name] : [resolve(baseDir, name), resolve(datasetDir, name)]
    const file = candidates.find((c) => existsSync(c))
    if (file) {
      sources.push({ file, columns: {}, tags: {} })
      continue
    }
    if (info === undefined && existsSync(infoPath)) {
      try {
        info = JSON.parse(await readFile(infoPath, 'utf8')) as Record<string, DatasetInfoEntry>
      } catch (error) {
        throw new DatasetError(`${infoPath}: not valid JSON (${(error as Error).message})`)
      }
    }
    const entry = info?.[name]
    if (!entry) {
      throw new DatasetError(
        `dataset "${name}" not found: no file ${candidates.join(' or ')}` +
          (info ? `, and no entry "${name}" in ${infoPath} (it has: ${Object.keys(info).join(', ')})` : ` and no ${infoPath}`),
      )
    }
    if (!entry.file_name) throw new DatasetError(`${infoPath}: entry "${name}" has no file_name (llamapro reads local files only)`)
    const entryFile = resolve(datasetDir, entry.file_name)
    if (!existsSync(entryFile)) throw new DatasetError(`dataset "${name}": file ${entryFile} (from ${infoPath}) does not exist`)
    sources.push({ file: entryFile, fromDatasetInfo: true, formatting: entry.formatting, columns: entry.columns ?? {}, tags: entry.tags ?? {} })
  }
  return sources
}

/** Parses JSON (an array of records) or JSONL (one record per line), reporting the line of a syntax error. */
export async function readRecords(file: string): Promise<{ record: unknown; line: number }[]> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    throw new DatasetError(`${file}: cannot read (${(error as NodeJS.ErrnoException).code})`)
  }
  const trimmed = text.trimStart()
  const jsonl = extname(file) === '.jsonl' || !(trimmed.startsWith('['))
  if (!jsonl) {
    try {
      const array = JSON.parse(text) as unknown
      if (!Array.isArray(array)) throw new DatasetError(`${file}: a .json dataset must be an array of records`)
      // Records of a JSON array are numbered by the line their object starts on, for errors.
      const starts: number[] = []
      let depth = 0
      let line = 1
      let inString = false
      for (let i = 0; i < text.length; i++) {
        const c = text[i]
        if (c === '\n') line++
        if (inString) {
          if (c === '\\') i++
          else if (c === '"') inString = false
        } else if (c === '"') inString = true
        else if (c === '{' || c === '[') {
          if (depth === 1) starts.push(line)
          depth++
        } else if (c === '}' || c === ']') depth--
      }
      return array.map((record, i) => ({ record, line: starts[i] ?? 1 }))
    } catch (error) {
      if (error instanceof DatasetError) throw error
      // JSON.parse does not always say where; the strict parser does (it only runs on this failure path).
      let where = ''
      let detail = (error as Error).message
      try {
        parseStrictJson(text)
      } catch (strict) {
        const position = /at character (\d+)/.exec((strict as Error).message)
        if (position) where = `:${text.slice(0, Number(position[1])).split('\n').length}`
        detail = (strict as Error).message
      }
      throw new DatasetError(`${file}${where}: invalid JSON (${detail})`)
    }
  }
  const out: { record: unknown; line: number }[] = []
  text.split('\n').forEach((raw, i) => {
    if (raw.trim() === '') return
    try {
      out.push({ record: JSON.parse(raw), line: i + 1 })
    } catch (error) {
      throw new DatasetError(`${file}:${i + 1}: invalid JSON on this line (${(error as Error).message})`)
    }
  })
  return out
}

const ROLE_OF: Record<string, Message['role']> = {
  human: 'user',
  user: 'user',
  gpt: 'assistant',
  assistant: 'assistant',
  system: 'system',
}

function str(value: unknown, where: string, key: string): string {
  if (typeof value !== 'string') throw new DatasetError(`${where}: "${key}" must be a string, got ${JSON.stringify(value)?.slice(0, 60)}`)
  return value
}

export function toExample(record: unknown, stage: 'pt' | 'sft', source: Source, where: string): Example {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) throw new DatasetError(`${where}: a record must be a JSON object`)
  const r = record as Record<string, unknown>
  const col = (name: string, fallback: string) => source.columns[name] ?? fallback
  // LLaMA-Factory's system and history columns default to none: only a `columns` mapping names them.
  const optionalCol = (name: string) => source.columns[name] ?? (source.fromDatasetInfo ? undefined : name)
  if (stage === 'pt') {
    const key = source.columns.prompt ?? ('text' in r ? 'text' : 'content' in r ? 'content' : undefined)
    if (key === undefined || !(key in r)) {
      throw new DatasetError(`${where}: stage pt reads raw text from a "text" field, and this record has ${Object.keys(r).map((k) => `"${k}"`).join(', ') || 'no fields'} (alpaca and sharegpt records are for stage sft)`)
    }
    return { kind: 'text', text: str(r[key], where, key) }
  }
  const messagesKey = col('messages', 'conversations' in r ? 'conversations' : 'messages')
  const sharegpt = source.formatting === 'sharegpt' || (source.formatting === undefined && messagesKey in r)
  if (sharegpt) {
    const list = r[messagesKey]
    if (!Array.isArray(list) || list.length === 0) throw new DatasetError(`${where}: "${messagesKey}" must be a non-empty list of messages`)
    list.forEach((m, i) => {
      if (typeof m !== 'object' || m === null || Array.isArray(m)) {
        throw new DatasetError(`${where}: ${messagesKey}[${i}] must be an object like {"from": "human", "value": "..."}, got ${JSON.stringify(m)}`)
      }
    })
    const roleTag = source.tags.role_tag ?? ('from' in (list[0] as object) ? 'from' : 'role')
    const contentTag = source.tags.content_tag ?? ('value' in (list[0] as object) ? 'value' : 'content')
    const tagRole: Record<string, Message['role']> = { ...ROLE_OF }
    if (source.tags.user_tag) tagRole[source.tags.user_tag] = 'user'
    if (source.tags.assistant_tag) tagRole[source.tags.assistant_tag] = 'assistant'
    if (source.tags.system_tag) tagRole[source.tags.system_tag] = 'system'
    const messages: Message[] = list.map((m, i) => {
      const tag = (m as Record<string, unknown>)?.[roleTag]
      const role = typeof tag === 'string' ? tagRole[tag] : undefined
      if (!role) throw new DatasetError(`${where}: message ${i} has ${roleTag} ${JSON.stringify(tag)} (valid: ${Object.keys(tagRole).join(', ')})`)
      return { role, content: str((m as Record<string, unknown>)[contentTag], where, `${messagesKey}[${i}].${contentTag}`) }
    })
    const systemKey = optionalCol('system')
    if (systemKey !== undefined && typeof r[systemKey] === 'string' && messages[0]?.role !== 'system') messages.unshift({ role: 'system', content: r[systemKey] as string })
    return checkConversation(messages, where)
  }
  const instruction = col('prompt', 'instruction')
  const input = col('query', 'input')
  const output = col('response', 'output')
  if (!(instruction in r) || !(output in r)) {
    throw new DatasetError(
      `${where}: not a recognised record: alpaca needs "${instruction}" and "${output}", sharegpt needs "conversations" or "messages" ` +
        `(this one has ${Object.keys(r).map((k) => `"${k}"`).join(', ')})`,
    )
  }
  const messages: Message[] = []
  const systemKey = optionalCol('system')
  const system = systemKey === undefined ? undefined : r[systemKey]
  if (typeof system === 'string' && system) messages.push({ role: 'system', content: system })
  const historyKey = optionalCol('history')
  const history = historyKey === undefined ? undefined : r[historyKey]
  if (history !== undefined && history !== null) {
    if (!Array.isArray(history)) throw new DatasetError(`${where}: "history" must be a list of [prompt, response] pairs`)
    for (const [i, pair] of history.entries()) {
      if (!Array.isArray(pair) || pair.length !== 2) throw new DatasetError(`${where}: history[${i}] must be a [prompt, response] pair`)
      messages.push({ role: 'user', content: str(pair[0], where, `history[${i}][0]`) }, { role: 'assistant', content: str(pair[1], where, `history[${i}][1]`) })
    }
  }
  const query = r[input]
  const prompt = str(r[instruction], where, instruction) + (typeof query === 'string' && query ? `\n${query}` : '')
  messages.push({ role: 'user', content: prompt }, { role: 'assistant', content: str(r[output], where, output) })
  return checkConversation(messages, where)
}

function checkConversation(messages: Message[], where: string): Example {
  const turns = messages.filter((m) => m.role !== 'system')
  turns.forEach((m, i) => {
    const expected = i % 2 === 0 ? 'user' : 'assistant'
    if (m.role !== expected) throw new DatasetError(`${where}: messages must alternate user/assistant, but turn ${i} is ${m.role}`)
  })
  if (turns.length < 2 || turns[turns.length - 1]!.role !== 'assistant') {
    throw new DatasetError(`${where}: a conversation must end with an assistant message (there is nothing to learn otherwise)`)
  }
  return { kind: 'conversation', messages }
}

export interface LoadDatasetOptions {
  names: readonly string[]
  stage: 'pt' | 'sft'
  datasetDir: string
  baseDir: string
  maxSamples?: number | null
}

export async function loadExamples(options: LoadDatasetOptions): Promise<Example[]> {
  const sources = await resolveSources(options.names, options.datasetDir, options.baseDir)
  const examples: Example[] = []
  for (const source of sources) {
    let records = await readRecords(source.file)
    if (options.maxSamples) records = records.slice(0, options.maxSamples)
    for (const { record, line } of records) examples.push(toExample(record, options.stage, source, `${source.file}:${line}`))
  }
  if (examples.length === 0) throw new DatasetError(`no examples in ${sources.map((s) => s.file).join(', ')}`)
  return examples
}
