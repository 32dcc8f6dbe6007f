/**
 * Parquet, read one row group at a time with parquet-wasm (the Rust `parquet` crate in WebAssembly: snappy, zstd,
 * gzip, brotli, lz4) from a file-backed Blob (`fs.openAsBlob`), so only the row group being decoded is read and
 * held, never the file. Chosen over the pure-JavaScript hyparquet for its worst case: hyparquet is 1.2-1.7x faster
 * on snappy and uncompressed files (both read them at >= 85 MB/s) but reads zstd at 13-27 MB/s, which a few
 * tokenizer workers outrun, against parquet-wasm's 25-45 (bench/results/readers.md, alternated runs on a loaded
 * machine; peak RSS alike, ~350 MB on a 239 MB file of 19 row groups). Rows
 * come out as Arrow and become plain objects as the arrow reader makes them (sharegpt's list of {from, value}
 * structs: an array of objects). Rows are numbered as pyarrow and pandas number them: row group G and row R of the
 * file, both from 0.
 */
import { openAsBlob } from 'node:fs'
import { stat } from 'node:fs/promises'
import { tableFromIPC } from 'apache-arrow'
import { ParquetFile } from 'parquet-wasm'
import { plain } from './arrow.js'
import { DatasetError, type RawRecord, type ReadOptions } from './record.js'

export async function* readParquet(file: string, options: ReadOptions = {}): AsyncGenerator<RawRecord> {
  let size: number
  let parquet: ParquetFile
  try {
    size = (await stat(file)).size
    parquet = await ParquetFile.fromFile(await openAsBlob(file))
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code) throw new DatasetError(`${file}: cannot read (${code})`, { cause: error })
    throw new DatasetError(`${file}: not a readable parquet file (${(error as Error).message ?? error})`, {
      cause: error,
    })
  }
  try {
    const metadata = parquet.metadata()
    const groups = metadata.numRowGroups()
    let row = 0
    let bytes = 0
    for (let g = 0; g < groups; g++) {
      options.signal?.throwIfAborted()
      const group = metadata.rowGroup(g)
      bytes = Math.min(size, bytes + Number(group.compressedSize()))
      let batches
      try {
        batches = tableFromIPC((await parquet.read({ rowGroups: [g] })).intoIPCStream()).batches
      } catch (error) {
        throw new DatasetError(`${file}: row group ${g}: cannot decode (${(error as Error).message ?? error})`, {
          cause: error,
        })
      }
      options.onBytes?.(bytes)
      for (const batch of batches) {
        const names = batch.schema.fields.map((f) => f.name)
        const columns = names.map((_, i) => batch.getChildAt(i))
        for (let r = 0; r < batch.numRows; r++) {
          const record: Record<string, unknown> = {}
          names.forEach((name, i) => {
            record[name] = plain(columns[i]?.get(r))
          })
          yield { record, where: `${file}: row group ${g}, row ${row}` }
          row++
        }
      }
    }
    options.onBytes?.(size)
  } finally {
    parquet.free()
  }
}
