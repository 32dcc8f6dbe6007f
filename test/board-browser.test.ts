/**
 * The board in a real browser (Debian's chromium, headless, driven over the DevTools protocol by
 * test/helpers/cdp-page.mjs) while a real training run writes: the page shows the run's current step and loss as a
 * line of trainer_log.jsonl has them, draws its curves, follows the run without a reload, and shows it interrupted
 * once stopped. Needs `chromium` (scripts/setup-debian.sh installs it); without it this test fails, never skips.
 */
import t from 'tap'
import { execFile, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { startBoard } from '../lib/index.js'
import { expandCheckpoint } from '../lib/expand/expand-checkpoint.js'
import { parseTrainConfig } from '../lib/train/config.js'
import { train } from '../lib/train/trainer.js'
import { writeSyntheticRun } from './helpers/run-folder.js'
import { writeDatasets, writeTrainableModel } from './helpers/trainable-model.js'
import { REPO_ROOT } from './helpers/python.js'

const CDP = join(REPO_ROOT, 'test', 'helpers', 'cdp-page.mjs')
const CHROMIUM = process.env.CHROMIUM ?? 'chromium'
const exec = promisify(execFile)

interface PageResult<T> {
  ok: boolean
  value: T
  error?: string
  console: string[]
  exceptions: string[]
}

async function openPage<T>(options: {
  url: string
  waitFor: string
  snapshot: string
  screenshot?: string
  fullPage?: boolean
}): Promise<PageResult<T>> {
  const { stdout } = await exec(
    process.execPath,
    [
      '--no-warnings',
      '--experimental-websocket',
      CDP,
      JSON.stringify({ ...options, chromium: CHROMIUM, timeoutMs: 90_000 }),
    ],
    { timeout: 120_000 },
  ).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }))
  const result = JSON.parse(stdout.trim().split('\n').pop() || '{}') as PageResult<T>
  if (!result.ok)
    throw new Error(
      `the page failed: ${result.error}\nconsole: ${result.console?.join('\n')}\nexceptions: ` +
        `${result.exceptions?.join('\n')}`,
    )
  return result
}

