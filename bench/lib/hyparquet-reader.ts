/**
 * hyparquet (pure JavaScript; zstd through hyparquet-compressors), row group by row group from the file: the
 * alternative to parquet-wasm that bench/readers.ts measures (bench/results/readers.md).
 */
import { open } from 'node:fs/promises'
import { parquetMetadataAsync, parquetReadObjects, type AsyncBuffer, type FileMetaData } from 'hyparquet'
import { compressors } from 'hyparquet-compressors'
import { DatasetError, type RawRecord, type ReadOptions } from '../../lib/data/readers/record.js'

export async function* readParquet(file: string, options: ReadOptions = {}): AsyncGenerator<RawRecord> {
  let handle
  try {
    handle = await open(file, 'r')
  } catch (error) {
    throw new DatasetError(`${file}: cannot read (${(error as NodeJS.ErrnoException).code})`, { cause: error })
  }
  try {
    const { size } = await handle.stat()
    const fh = handle
    const buffer: AsyncBuffer = {
      byteLength: size,
      async slice(start: number, end = size): Promise<ArrayBuffer> {
        const bytes = new Uint8Array(end - start)
        let done = 0
        while (done < bytes.length) {
          const { bytesRead } = await fh.read(bytes, done, bytes.length - done, start + done)
          if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${start + done}`)
          done += bytesRead
        }
        return bytes.buffer
      },
    }
    let metadata: FileMetaData
    try {
      metadata = await parquetMetadataAsync(buffer)
    } catch (error) {
      throw new DatasetError(`${file}: not a readable parquet file (${(error as Error).message})`, { cause: error })
    }
    let rowStart = 0
    let bytes = 0
    for (const [g, group] of metadata.row_groups.entries()) {
      options.signal?.throwIfAborted()
      const rowEnd = rowStart + Number(group.num_rows)
      let rows: Record<string, unknown>[]
      try {
        rows = await parquetReadObjects({ file: buffer, metadata, rowStart, rowEnd, compressors })
      } catch (error) {
        throw new DatasetError(`${file}: row group ${g}: cannot decode (${(error as Error).message})`, { cause: error })
      }
      bytes = Math.min(
        size,
        bytes + group.columns.reduce((sum, c) => sum + Number(c.meta_data?.total_compressed_size ?? 0), 0),
      )
      options.onBytes?.(bytes)
      for (const [i, record] of rows.entries()) yield { record, where: `${file}: row group ${g}, row ${rowStart + i}` }
      rowStart = rowEnd
    }
    options.onBytes?.(size)
  } finally {
    await handle.close()
  }
}
