/**
 * Arrow IPC files as Hugging Face `datasets` writes them (`save_to_disk`'s and the cache's data-*.arrow are the
 * IPC *stream* format; the IPC *file* format is read too, as `datasets`' arrow loader falls back to it), read
 * record batch by record batch with apache-arrow: memory holds one batch (`datasets` writes 1000 rows a batch).
 * Rows become plain objects: lists become arrays, structs objects; batch B and row R of the file count from 0.
 */
import { open } from 'node:fs/promises'
import { RecordBatchReader, Vector } from 'apache-arrow'
import { DatasetError, type RawRecord, type ReadOptions } from './record.js'

/** An Arrow value (Vector for lists, StructRow proxies for structs) as plain JavaScript. */
export function plain(value: unknown): unknown {
  if (value === null || value === undefined) return null
  if (typeof value !== 'object') return value
  if (value instanceof Vector) return Array.from(value as Iterable<unknown>, plain)
  if (value instanceof Date) return value
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<unknown>)
  const json = (value as { toJSON?: () => Record<string, unknown> }).toJSON
  const object = typeof json === 'function' ? json.call(value) : (value as Record<string, unknown>)
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(object)) out[key] = plain(v)
  return out
}

export async function* readArrow(file: string, options: ReadOptions = {}): AsyncGenerator<RawRecord> {
  let handle
  try {
    handle = await open(file, 'r')
  } catch (error) {
    throw new DatasetError(`${file}: cannot read (${(error as NodeJS.ErrnoException).code})`, { cause: error })
  }
  try {
    const { size } = await handle.stat()
    let reader
    try {
      reader = await RecordBatchReader.from(handle)
      await reader.open()
    } catch (error) {
      throw new DatasetError(`${file}: not an Arrow IPC file or stream (${(error as Error).message})`, { cause: error })
    }
    let b = 0
    let row = 0
    let bytes = 0
    const batches = reader[Symbol.asyncIterator]()
    for (;;) {
      options.signal?.throwIfAborted()
      let next
      try {
        next = await batches.next()
      } catch (error) {
        throw new DatasetError(`${file}: batch ${b}: cannot decode (${(error as Error).message})`, { cause: error })
      }
      if (next.done) break
      const batch = next.value
      const names = batch.schema.fields.map((f) => f.name)
      const columns = names.map((_, i) => batch.getChildAt(i))
      bytes = Math.min(size, bytes + batch.data.byteLength)
      options.onBytes?.(bytes)
      for (let r = 0; r < batch.numRows; r++) {
        const record: Record<string, unknown> = {}
        names.forEach((name, i) => {
          record[name] = plain(columns[i]?.get(r))
        })
        yield { record, where: `${file}: batch ${b}, row ${row}` }
        row++
      }
      b++
    }
    options.onBytes?.(size)
  } finally {
    await handle.close()
  }
}
