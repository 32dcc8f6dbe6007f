/**
 * A JSON parser that rejects what JSON.parse silently accepts: duplicate keys (JSON.parse keeps the last one,
 * so a safetensors header naming a tensor twice would be read as one tensor) and numbers that lose precision.
 * Used for safetensors headers, where a wrong offset would make native code read the wrong bytes.
 */

/** A syntax error at `position`, the index of the character in the text where parsing stopped. */
export class StrictJsonError extends Error {
  constructor(
    what: string,
    readonly position: number,
  ) {
    super(`${what} at character ${position}`)
  }
}

export function parseStrictJson(text: string): unknown {
  let pos = 0

  const fail = (what: string): never => {
    throw new StrictJsonError(what, pos)
  }
  const skipSpace = () => {
    while (pos < text.length) {
      const c = text.charCodeAt(pos)
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) pos++
      else break
    }
  }

  const parseString = (): string => {
    const start = pos
    pos++ // opening quote
    let simple = true
    while (pos < text.length) {
      const c = text.charCodeAt(pos)
      if (c === 0x22) {
        pos++
        const raw = text.slice(start, pos)
        return simple ? raw.slice(1, -1) : (JSON.parse(raw) as string)
      }
      if (c === 0x5c) {
        simple = false
        pos += 2
        continue
      }
      if (c < 0x20) fail('control character in string')
      pos++
    }
    return fail('unterminated string')
  }

  const parseNumber = (): number => {
    const match = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(pos, pos + 64))
    if (!match) fail('invalid number')
    const literal = match![0]
    pos += literal.length
    const value = Number(literal)
    if (!match![2] && !match![3] && !Number.isSafeInteger(value))
      fail(`integer ${literal} is too large to represent exactly`)
    return value
  }

  const parseValue = (depth: number): unknown => {
    if (depth > 64) fail('nesting too deep')
    skipSpace()
    const c = text[pos]
    if (c === '{') {
      pos++
      const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>
      const seen = new Set<string>()
      skipSpace()
      if (text[pos] === '}') {
        pos++
        return out
      }
      for (;;) {
        skipSpace()
        if (text[pos] !== '"') fail('expected a string key')
        const key = parseString()
        if (seen.has(key)) fail(`duplicate key "${key}"`)
        seen.add(key)
        skipSpace()
        if (text[pos] !== ':') fail('expected ":"')
        pos++
        out[key] = parseValue(depth + 1)
        skipSpace()
        if (text[pos] === ',') {
          pos++
          continue
        }
        if (text[pos] === '}') {
          pos++
          return out
        }
        fail('expected "," or "}"')
      }
    }
    if (c === '[') {
      pos++
      const out: unknown[] = []
      skipSpace()
      if (text[pos] === ']') {
        pos++
        return out
      }
      for (;;) {
        out.push(parseValue(depth + 1))
        skipSpace()
        if (text[pos] === ',') {
          pos++
          continue
        }
        if (text[pos] === ']') {
          pos++
          return out
        }
        fail('expected "," or "]"')
      }
    }
    if (c === '"') return parseString()
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return parseNumber()
    for (const [word, value] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (text.startsWith(word, pos)) {
        pos += word.length
        return value
      }
    }
    return fail(c === undefined ? 'unexpected end of text' : `unexpected character ${JSON.stringify(c)}`)
  }

  const value = parseValue(0)
  skipSpace()
  if (pos !== text.length) fail('unexpected text after the JSON value')
  return value
}
