/**
 * Training data as LLaMA-Factory 0.9.5 reads it: names in dataset_dir/dataset_info.json (or, llamapro's addition,
 * paths), each a file or a folder of files of one type — JSON/JSONL, parquet, csv, txt, arrow (lib/data/readers/) —
 * whose records are mapped to conversations (alpaca or sharegpt `formatting`, `columns`, `tags`, as
 * data/parser.py and data/converter.py map them) or to texts for continued pre-training. Examples are streamed: a
 * source of any size holds one record (or row group, or record batch) in memory. A malformed record is an error
 * naming the file and line (or row group and row).
 */
import { existsSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { isAbsolute, join, resolve } from 'node:path'
import { DatasetError, type DatasetFormat, describe, readFileRecords, resolveFiles } from './readers/index.js'

export { DatasetError, type DatasetFormat } from './readers/index.js'

export interface Message {
  role: 'system' | 'user' | 'assistant'
  content: string
}

export type Example = { kind: 'text'; text: string } | { kind: 'conversation'; messages: Message[] }

export interface DatasetSource {
  /** As the user wrote it in `dataset:`. */
  name: string
  /** Absolute paths; a folder expanded to its files, sorted (LLaMA-Factory's rule: one type per folder). */
  files: string[]
  format: DatasetFormat
  formatting: 'alpaca' | 'sharegpt'
  /**
   * The column mapping in effect. For a dataset_info.json entry it is LLaMA-Factory's: the entry's `columns` when
   * it has that key (a column it does not name is then unused, as `DatasetAttr.join` sets it to None), else
   * LLaMA-Factory's defaults. For a path: {} (llamapro reads the usual names, `system` and `history` included).
   */
  columns: Record<string, string>
  /** Likewise for sharegpt's `tags`. */
  tags: Record<string, string>
  fromDatasetInfo: boolean
  /** Sum of the files' sizes, for progress. */
  totalBytes: number
}

export interface LocatedExample {
  example: Example
  /** "path:line" (json, jsonl, csv, txt), "path: row group G, row R" (parquet), "path: batch B, row R" (arrow). */
  where: string
}

/** LLaMA-Factory's DatasetAttr defaults, used when an entry has no `columns` (or no `tags`) key. */
const DEFAULT_COLUMNS: Readonly<Record<string, string>> = {
  prompt: 'instruction',
  query: 'input',
  response: 'output',
  messages: 'conversations',
}
const DEFAULT_TAGS: Readonly<Record<string, string>> = {
  role_tag: 'from',
  content_tag: 'value',
  user_tag: 'human',
  assistant_tag: 'gpt',
  observation_tag: 'observation',
  function_tag: 'function_call',
  system_tag: 'system',
}
const COLUMN_NAMES = [
  'prompt',
  'query',
  'response',
  'history',
  'messages',
  'system',
  'tools',
  'images',
  'videos',
  'audios',
  'chosen',
  'rejected',
  'kto_tag',
]
const TAG_NAMES = Object.keys(DEFAULT_TAGS)
/** Entry keys that load from somewhere other than a local file. */
const REMOTE_KEYS = ['hf_hub_url', 'ms_hub_url', 'om_hub_url', 'script_url', 'cloud_file_name']

function stringMap(value: unknown, where: string, names: readonly string[]): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new DatasetError(`${where} must be an object like {"${names[0]}": "column"}, got ${describe(value)}`)
  const out: Record<string, string> = {}
  for (const [key, v] of Object.entries(value)) {
    if (!names.includes(key))
      throw new DatasetError(`${where} has an unknown key "${key}" (LLaMA-Factory's are: ${names.join(', ')})`)
    if (v === null) continue
    if (typeof v !== 'string') throw new DatasetError(`${where}.${key} must be a string, got ${describe(v)}`)
    out[key] = v
  }
  return out
}

/** The first record of a source, to tell alpaca from sharegpt for a path or an entry without `formatting`. */
async function firstRecord(file: string, format: DatasetFormat): Promise<unknown> {
  const records = readFileRecords(file, format)
  try {
    const first = await records.next()
    return first.done ? undefined : first.value.record
  } finally {
    await records.return(undefined)
  }
}