const logLines = (dir: string) =>
  readFileSync(join(dir, 'trainer_log.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>)

/** In the page: the value cards, the drawn curves (path data with their points), legends, status. */
const SNAPSHOT = `(() => {
  const value = (id) => document.querySelector('#' + id + ' .value')?.dataset.value ?? null
  const chart = (id) => {
    const svg = document.querySelector('#' + id + ' svg')
    if (!svg) return null
    return {
      paths: [...svg.querySelectorAll('path')].map((p) => (p.getAttribute('d').match(/[ML]/g) ?? []).length),
      legend: [...svg.querySelectorAll('text')].map((t) => t.textContent),
    }
  }
  return {
    step: value('stat-step'), loss: value('stat-loss'), status: document.querySelector('#run-status [data-status]')?.dataset.status,
    loss_chart: chart('chart-loss'), eval_chart: chart('chart-eval'), lr_chart: chart('chart-lr'), layer_chart: chart('chart-layer-grad'),
    config: document.getElementById('config')?.textContent, live: document.getElementById('live').dataset.state,
    errors: document.getElementById('page-error').hidden ? null : document.getElementById('page-error').textContent,
  }
})()`

t.test('chromium is installed (scripts/setup-debian.sh: apt-get install chromium)', async (t) => {
  const version = spawnSync(CHROMIUM, ['--version'], { encoding: 'utf8' })
  t.equal(version.status, 0, `${CHROMIUM} --version: ${version.error?.message ?? version.stdout}`)
})

t.test('the page over a run that is writing, then interrupted; a folder with no run yet; runs compared', async (t) => {
  const dir = t.testdir()
  await writeTrainableModel(join(dir, 'base'), { seed: 6 })
  await expandCheckpoint(join(dir, 'base'), join(dir, 'pro'), { numExpand: 2 })
  const data = await writeDatasets(dir)
  const runs = join(dir, 'runs')
  mkdirSync(runs)
  const board = await startBoard({ dirs: [runs] })
  t.teardown(() => board.close())

  const empty = await openPage<string>({
    url: board.url,
    waitFor: "!document.getElementById('empty-state').hidden",
    snapshot: "document.getElementById('empty-state').textContent",
  })
  t.match(
    empty.value,
    /No training run here yet.*trainer_log\.jsonl/s,
    'an empty folder: the page says what a run folder holds',
  )

  const out = join(runs, 'pro-2')
  const raw = {
    model_name_or_path: join(dir, 'pro'),
    stage: 'pt',
    dataset: data.pt,
    finetuning_type: 'freeze',
    use_llama_pro: true,
    freeze_trainable_layers: 2,
    cutoff_len: 48,
    per_device_train_batch_size: 4,
    learning_rate: 3e-3,
    max_steps: 100_000,
    logging_steps: 1,
    save_steps: 100_000,
    val_size: 4,
    eval_steps: 5,
    output_dir: out,
  }
  const stop = new AbortController()
  let steps = 0
  const training = train(parseTrainConfig(raw, 'board browser test', dir), {
    signal: stop.signal,
    onEvent: (e) => {
      if (e.type === 'step') steps = e.step
      // The run-folder contract's files, as the trainer writes them at start (unless it already did).
      if (e.type === 'start' && !existsSync(join(out, 'llamapro_run.json'))) {
        writeFileSync(
          join(out, 'llamapro_run.json'),
          JSON.stringify({
            created_by: 'test',
            started_at: new Date().toISOString(),
            hostname: hostname(),
            pid: process.pid,
            stage: 'pt',
            finetuning_type: 'freeze',
            model_name_or_path: raw.model_name_or_path,
            output_dir: out,
            total_steps: e.totalSteps,
            num_layers: 6,
            trainable_layer_ids: e.trainableLayerIds,
            expanded_layer_ids: e.trainableLayerIds,
            eval_datasets: [],
            world_size: 1,
            device: e.device,
            logging_dir: null,
          }),
        )
        writeFileSync(
          join(out, 'training_args.yaml'),
          `${Object.entries(raw)
            .map(([k, v]) => `${k}: ${v}`)
            .join('\n')}\n`,
        )
      }
    },
  })
  t.teardown(() => stop.abort())
  while (steps < 12) await new Promise((resolve) => setTimeout(resolve, 50))

  // The step and loss shown, then again once the run has moved on: the page follows it without a reload.
  const live = await openPage<{ first: any; later: any }>({
    url: `${board.url}?run=pro-2`,
    waitFor:
      "document.querySelector('#stat-step .value[data-value]') !== null && document.querySelector('#chart-loss svg " +
      "path') !== null",
    snapshot: `(async () => {
      const first = ${SNAPSHOT}
      for (let i = 0; i < 300; i++) {
        await new Promise((r) => setTimeout(r, 100))
        const now = ${SNAPSHOT}
        if (Number(now.step) > Number(first.step) + 2 && now.loss_chart.paths[0] > first.loss_chart.paths[0]) return { first, later: now }
      }
      return { first, later: ${SNAPSHOT} }
    })()`,
  })
  const lines = logLines(out)
  for (const [when, shot] of Object.entries(live.value)) {
    t.equal(shot.errors, null, `${when}: no page error`)
    const line = lines.find((l) => l.current_steps === Number(shot.step) && typeof l.loss === 'number')
    t.ok(line, `${when}: step ${shot.step} is a logged step`)
    t.equal(Number(shot.loss), line?.loss, `${when}: the loss shown (${shot.loss}) is that line's`)
    t.equal(shot.status, 'running')
    t.equal(shot.live, 'live')
  }
  const { first, later } = live.value
  t.ok(
    Number(later.step) > Number(first.step),
    `the page moved from step ${first.step} to ${later.step} without a reload`,
  )
  t.ok(
    later.loss_chart.paths[0] > first.loss_chart.paths[0],
    `the loss curve grew from ${first.loss_chart.paths[0]} to ${later.loss_chart.paths[0]} points`,
  )
  t.ok(first.lr_chart.paths[0] >= 10, 'the learning-rate curve is drawn')
  t.ok(first.eval_chart.paths.length >= 1 || first.eval_chart === null, 'the eval chart is there once an eval ran')
  const layerLabels = later.layer_chart.legend.filter((s: string) => s.startsWith('layer '))
  t.ok(
    layerLabels.length >= 2 && layerLabels.every((s: string) => s.endsWith('(new)')),
    `layer grad norms of the expanded blocks: ${layerLabels.join(', ')}`,
  )
  t.match(later.config, /use_llama_pro: true/, 'training_args.yaml is shown')

  stop.abort()
  const result = await training
  t.equal(result.aborted, true)
  writeSyntheticRun(join(runs, 'synthetic-last-2'), { steps: 40, evalEvery: 5, layers: [4, 5], newFiles: false })
  const screenshot = join(dir, 'board.png')
  const ended = await openPage<any>({
    url: `${board.url}?run=pro-2`,
    waitFor:
      "document.querySelector('#run-status [data-status]')?.dataset.status === 'interrupted' && " +
      "document.querySelector('#chart-loss svg path') !== null",
    snapshot: SNAPSHOT,
    screenshot,
  })
  const all = logLines(out)
  const lastTraining = all.filter((l) => typeof l.loss === 'number').at(-1)!
  t.equal(Number(ended.value.step), lastTraining.current_steps, 'a stopped run shows its last logged step')
  t.equal(Number(ended.value.loss), lastTraining.loss)
  t.ok(readFileSync(screenshot).subarray(1, 4).toString() === 'PNG', 'a screenshot was taken')
  if (process.env.LLAMAPRO_BOARD_SCREENSHOTS)
    copyFileSync(screenshot, join(process.env.LLAMAPRO_BOARD_SCREENSHOTS, 'board-test-run.png'))

  const compared = await openPage<any>({
    url: `${board.url}?run=compare`,
    waitFor: "document.querySelectorAll('#compare-loss svg path').length === 2",
    snapshot:
      "({ rows: document.querySelectorAll('#compare-table tr[data-run-id]').length, legend: " +
      "[...document.querySelectorAll('#compare-loss svg text')].map((t) => t.textContent) })",
    ...(process.env.LLAMAPRO_BOARD_SCREENSHOTS
      ? { screenshot: join(process.env.LLAMAPRO_BOARD_SCREENSHOTS, 'board-test-compare.png') }
      : {}),
  })
  t.equal(compared.value.rows, 2, 'both runs in the comparison table')
  t.ok(
    compared.value.legend.includes('pro-2') && compared.value.legend.includes('synthetic-last-2'),
    'one series per run on the same chart',
  )
})
