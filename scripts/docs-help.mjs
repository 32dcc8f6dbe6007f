#!/usr/bin/env node
/**
 * docs/cli/<command>.md holds each command's `--help` text verbatim, so the reference is generated from the same text
 * the CLI prints and cannot drift: the block after the marker line `<!-- llamapro <command> --help -->` is that
 * text. `node scripts/docs-help.mjs` lists the pages whose block differs (exit 1); `--write` rewrites them.
 * test/docs-help.test.ts runs the check. Needs dist/ (npm run build:ts).
 */
import { existsSync, readFileSync, writeFileSync, renameSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

/** The help marker of a command, and the fenced block that follows it. */
export function helpMarker(name) {
  return `<!-- llamapro ${name} --help -->`
}

export function helpBlock(help) {
  return `\`\`\`text\n${help.replace(/\s+$/, '')}\n\`\`\``
}

/** The help block of a page after its marker, or null when the page has no marker. */
export function pageHelp(markdown, name) {
  const at = markdown.indexOf(helpMarker(name))
  if (at < 0) return null
  const match = /^\n```text\n(?:([\s\S]*?)\n)?```$/m.exec(markdown.slice(at + helpMarker(name).length))
  return match ? (match[1] ?? '') : null
}

function replaceHelp(markdown, name, help) {
  const at = markdown.indexOf(helpMarker(name)) + helpMarker(name).length
  const rest = markdown.slice(at)
  const match = /^\n```text\n(?:[\s\S]*?\n)?```/.exec(rest)
  const tail = match ? rest.slice(match[0].length) : rest
  return `${markdown.slice(0, at)}\n${helpBlock(help)}${tail}`
}

/** Every command with its help text (as `llamapro <command> --help` prints it). */
export async function commandHelps() {
  const { COMMANDS } = await import(pathToFileURL(join(ROOT, 'dist', 'cli', 'commands.js')).href)
  const out = []
  for (const command of COMMANDS) out.push({ name: command.name, help: (await command.load()).help })
  return out
}

/**
 * Compares each command's page in `cliDir` (`<name>.md`) with its help text; with `write`, rewrites the blocks that
 * differ. Returns what is wrong (after writing: what writing cannot fix), one line a page.
 */
export function syncHelpPages(cliDir, helps, { write = false } = {}) {
  const problems = []
  for (const { name, help } of helps) {
    const page = join(cliDir, `${name}.md`)
    if (!existsSync(page)) {
      problems.push(`${page}: missing (every command has a page holding its --help text)`)
      continue
    }
    const markdown = readFileSync(page, 'utf8')
    if (!markdown.includes(helpMarker(name))) {
      problems.push(`${page}: no line ${helpMarker(name)} (the --help text goes in a fenced block after it)`)
      continue
    }
    if (pageHelp(markdown, name) === help.replace(/\s+$/, '')) continue
    if (!write) {
      problems.push(`${page}: help block differs from llamapro ${name} --help (node scripts/docs-help.mjs --write)`)
      continue
    }
    writeFileSync(`${page}.tmp`, replaceHelp(markdown, name, help))
    renameSync(`${page}.tmp`, page)
    console.log(`${page}: help block rewritten`)
  }
  return problems
}

async function main() {
  const problems = syncHelpPages(join(ROOT, 'docs', 'cli'), await commandHelps(), {
    write: process.argv.includes('--write'),
  })
  for (const problem of problems) console.error(problem)
  return problems.length === 0 ? 0 : 1
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) process.exitCode = await main()
