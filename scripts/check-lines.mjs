#!/usr/bin/env node
// Lines of lib/, test/, bench/, scripts/ and examples/ are at most 120 characters (Biome formats code to 120 columns),
// and no lib/ file is over 600 lines (a file holds one idea; native/'s limit, 700, is scripts/lint-native.sh's).
// What a formatter cannot break is not counted, as eslint's max-len with ignoreStrings, ignoreTemplateLiterals and
// ignoreRegExpLiterals: the text inside a string, template or regular-expression literal (an error message, a help
// text, an expected output, inline Python). Code and comments count in full.
//   node scripts/check-lines.mjs [files...]   (default: every tracked .ts/.mjs/.js file of those folders)
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

export const LIMIT = 120
export const LIB_FILE_LINES = 600

/** The line with the inside of each literal it opens or continues removed; `state` carries an open template. */
export function countedText(line, state = { template: 0, comment: false }) {
  let out = ''
  let i = 0
  const n = line.length
  // A block comment counts in full, to its end.
  const skipComment = () => {
    const end = line.indexOf('*/', i)
    out += end < 0 ? line.slice(i) : line.slice(i, end + 2)
    i = end < 0 ? n : end + 2
    state.comment = end < 0
  }
  if (state.comment) skipComment()
  const skipLiteral = (quote) => {
    // i is just past the opening quote; returns with i just past the closing one (or at the end of the line)
    let depth = 0
    while (i < n) {
      const c = line[i]
      if (c === '\\') i += 2
      else if (quote === '`' && c === '$' && line[i + 1] === '{') depth++, (i += 2)
      else if (quote === '`' && depth > 0 && c === '}') depth--, i++
      else if (c === quote && depth === 0) return (i++, true)
      else i++
    }
    return false
  }
  if (state.template > 0) {
    if (!skipLiteral('`')) return out
    state.template = 0
    out += '``'
  }
  while (i < n) {
    const c = line[i]
    if (c === '/' && line[i + 1] === '/') return out + line.slice(i)
    if (c === '/' && line[i + 1] === '*') {
      skipComment()
      continue
    }
    if (c === "'" || c === '"' || c === '`') {
      i++
      const closed = skipLiteral(c)
      out += c + c
      if (!closed && c === '`') state.template = 1
      continue
    }
    // A regular expression literal: a slash where an operand is expected.
    if (c === '/' && line[i + 1] !== '*' && /(^|[=(,:!&|?{};[]|return|typeof)\s*$/.test(line.slice(0, i))) {
      i++
      let inClass = false
      while (i < n && (line[i] !== '/' || inClass)) {
        if (line[i] === '\\') i++
        else if (line[i] === '[') inClass = true
        else if (line[i] === ']') inClass = false
        i++
      }
      i++
      out += '//'
      continue
    }
    out += c
    i++
  }
  return out
}

export function longLines(path, text) {
  const state = { template: 0, comment: false }
  const found = []
  text.split('\n').forEach((line, k) => {
    const counted = countedText(line, state)
    if (line.length > LIMIT && counted.length > LIMIT) found.push(`${path}:${k + 1}: ${counted.length} characters`)
  })
  return found
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const files =
    process.argv.length > 2
      ? process.argv.slice(2)
      : execFileSync('git', ['ls-files', 'lib', 'test', 'bench', 'scripts', 'examples'], { encoding: 'utf8' })
          .split('\n')
          .filter((f) => /\.(ts|mjs|js)$/.test(f))
  const found = files.flatMap((f) => longLines(f, readFileSync(f, 'utf8')))
  for (const line of found) console.error(line)
  if (found.length > 0) {
    console.error(
      `${found.length} line(s) over ${LIMIT} characters outside string, template and regex literals: wrap them`,
    )
    process.exit(1)
  }
}
