/**
 * CSV with a header row, streamed through csv-parse, giving the records pandas' `read_csv` (under `datasets` and
 * LLaMA-Factory) gives for text: blank lines skipped, a missing trailing field and pandas' default missing-value
 * markers ("", "NA", "null", "None", "nan", …) become null, a row with more fields than the header is an error.
 * Unlike pandas, fields stay strings: "42" is not turned into a number (a number would not be a usable text anyway).
 */
import { createReadStream } from 'node:fs'
import { parse } from 'csv-parse'
import { CHUNK_BYTES, DatasetError, type RawRecord, type ReadOptions } from './record.js'

/** pandas' STR_NA_VALUES (pandas/_libs/parsers.pyx), read as null by `read_csv`'s default `keep_default_na`. */
export const PANDAS_NA_VALUES: ReadonlySet<string> = new Set([
  '',
  '#N/A',
  '#N/A N/A',
  '#NA',
  '-1.#IND',
  '-1.#QNAN',
  '-NaN',
  '-nan',
  '1.#IND',
  '1.#QNAN',
  '<NA>',
  'N/A',
  'NA',
  'NULL',
  'NaN',
  'None',
  'n/a',
  'nan',
  'null',
])

interface CsvRow {
  record: string[]
  /** csv-parse's counts so far: `lines` up to the record's last line, `empty_lines` skipped. */
  info: { lines: number; bytes: number; empty_lines: number }
}

export async function* readCsv(file: string, options: ReadOptions = {}): AsyncGenerator<RawRecord> {
  const stream = createReadStream(file, { highWaterMark: CHUNK_BYTES, signal: options.signal })
  const parser = parse({ bom: true, skip_empty_lines: true, relax_column_count: true, info: true })
  stream.on('error', (error) => parser.destroy(error))
  stream.pipe(parser)
  let header: string[] | undefined
  let endLine = 0
  let emptyLines = 0
  try {
    for await (const row of parser as AsyncIterable<CsvRow>) {
      options.signal?.throwIfAborted()
      const fields = row.record
      // The line a record starts on (a quoted field may span lines): after the last record and the blank lines.
      const where = `${file}:${endLine + 1 + row.info.empty_lines - emptyLines}`
      endLine = row.info.lines
      emptyLines = row.info.empty_lines
      if (!header) {
        header = fields
        continue
      }
      if (fields.length > header.length) {
        throw new DatasetError(
          `${where}: ${fields.length} fields, but the header (line 1) names ${header.length} (${header.join(', ')})`,
        )
      }
      const record: Record<string, string | null> = {}
      header.forEach((name, i) => {
        const value = fields[i]
        record[name] = value === undefined || PANDAS_NA_VALUES.has(value) ? null : value
      })
      options.onBytes?.(row.info.bytes)
      yield { record, where }
    }
  } catch (error) {
    if (error instanceof DatasetError || (error as Error).name === 'AbortError') throw error
    const lines = (error as { lines?: number }).lines
    const code = (error as NodeJS.ErrnoException).code
    if (code && !code.startsWith('CSV_')) throw new DatasetError(`${file}: cannot read (${code})`, { cause: error })
    throw new DatasetError(`${file}${lines ? `:${lines}` : ''}: invalid CSV (${(error as Error).message})`, {
      cause: error,
    })
  } finally {
    stream.destroy()
    parser.destroy()
  }
}
