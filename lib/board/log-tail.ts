/**
 * Reads a JSON-lines file that another process is appending to, a little at a time: each poll stats the file and
 * reads only the bytes appended since the last one, so a 100,000-line trainer_log.jsonl is parsed once, not once a
 * second. A last line without its newline is being written: it is kept back and parsed when it completes. A
 * complete line that is not a JSON object (a crash mid-write, then more lines) is skipped and counted.
 */
import { open, stat } from 'node:fs/promises'

const CHUNK = 1 << 20

export interface TailResult {
  /** The objects of the lines completed since the last poll, in file order. */
  records: Record<string, unknown>[]
  /** True when the file shrank or was replaced: the caller must forget what it had and take `records` as all. */
  reset: boolean
}

export class JsonLinesTail {
  private offset = 0
  private pending: Buffer = Buffer.alloc(0)
  private identity = ''
  /** Complete lines that were not JSON objects. */
  skipped = 0
  /** The file's size and modification time at the last poll (0 when it is absent). */
  size = 0
  mtimeMs = 0

  constructor(readonly path: string) {}

  async poll(): Promise<TailResult> {
    let info
    try {
      info = await stat(this.path)
    } catch {
      return { records: [], reset: false }
    }
    const identity = `${info.dev}:${info.ino}`
    let reset = false
    if (identity !== this.identity || info.size < this.offset) {
      // A new file under the same name (overwrite_output_dir) or a truncated one: start over.
      reset = this.identity !== ''
      this.identity = identity
      this.offset = 0
      this.pending = Buffer.alloc(0)
      this.skipped = 0
    }
    this.size = info.size
    this.mtimeMs = info.mtimeMs
    if (info.size === this.offset) return { records: [], reset }
    const records: Record<string, unknown>[] = []
    const file = await open(this.path, 'r')
    try {
      const buffer = Buffer.allocUnsafe(Math.min(CHUNK, info.size - this.offset))
      while (this.offset < info.size) {
        const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, info.size - this.offset), this.offset)
        if (bytesRead === 0) break
        this.offset += bytesRead
        const read = buffer.subarray(0, bytesRead)
        const bytes = this.pending.length ? Buffer.concat([this.pending, read]) : read
        // A line break byte never occurs inside a multi-byte UTF-8 sequence: splitting the bytes there is safe.
        const lastBreak = bytes.lastIndexOf(10)
        if (lastBreak < 0) {
          this.pending = Buffer.from(bytes)
          continue
        }
        this.pending = Buffer.from(bytes.subarray(lastBreak + 1))
        for (const line of bytes.toString('utf8', 0, lastBreak).split('\n')) this.parse(line, records)
      }
    } finally {
      await file.close()
    }
    return { records, reset }
  }

  private parse(line: string, into: Record<string, unknown>[]): void {
    const trimmed = line.trim()
    if (!trimmed) return
    try {
      const value: unknown = JSON.parse(trimmed)
      if (value && typeof value === 'object' && !Array.isArray(value)) into.push(value as Record<string, unknown>)
      else this.skipped++
    } catch {
      this.skipped++
    }
  }
}
