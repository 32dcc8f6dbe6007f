/**
 * Plain text, one record a line as Hugging Face `datasets`' "text" loader (under LLaMA-Factory) makes them:
 * `{text: line}`, line breaks "\n", "\r\n" and "\r" (Python's universal newlines), the break itself dropped, empty
 * lines kept as empty texts, no record after a final line break. Streamed: memory holds one line.
 */
import { createReadStream } from 'node:fs'
import { CHUNK_BYTES, DatasetError, type RawRecord, type ReadOptions } from './record.js'

const MAX_STRING = (1 << 29) - 24

export async function* readText(file: string, options: ReadOptions = {}): AsyncGenerator<RawRecord> {
  const stream = createReadStream(file, { highWaterMark: CHUNK_BYTES, signal: options.signal })
  let pending: Buffer[] = []
  let pendingBytes = 0
  let line = 0
  let afterCR = false
  let bytes = 0
  const out: RawRecord[] = []
  const flush = () => {
    line++
    if (pendingBytes > MAX_STRING)
      throw new DatasetError(
        `${file}:${line}: a line of ${pendingBytes} bytes is longer than the longest string JavaScript can hold`,
      )
    const text = pending.length === 1 ? pending[0]!.toString('utf8') : Buffer.concat(pending).toString('utf8')
    pending = []
    pendingBytes = 0
    out.push({ record: { text }, where: `${file}:${line}` })
  }
  try {
    for await (const data of stream) {
      const chunk = data as Buffer
      bytes += chunk.length
      let pos = 0
      if (afterCR && chunk.length > 0) {
        if (chunk[0] === 0x0a) pos = 1
        afterCR = false
      }
      for (let i = pos; i < chunk.length; i++) {
        const b = chunk[i]
        if (b !== 0x0a && b !== 0x0d) continue
        pending.push(chunk.subarray(pos, i))
        pendingBytes += i - pos
        flush()
        if (b === 0x0d) {
          if (i + 1 < chunk.length) {
            if (chunk[i + 1] === 0x0a) i++
          } else afterCR = true
        }
        pos = i + 1
      }
      if (pos < chunk.length) {
        pending.push(chunk.subarray(pos))
        pendingBytes += chunk.length - pos
      }
      options.onBytes?.(bytes)
      for (const record of out) yield record
      out.length = 0
    }
  } catch (error) {
    if (error instanceof DatasetError || (error as Error).name === 'AbortError') throw error
    throw new DatasetError(
      `${file}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
      { cause: error },
    )
  } finally {
    stream.destroy()
  }
  if (pendingBytes > 0) {
    flush()
    yield out[0]!
  }
}