function looksSharegpt(record: unknown, messagesColumn: string | undefined, promptColumn: string | undefined): boolean {
  if (typeof record !== 'object' || record === null) return false
  const r = record as Record<string, unknown>
  const messages = messagesColumn ?? ('conversations' in r ? 'conversations' : 'messages')
  return Array.isArray(r[messages]) && !(promptColumn !== undefined && promptColumn in r)
}

/**
 * Finds each dataset: a path (relative to the working directory, then dataset_dir), or a name in
 * dataset_dir/dataset_info.json (its `file_name` relative to dataset_dir). Either may be a folder.
 */
export async function resolveDatasets(
  names: readonly string[],
  datasetDir: string,
  baseDir: string,
): Promise<DatasetSource[]> {
  let info: Record<string, unknown> | undefined
  const infoPath = join(datasetDir, 'dataset_info.json')
  const sources: DatasetSource[] = []
  for (const name of names) {
    const candidates = isAbsolute(name) ? [name] : [resolve(baseDir, name), resolve(datasetDir, name)]
    const path = candidates.find((c) => existsSync(c))
    if (path) {
      const { files, format, sizes } = await resolveFiles(path, name)
      const sharegpt = looksSharegpt(await firstRecord(files[0]!, format), undefined, 'instruction')
      sources.push({
        name,
        files,
        format,
        formatting: sharegpt ? 'sharegpt' : 'alpaca',
        columns: {},
        tags: {},
        fromDatasetInfo: false,
        totalBytes: sizes.reduce((a, b) => a + b, 0),
      })
      continue
    }
    if (info === undefined && existsSync(infoPath)) {
      try {
        info = JSON.parse(await readFile(infoPath, 'utf8')) as Record<string, unknown>
      } catch (error) {
        throw new DatasetError(`${infoPath}: not valid JSON (${(error as Error).message})`)
      }
    }
    const entry = info?.[name] as Record<string, unknown> | undefined
    if (!entry) {
      throw new DatasetError(
        `dataset "${name}" not found: no file or folder ${candidates.join(' or ')}` +
          (info
            ? `, and no entry "${name}" in ${infoPath} (it has: ${Object.keys(info).join(', ')})`
            : ` and no ${infoPath}`),
      )
    }
    const where = `${infoPath}: entry "${name}"`
    const remote = REMOTE_KEYS.find((k) => k in entry)
    if (typeof entry.file_name !== 'string') {
      throw new DatasetError(
        `${where} has no file_name${remote ? ` (it has ${remote}: llamapro reads local files only; download them and name them in file_name)` : ''}`,
      )
    }
    if (entry.formatting !== undefined && entry.formatting !== 'alpaca' && entry.formatting !== 'sharegpt') {
      throw new DatasetError(
        `${where}: formatting ${describe(entry.formatting)} is not supported (llamapro reads "alpaca" and "sharegpt")`,
      )
    }
    if (entry.ranking === true)
      throw new DatasetError(
        `${where}: ranking (preference) data is for reward modelling and DPO, which llamapro does not train`,
      )
    if (entry.num_samples !== undefined && entry.num_samples !== null) {
      throw new DatasetError(
        `${where}: num_samples is not supported (LLaMA-Factory draws them with an unseeded numpy permutation); use ` +
          `max_samples`,
      )
    }
    const columns =
      'columns' in entry ? stringMap(entry.columns, `${where}: columns`, COLUMN_NAMES) : { ...DEFAULT_COLUMNS }
    const tags = 'tags' in entry ? stringMap(entry.tags, `${where}: tags`, TAG_NAMES) : { ...DEFAULT_TAGS }
    const entryPath = resolve(datasetDir, entry.file_name)
    if (!existsSync(entryPath))
      throw new DatasetError(`dataset "${name}": ${entryPath} (file_name in ${infoPath}) does not exist`)
    const { files, format, sizes } = await resolveFiles(entryPath, name)
    let formatting = entry.formatting as 'alpaca' | 'sharegpt' | undefined
    // LLaMA-Factory defaults to alpaca and fails on a sharegpt record; llamapro recognises it.
    formatting ??= looksSharegpt(await firstRecord(files[0]!, format), columns.messages, columns.prompt)
      ? 'sharegpt'
      : 'alpaca'
    sources.push({
      name,
      files,
      format,
      formatting,
      columns,
      tags,
      fromDatasetInfo: true,
      totalBytes: sizes.reduce((a, b) => a + b, 0),
    })
  }
  return sources
}

