import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { runDemo } from '../lib/demo/demo.js'
import { corpusA, corpusB } from '../lib/demo/corpora.js'
import { REPO_ROOT } from './helpers/python.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')

t.test('the corpora are deterministic and different in kind', async (t) => {
  t.same(corpusA(3, 5), corpusA(3, 5))
  t.notSame(corpusA(3, 5), corpusA(3, 6))
  t.match(corpusA(1)[0], /^The \w+ \w+ /)
  t.match(corpusB(1)[0], /^def f\(\w+, \w+\):\n {4}return \w+ [+*-] \w+\nassert f\(\d+, \d+\) == -?\d+$/)
})

t.test('the demo runs end to end: base, expansion, LLaMA-Pro and full fine-tune, numbers and plots', async (t) => {
  const out = join(t.testdir(), 'demo')
  const lines: string[] = []
  const result = await runDemo({ outDir: out, steps: 40, preTrainSteps: 120, log: (l) => lines.push(l) })
  t.match(lines.join('\n'), /verify: identity blocks, logits identical/)
  for (const loss of [result.base, result.llamaPro, result.fullFineTune]) t.ok(Number.isFinite(loss.a) && Number.isFinite(loss.b))
  t.ok(result.llamaPro.b < result.base.b, `LLaMA-Pro learns B: ${result.base.b.toFixed(3)} -> ${result.llamaPro.b.toFixed(3)}`)
  t.ok(result.fullFineTune.b < result.base.b, `the full fine-tune learns B: ${result.base.b.toFixed(3)} -> ${result.fullFineTune.b.toFixed(3)}`)
  t.ok(result.trainableParams.llamaPro < result.trainableParams.fullFineTune)
  for (const file of ['demo.png', 'demo.svg', 'demo-training.png', 'demo.json', 'llama-pro/model.safetensors', 'full-fine-tune/model.safetensors']) {
    t.ok(existsSync(join(out, file)), file)
  }
  t.equal(JSON.parse(readFileSync(join(out, 'demo.json'), 'utf8')).llamaPro.b, result.llamaPro.b)
  const again = await promisify(execFile)(process.execPath, [CLI, 'demo', '--out', out]).catch((e) => e)
  t.equal(again.code, 1)
  t.match(again.stderr, /already exists and is not empty; pass --force/)
})

t.test('Ctrl-C stops the CLI cleanly: exit status 130, a message, no half-written output', async (t) => {
  const out = join(t.testdir(), 'demo')
  const child = spawn(process.execPath, [CLI, 'demo', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => (stdout += chunk))
  child.stderr.on('data', (chunk) => (stderr += chunk))
  // Interrupt once training has started (the demo prints its first stage before training).
  await new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      if (/1\. /.test(stdout) || stdout.includes('pre-train')) {
        clearInterval(poll)
        resolve()
      }
    }, 50)
  })
  child.kill('SIGINT')
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  t.equal(code, 130, 'the conventional status for SIGINT')
  t.match(stderr, /SIGINT: stopping cleanly/)
  t.match(stderr, /llamapro demo: interrupted by SIGINT; nothing was left half-written/)
  t.notOk(stderr.includes('unexpected error'), stderr)
  t.notOk(existsSync(join(out, 'demo.json')), 'no results from a run that did not finish')
})
