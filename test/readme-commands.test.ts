/**
 * Runs the commands README.md and the manual in docs/ show, exactly as written, from a temporary working directory,
 * so that a command that does not work as documented (a relative path joined twice, a flag the parser refuses)
 * fails here.
 *
 * The rule, for whoever adds a section to README.md or a page to docs/:
 *  - Every line of a ```bash or ```sh fenced block that starts with `llamapro ` or `npx llamapro ` is a command.
 *    Other lines of those blocks (`npm test`, `npm run setup`, comments) are not run, nor are other blocks
 *    (```yaml, ```ts, ```text, or the CLI synopsis block, which has no language).
 *  - The pages run in a fixed order, all in ONE working directory, so a later command may use what an earlier one
 *    wrote: README.md first (its quick start makes `models/base-pro` and trains it), then the docs pages of
 *    DOCS_ORDER below (the order the manual was written in, where later pages use earlier outputs), then every other
 *    page under docs/ in path order. A new page that needs another page's outputs goes into DOCS_ORDER after it.
 *  - A trailing `# comment` is not part of the command.
 *  - A command that cannot run here ends with `# readme-test: skip <why>`; it is then listed as skipped, not run.
 *  - The working directory holds what the pages' relative paths name: `models/base` (a tiny LLaMA with a real
 *    tokenizer, 8 layers), `data/dataset_info.json` with `alpaca_demo` (sft) and `code_demo` (pt text), and a copy
 *    of the repository's `examples/`. Add fixtures to `layOut` below when a new command needs another input.
 *  - `llamapro` resolves to this checkout's CLI, as `npm install llamapro` would provide it: a project-local
 *    `node_modules/.bin/llamapro` (which `npx` finds) that is also on PATH.
 *  - SHORTEN appends test-only flags to make a slow command quick (the demo's step counts); the rest of the line
 *    runs as written. CI runs this file on 2 cores: keep each page's commands small (tiny models, few steps).
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { chmodSync, cpSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { corpusB } from '../lib/demo/corpora.js'
import { REPO_ROOT } from './helpers/python.js'
import { writeTrainableModel } from './helpers/trainable-model.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')
const SKIP_MARK = /#\s*readme-test:\s*skip\b(.*)$/
const SHORTEN: [RegExp, string][] = [[/^(npx )?llamapro demo\b/, '--steps 2 --pre-train-steps 2']]

export interface ReadmeCommand {
  line: number
  command: string
  skip?: string
}

/** The commands of a page's ```bash blocks, by the rule above. */
export function readmeCommands(markdown: string): ReadmeCommand[] {
  const commands: ReadmeCommand[] = []
  let fence: string | null = null
  markdown.split('\n').forEach((text, i) => {
    const opening = /^\s*```(\S*)/.exec(text)
    if (opening) {
      fence = fence === null ? opening[1]! : null
      return
    }
    if (fence !== 'bash' && fence !== 'sh') return
    const trimmed = text.trim()
    if (!/^(npx )?llamapro( |$)/.test(trimmed)) return
    const skip = SKIP_MARK.exec(trimmed)
    // A `#` that starts a shell comment follows whitespace; the commands themselves hold no `#`.
    const command = trimmed.replace(/\s+#.*$/, '')
    commands.push({ line: i + 1, command, ...(skip ? { skip: skip[1]!.trim() || 'no reason given' } : {}) })
  })
  return commands
}

/** Pages whose commands use what earlier pages' commands wrote, in the order they run (after README.md). */
const DOCS_ORDER = [
  'docs/install.md',
  'docs/cli/README.md', // uses models/base-pro from README's quick start; trains saves/base-pro/lr5e-5
  'docs/cli/demo.md',
  'docs/cli/train.md',
  'docs/guides/data-at-scale.md',
  'docs/guides/distributed.md',
  'docs/cli/expand.md',
  'docs/cli/verify.md',
  'docs/cli/plan.md',
  'docs/cli/merge.md',
  'docs/cli/import.md',
  'docs/cli/export.md',
  'docs/cli/chat.md',
  'docs/cli/generate.md',
  'docs/cli/eval.md',
  'docs/cli/bench.md',
  'docs/cli/sweep.md',
  'docs/guides/activation-checkpointing.md',
  'docs/guides/bundle.md',
  'docs/guides/electron.md',
  'docs/guides/smollm2.md', // imports SmolLM2 into models/smollm2 and expands it
  'docs/guides/sweep.md',
  'docs/freeze-tuning.md',
  'docs/guides/lora.md', // uses models/base-pro from README's quick start
]

function markdownFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return markdownFiles(path)
    return entry.name.endsWith('.md') ? [path] : []
  })
}

/** README.md, then DOCS_ORDER, then every other page of docs/ in path order: the order the commands run in. */
export function pagesInOrder(root: string): string[] {
  const docs = markdownFiles(join(root, 'docs'))
    .map((path) => relative(root, path))
    .sort()
  const rest = docs.filter((page) => !DOCS_ORDER.includes(page))
  return ['README.md', ...DOCS_ORDER.filter((page) => docs.includes(page)), ...rest]
}

