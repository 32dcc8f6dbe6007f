/** The record readers, one per LLaMA-Factory file type; each streams, holding one record, row group or batch. */
import { readArrow } from './arrow.js'
import { readCsv } from './csv.js'
import type { DatasetFormat } from './folder.js'
import { readJson } from './json.js'
import { readParquet } from './parquet.js'
import type { RawRecord, ReadOptions } from './record.js'
import { readText } from './text.js'

export { FILE_TYPES, formatOf, resolveFiles, type DatasetFormat } from './folder.js'
export { DatasetError, describe, type RawRecord, type ReadOptions } from './record.js'

const READERS: Record<DatasetFormat, (file: string, options?: ReadOptions) => AsyncGenerator<RawRecord>> = {
  json: readJson,
  parquet: readParquet,
  csv: readCsv,
  text: readText,
  arrow: readArrow,
}

export function readFileRecords(file: string, format: DatasetFormat, options?: ReadOptions): AsyncGenerator<RawRecord> {
  return READERS[format](file, options)
}
