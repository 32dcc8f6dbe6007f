/**
 * docs/cli/<command>.md holds `llamapro <command> --help` verbatim (the fenced block after the line
 * `<!-- llamapro <command> --help -->`), so the command reference is the CLI's own text and cannot drift. After
 * changing a help text: `npm run build:ts && node scripts/docs-help.mjs --write`.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { COMMANDS } from '../lib/cli/commands.js'
// @ts-expect-error: a plain .mjs script without type declarations
import { commandHelps, helpMarker, pageHelp, syncHelpPages } from '../scripts/docs-help.mjs'
import { REPO_ROOT } from './helpers/python.js'

interface Help {
  name: string
  help: string
}

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')
const CLI_DOCS = join(REPO_ROOT, 'docs', 'cli')

/** What `llamapro <command> --help` prints, for every command, from the built CLI. */
function cliHelps(): Help[] {
  return COMMANDS.map(({ name }) => {
    const run = spawnSync(process.execPath, [CLI, name, '--help'], { encoding: 'utf8' })
    if (run.status !== 0) throw new Error(`llamapro ${name} --help exited ${run.status}: ${run.stderr}`)
    return { name, help: run.stdout }
  })
}

t.test('the help block is the fenced text after the marker', async (t) => {
  const page = ['# x', '', helpMarker('demo'), '```text', 'line 1', '', 'line 3', '```', '', 'after'].join('\n')
  t.equal(pageHelp(page, 'demo'), 'line 1\n\nline 3')
  t.equal(pageHelp(page, 'train'), null, 'no marker, no block')
  t.equal(pageHelp([helpMarker('info'), '```text', '```'].join('\n'), 'info'), '', 'an empty block is empty')
})

t.test('each docs/cli page holds its command --help text verbatim', async (t) => {
  const helps = cliHelps()
  t.ok(helps.length >= 15, `${helps.length} commands`)
  for (const { name, help } of helps) {
    const shown = pageHelp(readFileSync(join(CLI_DOCS, `${name}.md`), 'utf8'), name)
    t.equal(
      shown,
      help.replace(/\s+$/, ''),
      `docs/cli/${name}.md shows llamapro ${name} --help (node scripts/docs-help.mjs --write)`,
    )
  }
  t.same(syncHelpPages(CLI_DOCS, helps), [], 'the script finds nothing to fix')
  const fromScript: Help[] = await commandHelps()
  t.same(
    fromScript.map((h) => [h.name, h.help.replace(/\s+$/, '')]),
    helps.map((h) => [h.name, h.help.replace(/\s+$/, '')]),
    "the script's help texts are the CLI's",
  )
})

t.test('the script names stale, unmarked and missing pages, and rewrites stale blocks in place', async (t) => {
  const dir = t.testdir()
  cpSync(CLI_DOCS, dir, { recursive: true })
  const helps = cliHelps()
  const demo = join(dir, 'demo.md')
  const original = readFileSync(demo, 'utf8')
  writeFileSync(demo, original.replace('--steps N', '--stepz N'))
  writeFileSync(join(dir, 'info.md'), readFileSync(join(dir, 'info.md'), 'utf8').replace(helpMarker('info'), ''))
  rmSync(join(dir, 'verify.md'))
  const found: string[] = syncHelpPages(dir, helps)
  t.equal(found.length, 3, found.join('\n'))
  t.match(found.join('\n'), /demo\.md: help block differs from llamapro demo --help/)
  t.match(found.join('\n'), /info\.md: no line <!-- llamapro info --help -->/)
  t.match(found.join('\n'), /verify\.md: missing/)
  const left: string[] = syncHelpPages(dir, helps, { write: true })
  t.equal(left.length, 2, 'writing fixes the stale block, not a missing marker or page')
  t.equal(readFileSync(demo, 'utf8'), original, 'the rewritten page is the original, byte for byte')
})
