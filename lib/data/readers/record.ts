/**
 * What every reader yields: one record of a data file (a JSON object, a parquet/arrow row, a csv row, a text line
 * as {text}), with where it came from for error messages, and the options every reader takes.
 */
import { LlamaproError } from '../../errors.js'

export interface RawRecord {
  record: unknown
  /** "path:line" (json, jsonl, csv, txt), "path: row group G, row R" (parquet), "path: batch B, row R" (arrow). */
  where: string
}

export interface ReadOptions {
  signal?: AbortSignal
  /** Called with the bytes of this file consumed so far (monotonic; the file's size once it is done). */
  onBytes?: (bytesRead: number) => void
}

/** Chunk size of the streaming readers: large enough for throughput, small enough to bound memory. */
export const CHUNK_BYTES = 1 << 20

export class DatasetError extends LlamaproError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('LLAMAPRO_DATASET', message, options)
    this.name = 'DatasetError'
  }
}

/** A value as a short string for error messages (JSON.stringify throws on bigint and returns undefined for some). */
export function describe(value: unknown): string {
  if (typeof value === 'bigint') return `${value}`
  if (value === undefined) return 'nothing (the field is missing)'
  try {
    const s = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}` : v))
    return s === undefined ? String(value) : s.length > 80 ? `${s.slice(0, 77)}...` : s
  } catch {
    return String(value)
  }
}