/** What identifies the data's content (for a cache key): each file's path, size and modification time. */
export async function sourceFingerprint(
  source: DatasetSource,
): Promise<{ path: string; size: number; mtimeMs: number }[]> {
  return Promise.all(
    source.files.map(async (path) => {
      const s = await stat(path)
      return { path, size: s.size, mtimeMs: s.mtimeMs }
    }),
  )
}

/**
 * The stage a record is for when the caller does not say: a text column (columns.prompt, `text` or `content`)
 * without instruction or conversation fields is pre-training text; anything else is a conversation.
 */
function recordStage(record: unknown, source: Pick<DatasetSource, 'columns'>): 'pt' | 'sft' {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return 'sft'
  const r = record as Record<string, unknown>
  const textKey = source.columns.prompt ?? ('text' in r ? 'text' : 'content' in r ? 'content' : undefined)
  const conversational =
    (source.columns.response ?? 'output') in r || (source.columns.messages ?? 'conversations') in r || 'messages' in r
  return textKey !== undefined && textKey in r && !conversational ? 'pt' : 'sft'
}

/**
 * The examples of a source in file order. `onBytes` gets the bytes of the source's files read so far (monotonic,
 * `totalBytes` at the end). `stage` says what to make of each record; without it, a record with only a text column
 * is a pre-training text and any other a conversation.
 */
export async function* streamExamples(
  source: DatasetSource,
  options: { signal?: AbortSignal; onBytes?: (bytesRead: number) => void; stage?: 'pt' | 'sft' } = {},
): AsyncIterable<LocatedExample> {
  let before = 0
  for (const file of source.files) {
    const size = (await stat(file)).size
    const onBytes = options.onBytes && ((n: number) => options.onBytes!(before + Math.min(n, size)))
    for await (const { record, where } of readFileRecords(file, source.format, { signal: options.signal, onBytes })) {
      options.signal?.throwIfAborted()
      yield { example: toExample(record, options.stage ?? recordStage(record, source), source, where), where }
    }
    before += size
    options.onBytes?.(before)
  }
}

const ROLE_OF: Record<string, Message['role']> = {
  human: 'user',
  user: 'user',
  gpt: 'assistant',
  assistant: 'assistant',
  system: 'system',
}

function str(value: unknown, where: string, key: string): string {
  if (typeof value !== 'string') throw new DatasetError(`${where}: "${key}" must be a string, got ${describe(value)}`)
  return value
}

/** Python truthiness of a column value, as LLaMA-Factory's `if example[column]` tests it. */
const truthy = (v: unknown) =>
  v !== null && v !== undefined && v !== '' && v !== false && v !== 0 && !(Array.isArray(v) && v.length === 0)

type Mapping = Pick<DatasetSource, 'columns' | 'tags' | 'fromDatasetInfo'> & { formatting?: 'alpaca' | 'sharegpt' }

