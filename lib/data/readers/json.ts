/**
 * JSON Lines and JSON arrays, streamed: the file is read in chunks and each record is parsed on its own, so memory
 * holds one record, never the file (a V8 string is capped near 512 MB; corpora are larger). Which of the two a file
 * is follows from its first non-blank character, "[" for an array, as Hugging Face `datasets` accepts either in a
 * .json or .jsonl file. Every record carries the line it starts on, and a syntax error names the file and line.
 */
import { createReadStream } from 'node:fs'
import { StrictJsonError, parseStrictJson } from '../../checkpoint/strict-json.js'
import { CHUNK_BYTES, DatasetError, type RawRecord, type ReadOptions } from './record.js'

/** Node's largest string, in UTF-16 units; a UTF-8 record longer than this in bytes may not fit. */
const MAX_STRING = (1 << 29) - 24

const isSpace = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09

function decode(file: string, line: number, parts: Buffer[]): string {
  const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
  if (bytes.length > MAX_STRING) {
    throw new DatasetError(
      `${file}:${line}: a record of ${bytes.length} bytes is longer than the longest string JavaScript can hold ` +
        `(${MAX_STRING} characters)`,
    )
  }
  return bytes.toString('utf8')
}

/** JSON.parse, and on failure the line of the error (JSON.parse does not always say where; the strict parser does). */
function parseRecord(file: string, startLine: number, text: string, what: string): unknown {
  try {
    return JSON.parse(text)
  } catch (error) {
    let line = startLine
    let detail = (error as Error).message
    try {
      parseStrictJson(text)
    } catch (strict) {
      if (strict instanceof StrictJsonError) line += text.slice(0, strict.position).split('\n').length - 1
      detail = (strict as Error).message
    }
    throw new DatasetError(`${file}:${line}: invalid JSON${what} (${detail})`)
  }
}

/** Splits JSON Lines at "\n"; blank lines are skipped, as pyarrow's JSON reader (under `datasets`) skips them. */
class JsonLines {
  private pending: Buffer[] = []
  constructor(
    private readonly file: string,
    private line: number, // lines before the first one
  ) {}

  push(chunk: Buffer, out: RawRecord[]): void {
    let pos = 0
    for (;;) {
      const nl = chunk.indexOf(0x0a, pos)
      if (nl < 0) {
        if (pos < chunk.length) this.pending.push(chunk.subarray(pos))
        return
      }
      this.pending.push(chunk.subarray(pos, nl))
      this.flushLine(out)
      pos = nl + 1
    }
  }

  end(out: RawRecord[]): void {
    if (this.pending.length > 0) this.flushLine(out)
  }

  private flushLine(out: RawRecord[]): void {
    const parts = this.pending
    this.pending = []
    this.line++
    if (parts.every((p) => p.every(isSpace))) return
    const text = decode(this.file, this.line, parts)
    out.push({ record: parseRecord(this.file, this.line, text, ' on this line'), where: `${this.file}:${this.line}` })
  }
}

/**
 * A JSON array scanned byte by byte for the bounds of its elements (strings, escapes and nesting tracked), each
 * element parsed alone. Only the top level is scanned here; JSON.parse checks each element.
 */
class JsonArray {
  /** 'value?' after "[", 'value' after ",", 'comma' after an element, 'done' after "]". */
  private expect: 'value?' | 'value' | 'comma' | 'done' = 'value?'
  private inElement = false
  private scalar = false
  private depth = 0
  private inString = false
  private escape = false
  private parts: Buffer[] = []
  private startLine = 0
  private lastStartLine = 0

  constructor(
    private readonly file: string,
    private line: number, // the line of the opening "["
  ) {}

