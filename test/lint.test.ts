// The project's lint (npm run lint): the line-length rule's literal-aware counting, and that the tree passes it.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
// @ts-expect-error: a plain .mjs script without types
import { LIMIT, countedText, longLines } from '../scripts/check-lines.mjs'
import { REPO_ROOT } from './helpers/python.js'

t.test('what counts toward 120 columns: code and comments, not the inside of literals', async (t) => {
  const long = 'x'.repeat(200)
  t.equal(countedText(`const a = '${long}'`), "const a = ''", 'a string literal counts as its quotes')
  t.equal(countedText(`throw new Error(\`bad \${value}: ${long}\`)`), 'throw new Error(``)', 'a template literal')
  t.equal(countedText(`t.match(s, /${long}/)`), 't.match(s, //)', 'a regex literal')
  t.equal(
    countedText(`const q = a / b // ${long}`),
    `const q = a / b // ${long}`,
    'a division is code; a comment counts',
  )
  const comment = { template: 0, comment: false }
  countedText('/**', comment)
  const line = ` * it's a comment, a block comment's line: ${long}`
  t.equal(countedText(line, comment), line, 'apostrophes in a block comment do not open a string')
  const state = { template: 0, comment: false }
  countedText('const help = `first line', state)
  t.equal(countedText(`${long} \${x} end\` + y`, state), '`` + y', 'a template literal continued over lines')
  t.same(longLines('f.ts', `ok\n${'y'.repeat(LIMIT + 1)}\n'${long}'`), ['f.ts:2: 121 characters'])
})

t.test('the tree passes the line-length rule and Biome', async (t) => {
  t.doesNotThrow(() =>
    execFileSync(process.execPath, [join(REPO_ROOT, 'scripts', 'check-lines.mjs')], {
      cwd: REPO_ROOT,
      stdio: 'pipe',
    }),
  )
  const biome = join(REPO_ROOT, 'node_modules', '.bin', 'biome')
  t.doesNotThrow(
    () => execFileSync(biome, ['ci', '--colors=off', '.'], { cwd: REPO_ROOT, stdio: 'pipe' }),
    'biome ci passes',
  )
})
