import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { runDemo } from '../lib/demo/demo.js'
import { corpusA, corpusB } from '../lib/demo/corpora.js'
import { REPO_ROOT } from './helpers/python.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')

/**
 * The report's rule, written out here rather than taken from lib/sweep/statistics.ts: over two seeds the mean is
 * (x + y) / 2 and the sample standard deviation (n − 1) is |x − y| / √2; X is stated lower or higher than Y only
 * when |mean X − mean Y| exceeds std X + std Y.
 */
const twoSeeds = ([x, y]: number[]) => ({ mean: (x! + y!) / 2, std: Math.abs(x! - y!) / Math.SQRT2 })
const verdict = (x: { mean: number; std: number }, y: { mean: number; std: number }) =>
  Math.abs(x.mean - y.mean) > x.std + y.std ? (x.mean < y.mean ? 'less' : 'more') : 'noise'
const shown = (s: { mean: number; std: number }) =>
  `${s.mean >= 0 ? '+' : ''}${s.mean.toFixed(3)} ± ${s.std.toFixed(3)}`
const near = (a: number, b: number) => Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b))

t.test('the corpora are deterministic and different in kind', async (t) => {
  t.same(corpusA(3, 5), corpusA(3, 5))
  t.notSame(corpusA(3, 5), corpusA(3, 6))
  t.match(corpusA(1)[0], /^The \w+ \w+ /)
  t.match(corpusB(1)[0], /^def f\(\w+, \w+\):\n {4}return \w+ [+*-] \w+\nassert f\(\d+, \d+\) == -?\d+$/)
})

t.test('the demo runs end to end: base, expansion, LLaMA-Pro and full fine-tune, numbers and plots', async (t) => {
  const out = join(t.testdir(), 'demo')
  const lines: string[] = []
  const result = await runDemo({ outDir: out, steps: 40, seeds: 2, preTrainSteps: 120, log: (l) => lines.push(l) })
  t.match(lines.join('\n'), /verify: identity blocks, logits identical/)
  for (const loss of [result.base, result.llamaPro, result.fullFineTune])
    t.ok(Number.isFinite(loss.a) && Number.isFinite(loss.b))
  t.ok(
    result.llamaPro.b < result.base.b,
    `LLaMA-Pro learns B: ${result.base.b.toFixed(3)} -> ${result.llamaPro.b.toFixed(3)}`,
  )
  t.ok(
    result.fullFineTune.b < result.base.b,
    `the full fine-tune learns B: ${result.base.b.toFixed(3)} -> ${result.fullFineTune.b.toFixed(3)}`,
  )
  t.ok(result.trainableParams.llamaPro < result.trainableParams.fullFineTune)
  // Two seeds of each fine-tune; the means and the sentences are those runs' numbers under the sweep's rule.
  t.same(result.seeds, [1, 2])
  t.equal(result.runs.llamaPro.length, 2)
  t.notSame(result.runs.llamaPro[0], result.runs.llamaPro[1], 'the seeds give different data orders')
  t.equal(result.llamaPro.a, (result.runs.llamaPro[0]!.a + result.runs.llamaPro[1]!.a) / 2)
  const rise = (runs: { a: number }[]) => twoSeeds(runs.map((r) => r.a - result.base.a))
  const drop = (runs: { b: number }[]) => twoSeeds(runs.map((r) => result.base.b - r.b))
  const { runs } = result
  const figures = {
    forgetting: {
      ...{ pro: rise(runs.llamaPro), full: rise(runs.fullFineTune), got: result.forgot, what: 'loss rise on A' },
      ...{ lower: 'forgets less than', higher: 'forgets more than' },
    },
    learning: {
      ...{ pro: drop(runs.llamaPro), full: drop(runs.fullFineTune), got: result.learned, what: 'loss drop on B' },
      ...{ lower: 'learns less than', higher: 'learns more than' },
    },
  }
  for (const [name, f] of Object.entries(figures)) {
    const sides = [
      ['llamaPro', f.got.llamaPro, f.pro],
      ['fullFineTune', f.got.fullFineTune, f.full],
    ] as const
    for (const [side, got, want] of sides) {
      const same = near(got.mean, want.mean) && near(got.std, want.std) && got.n === 2
      t.ok(same, `${name}, ${side}: ${got.mean} ± ${got.std} = ${want.mean} ± ${want.std}`)
    }
    const expected = verdict(f.pro, f.full)
    const statement = result.statements[name as keyof typeof result.statements]
    t.equal(statement.verdict, expected, `${name}: ${expected}`)
    const sentence =
      expected === 'noise'
        ? `LLaMA-Pro vs the full fine-tune: ${f.what} within noise`
        : `LLaMA-Pro ${expected === 'less' ? f.lower : f.higher} the full fine-tune`
    t.ok(statement.text.startsWith(`${sentence} (${f.what}: ${shown(f.pro)} vs ${shown(f.full)})`), statement.text)
  }
  for (const file of [
    'demo.png',
    'demo.svg',
    'demo-training.png',
    'demo.json',
    'llama-pro/seed-1/model.safetensors',
    'llama-pro/seed-2/model.safetensors',
    'full-fine-tune/seed-2/model.safetensors',
  ]) {
    t.ok(existsSync(join(out, file)), file)
  }
  t.equal(JSON.parse(readFileSync(join(out, 'demo.json'), 'utf8')).llamaPro.b, result.llamaPro.b)
  // The spread the statements are judged by is in the pictures: a whisker on every seeded bar whose seeds differ,
  // and a band around each mean training curve (test/chart.test.ts checks where they are drawn).
  const arms = [result.runs.llamaPro, result.runs.fullFineTune]
  const spreads = (['a', 'b'] as const).flatMap((key) => arms.map((runs) => twoSeeds(runs.map((r) => r[key])).std))
  const whiskers = readFileSync(join(out, 'demo.svg'), 'utf8').match(/class="whisker"/g) ?? []
  const stds = spreads.map((s) => s.toFixed(4)).join(', ')
  t.equal(whiskers.length, spreads.filter((s) => s > 0).length, `demo.svg: whiskers for stds ${stds}`)
  const bands = readFileSync(join(out, 'demo-training.svg'), 'utf8').match(/class="band"/g) ?? []
  t.equal(bands.length, 2, 'demo-training.svg: two bands')
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