/** One record as an example, mapped by the source's formatting, columns and tags. */
export function toExample(record: unknown, stage: 'pt' | 'sft', source: Mapping, where: string): Example {
  if (typeof record !== 'object' || record === null || Array.isArray(record))
    throw new DatasetError(`${where}: a record must be a JSON object, got ${describe(record)}`)
  const r = record as Record<string, unknown>
  const info = source.fromDatasetInfo
  // Column names in effect: LLaMA-Factory's mapping for dataset_info.json entries (an unnamed column is unused),
  // the usual names for paths (system and history included).
  const column = (name: string, pathDefault: string): string | undefined =>
    info ? source.columns[name] : (source.columns[name] ?? pathDefault)
  const messagesKey = info
    ? source.columns.messages
    : (source.columns.messages ?? ('conversations' in r ? 'conversations' : 'messages'))
  const sharegpt =
    source.formatting === 'sharegpt' ||
    (source.formatting === undefined && messagesKey !== undefined && messagesKey in r)

  if (stage === 'pt' && !sharegpt) {
    // LLaMA-Factory's pt text is the first prompt message: the first history prompt, else "instruction\ninput"
    // (the non-empty ones); a null text is empty. llamapro also reads `text`/`content` when the prompt column is
    // absent.
    let promptKey = column('prompt', 'instruction')
    if (promptKey === undefined || !(promptKey in r)) {
      const fallback = 'text' in r ? 'text' : 'content' in r ? 'content' : undefined
      if (
        fallback === undefined ||
        (info && source.columns.prompt !== undefined && source.columns.prompt !== 'instruction')
      ) {
        throw new DatasetError(
          `${where}: stage pt reads raw text from ${promptKey ? `the "${promptKey}" column` : 'a "text" field'}, and this record has ${
            Object.keys(r)
              .map((k) => `"${k}"`)
              .join(', ') || 'no fields'
          }${info ? ' (map it with "columns": {"prompt": "<column>"} in dataset_info.json)' : ''}`,
        )
      }
      promptKey = fallback
    }
    const historyKey = column('history', 'history')
    const history = historyKey === undefined ? undefined : r[historyKey]
    if (Array.isArray(history) && history.length > 0 && Array.isArray(history[0]))
      return { kind: 'text', text: str(history[0][0], where, `${historyKey}[0][0]`) }
    const queryKey = column('query', 'input')
    const parts = [r[promptKey], queryKey === undefined ? undefined : r[queryKey]].filter(truthy)
    parts.forEach((p, i) => str(p, where, i === 0 && truthy(r[promptKey!]) ? promptKey! : queryKey!))
    return { kind: 'text', text: parts.join('\n') }
  }

  if (sharegpt) {
    if (messagesKey === undefined)
      throw new DatasetError(`${where}: sharegpt data needs "columns": {"messages": "<column>"} in dataset_info.json`)
    const list = r[messagesKey]
    if (!Array.isArray(list) || list.length === 0)
      throw new DatasetError(`${where}: "${messagesKey}" must be a non-empty list of messages, got ${describe(list)}`)
    list.forEach((m, i) => {
      if (typeof m !== 'object' || m === null || Array.isArray(m)) {
        throw new DatasetError(
          `${where}: ${messagesKey}[${i}] must be an object like {"from": "human", "value": "..."}, got ${describe(m)}`,
        )
      }
    })
    const first = list[0] as Record<string, unknown>
    // LLaMA-Factory's tags; where the records use the other usual pair (from/value or role/content), that one.
    const pick = (tag: string | undefined, a: string, b: string) =>
      tag !== undefined && tag in first ? tag : a in first ? a : b
    const roleTag = pick(source.tags.role_tag, 'from', 'role')
    const contentTag = pick(source.tags.content_tag, 'value', 'content')
    const tagRole: Record<string, Message['role']> = { ...ROLE_OF }
    if (source.tags.user_tag) tagRole[source.tags.user_tag] = 'user'
    if (source.tags.assistant_tag) tagRole[source.tags.assistant_tag] = 'assistant'
    if (source.tags.system_tag) tagRole[source.tags.system_tag] = 'system'
    const messages: Message[] = list.map((m, i) => {
      const tag = (m as Record<string, unknown>)[roleTag]
      const role = typeof tag === 'string' ? tagRole[tag] : undefined
      if (!role)
        throw new DatasetError(
          `${where}: message ${i} has ${roleTag} ${describe(tag)} (valid: ${Object.keys(tagRole).join(', ')})`,
        )
      return {
        role,
        content: str((m as Record<string, unknown>)[contentTag], where, `${messagesKey}[${i}].${contentTag}`),
      }
    })
    // LLaMA-Factory: an empty system is no system
    if (messages[0]!.role === 'system' && messages[0]!.content === '') messages.shift()
    const systemKey = column('system', 'system')
    const system = systemKey === undefined ? undefined : r[systemKey]
    if (typeof system === 'string' && system && messages[0]?.role !== 'system')
      messages.unshift({ role: 'system', content: system })
    const conversation = checkConversation(messages, where)
    if (stage === 'pt') return { kind: 'text', text: conversation.messages.find((m) => m.role !== 'system')!.content }
    return conversation
  }

  const instruction = column('prompt', 'instruction')
  const input = column('query', 'input')
  const output = column('response', 'output')
  if (output === undefined || !(output in r) || (instruction !== undefined && !(instruction in r))) {
    const looks = (messagesKey ?? 'conversations') in r || 'messages' in r
    throw new DatasetError(
      `${where}: not a recognised record: alpaca needs ` +
        `${instruction ? `"${instruction}" and ` : ''}"${output ?? 'a response column'}"` +
        (info ? ' (as mapped in dataset_info.json)' : ', sharegpt needs "conversations" or "messages"') +
        ` (this one has ${Object.keys(r)
          .map((k) => `"${k}"`)
          .join(', ')})` +
        (info && looks ? '; it looks like sharegpt: add "formatting": "sharegpt" to its dataset_info.json entry' : ''),
    )
  }
  const messages: Message[] = []
  const systemKey = column('system', 'system')
  const system = systemKey === undefined ? undefined : r[systemKey]
  if (truthy(system)) messages.push({ role: 'system', content: str(system, where, systemKey!) })
  const historyKey = column('history', 'history')
  const history = historyKey === undefined ? undefined : r[historyKey]
  if (history !== undefined && history !== null) {
    if (!Array.isArray(history))
      throw new DatasetError(
        `${where}: "${historyKey}" must be a list of [prompt, response] pairs, got ${describe(history)}`,
      )
    for (const [i, pair] of history.entries()) {
      if (!Array.isArray(pair) || pair.length !== 2)
        throw new DatasetError(`${where}: ${historyKey}[${i}] must be a [prompt, response] pair, got ${describe(pair)}`)
      messages.push(
        { role: 'user', content: str(pair[0], where, `${historyKey}[${i}][0]`) },
        { role: 'assistant', content: str(pair[1], where, `${historyKey}[${i}][1]`) },
      )
    }
  }
  // "instruction\ninput", leaving out an empty one (LLaMA-Factory's "\n".join of the non-empty parts).
  const parts: string[] = []
  if (instruction !== undefined && truthy(r[instruction])) parts.push(str(r[instruction], where, instruction))
  if (input !== undefined && truthy(r[input])) parts.push(str(r[input], where, input))
  messages.push(
    { role: 'user', content: parts.join('\n') },
    { role: 'assistant', content: str(r[output], where, output) },
  )
  return checkConversation(messages, where)
}

