/**
 * Runs the commands README.md shows, exactly as written, from a temporary working directory, so that a command
 * that does not work as documented (a relative path joined twice, a flag the parser refuses) fails here.
 *
 * The rule, for whoever adds a README section:
 *  - Every line of a ```bash fenced block that starts with `llamapro ` or `npx llamapro ` is a command. All of them
 *    run, in README order, in one working directory (so a later command may use what an earlier one wrote).
 *    Other lines of those blocks (`npm test`, `npm run setup`, comments) are not run, nor are other blocks
 *    (```yaml, ```ts, or the CLI synopsis block, which has no language).
 *  - A trailing `# comment` is not part of the command.
 *  - A command that cannot run here ends with `# readme-test: skip <why>`; it is then listed as skipped, not run.
 *  - The working directory holds what the README's relative paths name: `models/base` (a tiny LLaMA with a real
 *    tokenizer, 8 layers), `data/dataset_info.json` with `alpaca_demo` (sft) and `code_demo` (pt text), and a copy
 *    of the repository's `examples/`. Add fixtures to `layOut` below when a new command needs another input.
 *  - `llamapro` resolves to this checkout's CLI, as `npm install llamapro` would provide it: a project-local
 *    `node_modules/.bin/llamapro` (which `npx` finds) that is also on PATH.
 *  - SHORTEN appends test-only flags to make a slow command quick (the demo's step counts); the rest of the line
 *    runs as written.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { chmodSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
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

/** The commands of README's ```bash blocks, by the rule above. */
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

async function layOut(dir: string): Promise<void> {
  await writeTrainableModel(join(dir, 'models', 'base'), { layers: 8, seed: 9 })
  mkdirSync(join(dir, 'data'), { recursive: true })
  const alpaca = corpusB(16, 41).map((code) => {
    const [signature, body, check] = code.split('\n')
    return { instruction: 'Complete the function.', input: signature, output: `${body}\n${check}` }
  })
  writeFileSync(join(dir, 'data', 'alpaca_demo.json'), JSON.stringify(alpaca, null, 2))
  writeFileSync(join(dir, 'data', 'code_demo.jsonl'), corpusB(40, 42).map((text) => JSON.stringify({ text })).join('\n') + '\n')
  writeFileSync(
    join(dir, 'data', 'dataset_info.json'),
    JSON.stringify({ alpaca_demo: { file_name: 'alpaca_demo.json' }, code_demo: { file_name: 'code_demo.jsonl', columns: { prompt: 'text' } } }, null, 2),
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
    const env = { ...process.env, PATH: `${join(cwd, 'node_modules', '.bin')}:${process.env.PATH}`, npm_config_offline: 'true', npm_config_yes: 'false' }
    const child = spawn('/bin/sh', ['-c', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk) => (output += chunk))
    child.stderr.on('data', (chunk) => (output += chunk))
    child.on('close', (code) => resolve({ code, output }))
  })
}

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

t.test("README's commands run as written from a working directory with relative paths", async (t) => {
  const commands = readmeCommands(readFileSync(join(REPO_ROOT, 'README.md'), 'utf8'))
  t.ok(commands.some((c) => c.command === 'npx llamapro demo'), "the quick start's first command is among them")
  t.ok(commands.length >= 8, `${commands.length} commands found`)
  const dir = t.testdir()
  await layOut(dir)
  for (const { line, command, skip } of commands) {
    if (skip) {
      t.comment(`README.md:${line}: skipped (${skip}): ${command}`)
      continue
    }
    const extra = SHORTEN.find(([pattern]) => pattern.test(command))
    const run = extra ? `${command} ${extra[1]}` : command
    const { code, output } = await sh(run, dir)
    t.equal(code, 0, `README.md:${line}: ${run}`, { output: output.slice(-2000) })
  }
})
