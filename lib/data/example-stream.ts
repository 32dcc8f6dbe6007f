/**
 * The dataset interface the token store is built from: sources resolved once, then examples streamed one at a
 * time, with the bytes read reported for progress. This is a minimal JSON/JSONL implementation (JSONL is read line
 * by line, so its size is bounded by disk, not RAM; a .json array is still parsed whole). The streaming readers
 * of every format (parquet, csv, txt, arrow, folders) implement the same four functions in dataset.ts.
 */
import { createReadStream, existsSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { extname, isAbsolute, join, resolve } from 'node:path'
import { type Example, DatasetError, readRecords, toExample } from './dataset.js'

export type DatasetFormat = 'json' | 'parquet' | 'csv' | 'text' | 'arrow'

export interface DatasetSource {
  name: string
  files: string[]
  format: DatasetFormat
  formatting: 'alpaca' | 'sharegpt'
  columns: Record<string, string>
  tags: Record<string, string>
  fromDatasetInfo: boolean
  totalBytes: number
}

export interface LocatedExample {
  example: Example
  /** file:line of the record, for errors. */
  where: string
}

interface DatasetInfoEntry {
  file_name?: string
  formatting?: 'alpaca' | 'sharegpt'
  columns?: Record<string, string>
  tags?: Record<string, string>
}

/** Sources whose dataset_info.json entry names a formatting; the others are recognised by their records' fields. */
const explicitFormatting = new WeakSet<DatasetSource>()

/** Finds each dataset: a path (relative to the working directory or dataset_dir), or a dataset_info.json name. */
export async function resolveDatasets(names: readonly string[], datasetDir: string, baseDir: string): Promise<DatasetSource[]> {
  let info: Record<string, DatasetInfoEntry> | undefined
  const infoPath = join(datasetDir, 'dataset_info.json')
  const sources: DatasetSource[] = []
  const make = async (name: string, file: string, entry: DatasetInfoEntry | undefined): Promise<DatasetSource> => {
    const ext = extname(file)
    if (ext !== '.json' && ext !== '.jsonl') throw new DatasetError(`dataset "${name}": ${file} is not a .json or .jsonl file`)
    const source: DatasetSource = {
      name,
      files: [file],
      format: 'json',
      formatting: entry?.formatting ?? 'alpaca',
      columns: entry?.columns ?? {},
      tags: entry?.tags ?? {},
      fromDatasetInfo: entry !== undefined,
      totalBytes: (await stat(file)).size,
    }
    if (entry?.formatting) explicitFormatting.add(source)
    return source
  }
  for (const name of names) {
    const candidates = isAbsolute(name) ? [name] : [resolve(baseDir, name), resolve(datasetDir, name)]
    const file = candidates.find((c) => existsSync(c))
    if (file) {
      sources.push(await make(name, file, undefined))
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
    sources.push(await make(name, entryFile, entry))
  }
  return sources
}

/**
 * The stage a record is for, from its shape: a text column (columns.prompt, `text` or `content`) without
 * instruction or conversation fields is pre-training text; anything else is a conversation.
 */
function recordStage(record: unknown, source: DatasetSource): 'pt' | 'sft' {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return 'sft'
  const r = record as Record<string, unknown>
  const textKey = source.columns.prompt ?? ('text' in r ? 'text' : 'content' in r ? 'content' : undefined)
  const conversational = (source.columns.response ?? 'output') in r || (source.columns.messages ?? 'conversations') in r || 'messages' in r
  return textKey !== undefined && textKey in r && !conversational ? 'pt' : 'sft'
}

function located(record: unknown, source: DatasetSource, file: string, line: number): LocatedExample {
  const where = `${file}:${line}`
  const legacy = { file, fromDatasetInfo: source.fromDatasetInfo, formatting: explicitFormatting.has(source) ? source.formatting : undefined, columns: source.columns, tags: source.tags }
  return { example: toExample(record, recordStage(record, source), legacy, where), where }
}

/** Examples of a source in file order; JSONL is read line by line. */
export async function* streamExamples(source: DatasetSource, options: { signal?: AbortSignal; onBytes?: (bytesRead: number) => void } = {}): AsyncIterable<LocatedExample> {
  let before = 0
  for (const file of source.files) {
    const size = (await stat(file)).size
    const head = await readHead(file)
    if (extname(file) === '.json' && head.trimStart().startsWith('[')) {
      for (const { record, line } of await readRecords(file)) yield located(record, source, file, line)
      before += size
      options.onBytes?.(before)
      continue
    }
    const stream = createReadStream(file, { highWaterMark: 1 << 20, signal: options.signal })
    let rest = Buffer.alloc(0)
    let line = 0
    let read = 0
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        read += chunk.length
        let data = rest.length > 0 ? Buffer.concat([rest, chunk]) : chunk
        let start = 0
        for (let nl = data.indexOf(10, start); nl !== -1; nl = data.indexOf(10, start)) {
          line++
          const text = data.toString('utf8', start, nl)
          start = nl + 1
          const example = parseLine(text, source, file, line)
          if (example) yield example
        }
        rest = Buffer.from(data.subarray(start))
        data = rest
        options.onBytes?.(before + read - rest.length)
      }
    } catch (error) {
      if (error instanceof DatasetError || (error as Error).name === 'AbortError') throw error
      throw new DatasetError(`${file}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`)
    }
    if (rest.length > 0) {
      const example = parseLine(rest.toString('utf8'), source, file, line + 1)
      if (example) yield example
    }
    before += size
    options.onBytes?.(before)
  }
}

function parseLine(text: string, source: DatasetSource, file: string, line: number): LocatedExample | undefined {
  if (text.trim() === '') return undefined
  let record: unknown
  try {
    record = JSON.parse(text)
  } catch (error) {
    throw new DatasetError(`${file}:${line}: invalid JSON on this line (${(error as Error).message})`)
  }
  return located(record, source, file, line)
}

async function readHead(file: string): Promise<string> {
  const { open } = await import('node:fs/promises')
  let handle
  try {
    handle = await open(file, 'r')
  } catch (error) {
    throw new DatasetError(`${file}: cannot read (${(error as NodeJS.ErrnoException).code})`)
  }
  try {
    const buffer = Buffer.alloc(256)
    const { bytesRead } = await handle.read(buffer, 0, 256, 0)
    return buffer.toString('utf8', 0, bytesRead)
  } finally {
    await handle.close()
  }
}

/** What identifies the data's content for the token store's cache key: each file's path, size and mtime. */
export async function sourceFingerprint(source: DatasetSource): Promise<{ path: string; size: number; mtimeMs: number }[]> {
  return Promise.all(
    source.files.map(async (path) => {
      const s = await stat(path)
      return { path, size: s.size, mtimeMs: s.mtimeMs }
    }),
  )
}