function checkConversation(messages: Message[], where: string): Example & { kind: 'conversation' } {
  const turns = messages.filter((m) => m.role !== 'system')
  turns.forEach((m, i) => {
    const expected = i % 2 === 0 ? 'user' : 'assistant'
    if (m.role !== expected)
      throw new DatasetError(`${where}: messages must alternate user/assistant, but turn ${i} is ${m.role}`)
  })
  if (turns.length < 2 || turns[turns.length - 1]!.role !== 'assistant') {
    throw new DatasetError(
      `${where}: a conversation must end with an assistant message (there is nothing to learn otherwise)`,
    )
  }
  return { kind: 'conversation', messages }
}

/** Reads a JSON or JSONL file's records with their lines (streamed; kept for callers that want them all). */
export async function readRecords(file: string): Promise<{ record: unknown; line: number }[]> {
  const out: { record: unknown; line: number }[] = []
  for await (const { record, where } of readFileRecords(file, 'json'))
    out.push({ record, line: Number(where.slice(where.lastIndexOf(':') + 1)) })
  return out
}

export interface LoadDatasetOptions {
  names: readonly string[]
  stage: 'pt' | 'sft'
  datasetDir: string
  baseDir: string
  /** LLaMA-Factory's max_samples: the first N examples of each dataset. */
  maxSamples?: number | null
  signal?: AbortSignal
}

/** Every example of the named datasets in memory (for small data: evaluation, the demo); built on streamExamples. */
export async function loadExamples(options: LoadDatasetOptions): Promise<Example[]> {
  const sources = await resolveDatasets(options.names, options.datasetDir, options.baseDir)
  const examples: Example[] = []
  for (const source of sources) {
    let n = 0
    for await (const { example } of streamExamples(source, { stage: options.stage, signal: options.signal })) {
      examples.push(example)
      if (options.maxSamples && ++n >= options.maxSamples) break
    }
  }
  if (examples.length === 0) throw new DatasetError(`no examples in ${sources.flatMap((s) => s.files).join(', ')}`)
  return examples
}