  /** `chunk` starts after the opening "[" for the first call. */
  push(chunk: Buffer, out: RawRecord[]): void {
    let start = 0 // where the current element's bytes begin in this chunk
    const n = chunk.length
    let i = 0
    while (i < n) {
      if (this.inElement) {
        if (this.inString) {
          if (this.escape) {
            this.escape = false
            i++
            continue
          }
          // Fast path: jump to the next quote and check whether an odd run of backslashes escapes it.
          let searchFrom = i
          for (;;) {
            const q = chunk.indexOf(0x22, searchFrom)
            if (q < 0) {
              let k = n - 1
              while (k >= searchFrom && chunk[k] === 0x5c) k--
              this.escape = (n - 1 - k) % 2 === 1
              i = n
              break
            }
            let k = q - 1
            while (k >= searchFrom && chunk[k] === 0x5c) k--
            if ((q - 1 - k) % 2 === 1) {
              searchFrom = q + 1
              continue
            }
            this.inString = false
            i = q + 1
            break
          }
          continue
        }
        const b = chunk[i]!
        if (b === 0x22) this.inString = true
        else if (b === 0x0a) this.line++
        else if (b === 0x7b || b === 0x5b) this.depth++
        else if (b === 0x7d || b === 0x5d) {
          if (this.depth === 0) {
            // "]" ends a scalar element and the array
            this.finishElement(chunk.subarray(start, i), out)
            continue
          }
          this.depth--
          if (this.depth === 0 && !this.scalar) {
            this.finishElement(chunk.subarray(start, i + 1), out)
            i++
            continue
          }
        } else if (b === 0x2c && this.depth === 0 && this.scalar) {
          this.finishElement(chunk.subarray(start, i), out)
          continue
        }
        i++
        continue
      }
      const b = chunk[i]!
      if (b === 0x0a) this.line++
      if (isSpace(b)) {
        i++
        continue
      }
      const c = String.fromCharCode(b)
      if (this.expect === 'done')
        throw new DatasetError(`${this.file}:${this.line}: invalid JSON: "${c}" after the array's closing "]"`)
      if (this.expect === 'comma') {
        if (b === 0x2c) this.expect = 'value'
        else if (b === 0x5d) this.expect = 'done'
        else {
          throw new DatasetError(
            `${this.file}:${this.line}: invalid JSON: expected "," or "]" after the record that starts on line ` +
              `${this.lastStartLine}, found "${c}"`,
          )
        }
        i++
        continue
      }
      if (b === 0x5d) {
        if (this.expect === 'value')
          throw new DatasetError(
            `${this.file}:${this.line}: invalid JSON: a "," before the array's closing "]" (no record follows it)`,
          )
        this.expect = 'done'
        i++
        continue
      }
      if (b === 0x2c) throw new DatasetError(`${this.file}:${this.line}: invalid JSON: "," where a record should be`)
      this.inElement = true
      this.startLine = this.line
      this.depth = 0
      this.scalar = b !== 0x7b && b !== 0x5b
      start = i
      if (!this.scalar) this.depth = 1
      else if (b === 0x22) this.inString = true
      i++
    }
    if (this.inElement) this.parts.push(chunk.subarray(start))
  }

  end(): void {
    if (this.inElement && this.scalar && !this.inString)
      throw new DatasetError(`${this.file}:${this.line}: invalid JSON: the array is not closed with "]"`)
    if (this.inElement)
      throw new DatasetError(
        `${this.file}:${this.line}: invalid JSON: the file ends inside the record that starts on line ${this.startLine}`,
      )
    if (this.expect !== 'done')
      throw new DatasetError(`${this.file}:${this.line}: invalid JSON: the file ends before the array's closing "]"`)
  }

  private finishElement(tail: Buffer, out: RawRecord[]): void {
    this.parts.push(tail)
    const text = decode(this.file, this.startLine, this.parts)
    this.parts = []
    this.inElement = false
    this.expect = 'comma'
    this.lastStartLine = this.startLine
    out.push({ record: parseRecord(this.file, this.startLine, text, ''), where: `${this.file}:${this.startLine}` })
  }
}

export async function* readJson(file: string, options: ReadOptions = {}): AsyncGenerator<RawRecord> {
  const stream = createReadStream(file, { highWaterMark: CHUNK_BYTES, signal: options.signal })
  let parser: JsonLines | JsonArray | undefined
  let bytes = 0
  let leadingLines = 0
  let first = true
  const out: RawRecord[] = []
  try {
    for await (const data of stream) {
      let chunk = data as Buffer
      bytes += chunk.length
      if (first && chunk.length >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf)
        chunk = chunk.subarray(3)
      first = false
      if (!parser) {
        let i = 0
        while (i < chunk.length && isSpace(chunk[i]!)) {
          if (chunk[i] === 0x0a) leadingLines++
          i++
        }
        if (i === chunk.length) continue // only blanks so far
        if (chunk[i] === 0x5b) {
          parser = new JsonArray(file, leadingLines + 1)
          chunk = chunk.subarray(i + 1)
        } else {
          parser = new JsonLines(file, leadingLines)
          chunk = chunk.subarray(i)
        }
      }
      parser.push(chunk, out)
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
  if (parser instanceof JsonLines) parser.end(out)
  else if (parser) parser.end()
  for (const record of out) yield record
}
