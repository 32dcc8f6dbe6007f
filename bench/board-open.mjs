// How fast the board opens a long run: a 100,000-step trainer_log.jsonl (one line per step, 6 trainable layers'
// gradient norms, two eval datasets every 500 steps), as a run with logging_steps: 1 leaves it.
//   npm run build:ts && node bench/board-open.mjs [--steps 100000] [--repeats 3] [--no-browser]
// Measures, in this process: startBoard → /api/run answered (the whole log parsed, series downsampled), the same
// request again (nothing new to read), and one appended line read; the bytes sent; and, in headless Chromium
// (test/helpers/cdp-page.mjs), the time from navigation start until the page has drawn every chart.
// Writes bench/results/board-open.md.
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir, totalmem, release } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { startBoard } from '../dist/board/server.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '100000' },
    repeats: { type: 'string', default: '3' },
    'no-browser': { type: 'boolean', default: false },
  },
})
const steps = Number(values.steps)
const repeats = Number(values.repeats)
const layers = [5, 11, 17, 23, 29, 35]

const hms = (s) =>
  `${Math.floor(s / 3600)}:${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}:${String(Math.floor(s % 60)).padStart(2, '0')}`
function record(step) {
  const seconds = step * 0.5
  return {
    current_steps: step,
    total_steps: steps,
    loss: Number((2.5 * Math.exp(-step / (steps / 4)) + 1.2 + 0.08 * Math.sin(step * 1.3)).toFixed(6)),
    lr: Number(((1e-4 * (1 + Math.cos((Math.PI * step) / steps))) / 2).toExponential(6)),
    epoch: Number((step / 2000).toFixed(4)),
    percentage: Number(((100 * step) / steps).toFixed(2)),
    elapsed_time: hms(seconds),
    remaining_time: hms((steps - step) * 0.5),
    grad_norm: Number((0.8 + 0.3 * Math.abs(Math.sin(step / 3))).toFixed(6)),
    tokens_per_second: Number((1900 + 120 * Math.sin(step / 11)).toFixed(1)),
    elapsed_seconds: seconds,
    layer_grad_norms: Object.fromEntries(
      layers.map((l, i) => [String(l), Number((0.2 + 0.05 * i + 0.03 * Math.sin(step / (i + 2))).toFixed(6))]),
    ),
  }
}

const dir = mkdtempSync(join(tmpdir(), 'llamapro-board-bench-'))
const run = join(dir, 'run')
execFileSync('mkdir', ['-p', run])
const lines = []
for (let step = 1; step <= steps; step++) {
  lines.push(JSON.stringify(record(step)))
  if (step % 500 === 0)
    lines.push(
      JSON.stringify({
        current_steps: step,
        total_steps: steps,
        eval_code_loss: 2 + Math.exp(-step / steps),
        eval_keep_loss: 1.5 + step / steps / 10,
        epoch: step / 2000,
        elapsed_seconds: step * 0.5,
      }),
    )
}
const log = `${lines.join('\n')}\n`
writeFileSync(join(run, 'trainer_log.jsonl'), log)
writeFileSync(
  join(run, 'llamapro_run.json'),
  JSON.stringify({
    hostname: 'elsewhere',
    pid: 1,
    expanded_layer_ids: layers,
    trainable_layer_ids: layers,
    total_steps: steps,
  }),
)
writeFileSync(join(run, 'training_args.yaml'), `max_steps: ${steps}\nlogging_steps: 1\n`)

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const rows = { open: [], again: [], append: [], page: [] }
let bytes = 0
let series = 0
let maxPoints = 0
for (let r = 0; r < repeats; r++) {
  const started = performance.now()
  const board = await startBoard({ dirs: [dir] })
  const body = await (await fetch(`${board.url}api/run?id=run`)).text()
  rows.open.push(performance.now() - started)
  bytes = body.length
  const detail = JSON.parse(body)
  series = Object.keys(detail.series).length
  maxPoints = Math.max(...Object.values(detail.series).map((s) => s.length))
  if (detail.lines !== lines.length + r || detail.last.step !== steps)
    throw new Error(`the board read ${detail.lines} lines, last step ${detail.last.step}`)
  let t0 = performance.now()
  await (await fetch(`${board.url}api/run?id=run`)).text()
  rows.again.push(performance.now() - t0)
  appendFileSync(join(run, 'trainer_log.jsonl'), `${JSON.stringify(record(steps))}\n`)
  t0 = performance.now()
  const after = await (await fetch(`${board.url}api/run?id=run`)).json()
  rows.append.push(performance.now() - t0)
  if (after.lines !== lines.length + 1 + r)
    throw new Error(`after one appended line the board has ${after.lines} lines`)
  if (!values['no-browser']) {
    // Asynchronous: the board answering the browser runs in this process.
    const { stdout: out } = await promisify(execFile)(
      process.execPath,
      [
        '--no-warnings',
        '--experimental-websocket',
        join(ROOT, 'test/helpers/cdp-page.mjs'),
        JSON.stringify({
          url: `${board.url}?run=run`,
          waitFor: "document.querySelectorAll('#run-view figure.chart svg').length >= 6",
          snapshot: 'performance.now()',
          timeoutMs: 60_000,
        }),
      ],
      { encoding: 'utf8' },
    )
    const result = JSON.parse(out.trim().split('\n').pop())
    if (!result.ok) throw new Error(result.error)
    rows.page.push(result.value)
  }
  await board.close()
}
rmSync(dir, { recursive: true, force: true })

const ms = (xs) =>
  xs.length ? `${median(xs).toFixed(0)} ms (runs: ${xs.map((x) => x.toFixed(0)).join(', ')})` : 'not measured'
const cpu = cpus()[0]?.model ?? 'unknown'
const report = `# board-open: a 100,000-step run opened by \`llamapro board\`

Date: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC
Machine: ${cpu}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}; the cores shared with other jobs
Command: \`npm run build:ts && node bench/board-open.mjs --steps ${steps} --repeats ${repeats}${values['no-browser'] ? ' --no-browser' : ''}\`

The log: ${lines.length.toLocaleString('en-US')} lines (${steps.toLocaleString('en-US')} training lines with 6 layers' gradient norms, an
evaluation line with two datasets every 500 steps), ${(log.length / 2 ** 20).toFixed(1)} MiB. Medians of ${repeats} fresh boards:

| what | time |
|---|---|
| startBoard → /api/run answered (whole log parsed, ${series} series downsampled) | ${ms(rows.open)} |
| the same request again (stat only: nothing new) | ${ms(rows.again)} |
| one line appended → /api/run answered (reads the appended bytes only) | ${ms(rows.append)} |
| page: navigation start → all 6 charts drawn (headless Chromium, polled every 100 ms; the board of the rows above) | ${ms(rows.page)} |

/api/run sends ${(bytes / 1024).toFixed(0)} KiB: at most ${maxPoints} points per series (the drawn series are bounded by
MAX_DRAWN_POINTS = 2000; the numbers shown as text are the log's last line, exact).
`
writeFileSync(join(ROOT, 'bench', 'results', 'board-open.md'), report)
console.log(report)