async function layOut(dir: string): Promise<void> {
  await writeTrainableModel(join(dir, 'models', 'base'), { layers: 8, seed: 9 })
  mkdirSync(join(dir, 'data'), { recursive: true })
  const alpaca = corpusB(16, 41).map((code) => {
    const [signature, body, check] = code.split('\n')
    return { instruction: 'Complete the function.', input: signature, output: `${body}\n${check}` }
  })
  writeFileSync(join(dir, 'data', 'alpaca_demo.json'), JSON.stringify(alpaca, null, 2))
  writeFileSync(
    join(dir, 'data', 'code_demo.jsonl'),
    `${corpusB(40, 42)
      .map((text) => JSON.stringify({ text }))
      .join('\n')}\n`,
  )
  writeFileSync(
    join(dir, 'data', 'dataset_info.json'),
    JSON.stringify(
      {
        alpaca_demo: { file_name: 'alpaca_demo.json' },
        code_demo: { file_name: 'code_demo.jsonl', columns: { prompt: 'text' } },
      },
      null,
      2,
    ),
  )
  cpSync(join(REPO_ROOT, 'examples'), join(dir, 'examples'), { recursive: true })
  // What `npm install llamapro` gives a project: a bin that npx finds, here also on PATH.
  writeFileSync(join(dir, 'package.json'), '{ "name": "readme-test", "private": true }\n')
  mkdirSync(join(dir, 'node_modules', '.bin'), { recursive: true })
  const bin = join(dir, 'node_modules', '.bin', 'llamapro')
  writeFileSync(bin, `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`)
  chmodSync(bin, 0o755)
}

function sh(command: string, cwd: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const env = {
      ...process.env,
      PATH: `${join(cwd, 'node_modules', '.bin')}:${process.env.PATH}`,
      npm_config_offline: 'true',
      npm_config_yes: 'false',
    }
    const child = spawn('/bin/sh', ['-c', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk) => (output += chunk))
    child.stderr.on('data', (chunk) => (output += chunk))
    child.on('close', (code) => resolve({ code, output }))
  })
}

// README's and docs' commands train, expand and generate for a few minutes on 2 cores: more than tap's 300 s default.
t.setTimeout(900_000)

t.test('the extraction rule', async (t) => {
  const md = [
    '```bash',
    'npx llamapro demo            # a comment',
    'npm test',
    'llamapro train x.yaml --lr 1 # readme-test: skip needs a GPU',
    '```',
    '```',
    'llamapro demo [--out dir]',
    '```',
    '```yaml',
    'llamapro: not a command',
    '```',
  ].join('\n')
  t.same(readmeCommands(md), [
    { line: 2, command: 'npx llamapro demo' },
    { line: 4, command: 'llamapro train x.yaml --lr 1', skip: 'needs a GPU' },
  ])
})

t.test('the pages run in a fixed order: README, then DOCS_ORDER, then the rest of docs/', async (t) => {
  const pages = pagesInOrder(REPO_ROOT)
  t.equal(pages[0], 'README.md')
  for (const page of DOCS_ORDER) t.ok(pages.includes(page), `${page} exists (DOCS_ORDER names only real pages)`)
  const all = markdownFiles(join(REPO_ROOT, 'docs')).map((path) => relative(REPO_ROOT, path))
  t.same([...pages].sort(), ['README.md', ...all].sort(), 'every docs page is run, once')
})

t.test("README's and docs' commands run as written from a working directory with relative paths", async (t) => {
  const pages = pagesInOrder(REPO_ROOT).map((page) => ({
    page,
    commands: readmeCommands(readFileSync(join(REPO_ROOT, page), 'utf8')),
  }))
  const readme = pages[0]!.commands
  t.ok(
    readme.some((c) => c.command === 'npx llamapro demo'),
    "the quick start's first command is among README's",
  )
  t.ok(readme.filter((c) => !c.skip).length >= 5, `README: ${readme.length} commands found`)
  const total = pages.reduce((n, p) => n + p.commands.length, 0)
  t.ok(total >= 25, `${total} commands found in ${pages.length} pages`)
  const dir = t.testdir()
  await layOut(dir)
  for (const { page, commands } of pages) {
    for (const { line, command, skip } of commands) {
      if (skip) {
        t.comment(`${page}:${line}: skipped (${skip}): ${command}`)
        continue
      }
      const extra = SHORTEN.find(([pattern]) => pattern.test(command))
      const run = extra ? `${command} ${extra[1]}` : command
      const started = Date.now()
      const { code, output } = await sh(run, dir)
      t.equal(code, 0, `${page}:${line}: ${run} (${((Date.now() - started) / 1000).toFixed(1)} s)`, {
        output: output.slice(-2000),
      })
    }
  }
})
