import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { corpusA, corpusB } from '../lib/demo/corpora.js'
import { planSweep, stepsForTokens, strategySlug } from '../lib/sweep/plan.js'
import { RULE, statements, summarize } from '../lib/sweep/report.js'
import { RUN_MARKER, type RunRecord, type SweepEvent, runSweep } from '../lib/sweep/run.js'
import { compare, spread } from '../lib/sweep/statistics.js'
import { writeTrainableModel } from './helpers/trainable-model.js'
import { REPO_ROOT } from './helpers/python.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')
const exec = promisify(execFile)
const cli = async (args: string[], cwd: string) =>
  (await exec(process.execPath, [CLI, ...args], { cwd, maxBuffer: 1 << 24 })).stdout

t.test('spread: mean and sample standard deviation, by hand', async (t) => {
  const s = spread([2, 4, 4, 4, 5, 5, 7, 9])
  t.equal(s.mean, 5)
  t.ok(Math.abs(s.std - Math.sqrt(32 / 7)) < 1e-12, `sample std ${s.std} = sqrt(32/7)`)
  t.same(spread([3]), { mean: 3, std: 0, n: 1 })
})

t.test(
  'the statement rule: apart intervals are stated, overlapping ones are noise, one seed says nothing',
  async (t) => {
    // x: mean 1, std 0.1; the std sum is 0.2 for every y below (std 0.1).
    const x = spread([0.9, 1.0, 1.1])
    const near = spread([1.05, 1.15, 1.25]) // Δ 0.15 < 0.2
    const far = spread([1.2, 1.3, 1.4]) // Δ 0.3 > 0.2
    t.equal(compare(x, near), 'noise')
    t.equal(compare(near, x), 'noise')
    t.equal(compare(x, far), 'less')
    t.equal(compare(far, x), 'more')
    // Either side of the boundary |Δ| = std sum.
    t.equal(compare(x, spread([1.11, 1.21, 1.31])), 'less', 'Δ 0.21 > std sum 0.2')
    t.equal(compare(x, spread([1.09, 1.19, 1.29])), 'noise', 'Δ 0.19 < std sum 0.2')
    t.equal(compare(spread([0, 0.1]), spread([0.2, 0.3])), 'less', 'Δ 0.2 > 0.0707 + 0.0707')
    t.equal(compare(spread([0, 0.1]), spread([0.1, 0.2])), 'noise', 'Δ 0.1 < 0.1414')
    t.equal(compare(spread([1]), spread([2, 3])), 'one-seed')
    t.equal(compare(spread([1]), spread([5])), 'one-seed', 'even a large difference says nothing with one seed')

    const record = (strategy: string, seed: number, forgot: number, learned: number): RunRecord => ({
      strategy,
      seed,
      dir: `/x/${strategy}/${seed}`,
      model: '/m',
      trainableParams: 10,
      totalParams: 20,
      steps: 5,
      tokens: 100,
      seconds: 36,
      tokensPerSecond: 3,
      peakMemoryBytes: null,
      device: 'cpu',
      domain: { before: 3, after: 3 - learned, tokens: 50 },
      keep: { before: 2, after: 2 + forgot, tokens: 50 },
    })
    const pro = summarize('pro:2', [
      record('pro:2', 1, 0.1, 0.5),
      record('pro:2', 2, 0.12, 0.6),
      record('pro:2', 3, 0.08, 0.4),
    ])
    const full = summarize('full', [
      record('full', 1, 0.3, 0.55),
      record('full', 2, 0.32, 0.65),
      record('full', 3, 0.28, 0.45),
    ])
    t.ok(Math.abs(pro.learnedPerHour.mean - 0.5 / 0.01) < 1e-9, 'learned per hour: 0.5 in 36 s = 50 per hour')
    const said = statements([pro, full])
    t.equal(said.length, 2)
    t.equal(said[0]!.about, 'forgetting')
    t.equal(said[0]!.verdict, 'less')
    t.match(
      said[0]!.text,
      /^pro:2 forgets less than full \(kept-text loss change: \+0\.100 ± 0\.020 vs \+0\.300 ± 0\.020\)/,
    )
    t.equal(said[1]!.verdict, 'noise')
    t.match(said[1]!.text, /pro:2 vs full: new-domain loss drop within noise/)
    const gains = statements([
      summarize('a', [record('a', 1, -0.1, 0.5), record('a', 2, -0.12, 0.5)]),
      summarize('b', [record('b', 1, -0.3, 0.5), record('b', 2, -0.32, 0.5)]),
    ])
    t.match(gains[0]!.text, /^a gains less on the kept text than b /, 'both kept-text losses fell: no "forgets"')
    const one = statements([
      summarize('pro:2', [record('pro:2', 1, 0.1, 0.5)]),
      summarize('full', [record('full', 1, 0.9, 0.1)]),
    ])
    t.ok(one.every((s) => s.verdict === 'one-seed' && s.text.includes('cannot tell: one seed')))
    t.match(RULE, /\|Δmean\| > std₁ \+ std₂/)
  },
)

t.test('the plan: strategies × seeds, one expansion per block count, the same steps for all', async (t) => {
  const config = {
    modelNameOrPath: '/m/base',
    seed: 42,
    perDeviceTrainBatchSize: 4,
    gradientAccumulationSteps: 2,
    cutoffLen: 128,
  }
  const plan = planSweep({
    config,
    numLayers: 8,
    strategies: 'pro:2,last:2,full,ids:1,5,pro:4',
    outDir: '/s',
    steps: 7,
    seeds: 3,
  })
  t.same(
    plan.strategies.map((s) => s.name),
    ['pro:2', 'last:2', 'full', 'ids:1,5', 'pro:4'],
  )
  t.same(plan.seeds, [42, 43, 44])
  t.equal(plan.runs.length, 15)
  t.same(
    [...plan.expansions],
    [
      [2, '/s/models/expanded-2'],
      [4, '/s/models/expanded-4'],
    ],
  )
  const pro = plan.runs.find((r) => r.strategy.name === 'pro:2' && r.seed === 43)!
  t.equal(pro.dir, '/s/runs/pro-2/seed-43')
  t.match(pro.overrides, {
    model_name_or_path: '/s/models/expanded-2',
    use_llama_pro: true,
    freeze_trainable_layers: 2,
    max_steps: 7,
    seed: 43,
    finetuning_type: 'freeze',
  })
  const last = plan.runs.find((r) => r.strategy.name === 'last:2')!
  t.match(last.overrides, {
    model_name_or_path: '/m/base',
    use_llama_pro: false,
    freeze_trainable_layers: 2,
    freeze_trainable_layer_ids: null,
  })
  t.match(plan.runs.find((r) => r.strategy.name === 'full')!.overrides, { finetuning_type: 'full' })
  t.match(plan.runs.find((r) => r.strategy.name === 'ids:1,5')!.overrides, { freeze_trainable_layer_ids: '1,5' })
  t.equal(strategySlug('ids:1,5'), 'ids-1-5')
  t.equal(stepsForTokens(10_000, config), 10, '10,000 tokens at 4 × 2 × 128 = 1,024 per step: 10 steps (rounded up)')
  t.equal(planSweep({ config, numLayers: 8, strategies: 'full', outDir: '/s', tokens: 1024 }).steps, 1)
  t.throws(() => planSweep({ config, numLayers: 8, strategies: 'full,full', outDir: '/s' }), /listed twice/)
  t.throws(() => planSweep({ config, numLayers: 8, strategies: 'full', outDir: '/s', steps: 1, tokens: 1 }), /not both/)
  t.throws(
    () => planSweep({ config, numLayers: 8, strategies: 'lora:pro:2', outDir: '/s' }),
    /LoRA strategies are not part of sweep yet/,
  )
})

async function tinySetup(dir: string, extraYaml: string[] = []): Promise<string> {
  await writeTrainableModel(join(dir, 'base'), { seed: 3 })
  const jsonl = (name: string, texts: string[]) =>
    writeFileSync(join(dir, name), `${texts.map((text) => JSON.stringify({ text })).join('\n')}\n`)
  jsonl('domain.jsonl', corpusB(80, 21))
  jsonl('domain-heldout.jsonl', corpusB(12, 22))
  jsonl('keep.jsonl', corpusA(12, 23))
  const yaml = [
    'model_name_or_path: base',
    'stage: pt',
    'dataset: domain.jsonl',
    'cutoff_len: 48',
    'per_device_train_batch_size: 4',
    'per_device_eval_batch_size: 3',
    'learning_rate: 3.0e-3',
    'lr_scheduler_type: cosine',
    'logging_steps: 2',
    'seed: 5',
    'output_dir: unused',
    ...extraYaml,
  ].join('\n')
  writeFileSync(join(dir, 'sweep.yaml'), `${yaml}\n`)
  return dir
}

t.test(
  'a tiny sweep: figures equal separate train + eval runs; reports parse; an interrupted sweep resumes without ' +
    'retraining',
  async (t) => {
    const dir = await tinySetup(t.testdir())
    const options = {
      config: 'sweep.yaml',
      strategies: 'pro:2,last:2',
      keep: ['keep.jsonl'],
      eval: ['domain-heldout.jsonl'],
      steps: 6,
      seeds: 2,
      cwd: dir,
    }

    const events: SweepEvent[] = []
    const first = await runSweep({ ...options, outDir: 'first', onEvent: (e) => events.push(e) })
    t.ok(first.complete && !first.aborted)
    t.equal(first.runs.length, 4)
    t.equal(events.filter((e) => e.type === 'run-start').length, 4)
    t.equal(events.filter((e) => e.type === 'expand').length, 1, 'expanded once for both pro:2 seeds')
    const steps = events.filter((e): e is Extract<SweepEvent, { type: 'step' }> => e.type === 'step')
    t.ok(
      steps.every((e) => e.etaSeconds !== null && e.etaSeconds >= 0),
      'every step carries a sweep ETA',
    )
    t.equal(steps.at(-1)!.etaSeconds, 0, 'nothing left after the last step')

    // The same data order and budget for every strategy: seed by seed, the same tokens.
    for (const seed of [5, 6])
      t.equal(
        new Set(first.runs.filter((r) => r.seed === seed).map((r) => r.tokens)).size,
        1,
        `seed ${seed}: one token count`,
      )
    t.ok(first.runs.every((r) => r.steps === 6 && r.tokens > 0))

    // Reports exist and parse.
    const out = join(dir, 'first')
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'))
    t.same(report.strategies, ['pro:2', 'last:2'])
    t.equal(report.summaries.length, 2)
    t.equal(report.statements.length, 2)
    t.equal(report.runs.length, 4)
    const md = readFileSync(join(out, 'report.md'), 'utf8')
    t.match(md, /\| pro:2 \| /)
    t.match(md, /!\[forgetting-vs-learning\.png\]/)
    // Two seeds per strategy: a ± std whisker on each learning-per-hour bar whose seeds differ (all, in practice).
    const perHourStds = report.summaries.map((s: { learnedPerHour: { std: number } }) => s.learnedPerHour.std)
    const whiskers = readFileSync(join(out, 'learning-per-hour.svg'), 'utf8').match(/class="whisker"/g) ?? []
    const whiskered = perHourStds.filter((s: number) => s > 0).length
    t.equal(whiskers.length, whiskered, `learning-per-hour.svg: whiskers for stds ${perHourStds.join(', ')}`)
    for (const name of ['forgetting-vs-learning', 'learning-per-hour']) {
      t.match(readFileSync(join(out, `${name}.svg`), 'utf8'), /^<svg /)
      t.same(
        [...readFileSync(join(out, `${name}.png`)).subarray(0, 4)],
        [0x89, 0x50, 0x4e, 0x47],
        `${name}.png is a PNG`,
      )
    }

    // The sweep adds no numbers: a separate expand + train + eval with the same settings gives the same figures.
    const pro = first.runs.find((r) => r.strategy === 'pro:2' && r.seed === 6)!
    await cli(['expand', 'base', 'separate-pro', '--num-expand', '2'], dir)
    await cli(
      [
        'train',
        'sweep.yaml',
        '--model_name_or_path',
        'separate-pro',
        '--use_llama_pro',
        'true',
        '--freeze_trainable_layers',
        '2',
        '--seed',
        '6',
        '--max_steps',
        '6',
        '--output_dir',
        'separate-run',
        '--save_strategy',
        'no',
      ],
      dir,
    )
    const evalLoss = async (model: string, dataset: string) =>
      JSON.parse(
        await cli(
          [
            'eval',
            model,
            '--dataset',
            dataset,
            '--stage',
            'pt',
            '--template',
            'default',
            '--cutoff-len',
            '48',
            '--batch-size',
            '3',
            '--json',
          ],
          dir,
        ),
      ).models[0]
    const domainAfter = await evalLoss('separate-run', 'domain-heldout.jsonl')
    const keepAfter = await evalLoss('separate-run', 'keep.jsonl')
    t.equal(pro.domain.after, domainAfter.loss, 'new-domain loss after training')
    t.equal(pro.keep.after, keepAfter.loss, 'kept-text loss after training')
    t.equal(pro.domain.tokens, domainAfter.tokens)
    t.equal(
      pro.domain.before,
      (await evalLoss('separate-pro', 'domain-heldout.jsonl')).loss,
      'before: the expanded model',
    )
    t.equal(pro.keep.before, (await evalLoss('separate-pro', 'keep.jsonl')).loss)
    const separateState = JSON.parse(readFileSync(join(dir, 'separate-run', 'trainer_state.json'), 'utf8'))
    t.equal(pro.steps, separateState.global_step)
    const separateResults = JSON.parse(readFileSync(join(dir, 'separate-run', 'all_results.json'), 'utf8'))
    const sweepResults = JSON.parse(readFileSync(join(pro.dir, 'all_results.json'), 'utf8'))
    t.equal(sweepResults.train_loss, separateResults.train_loss, 'the same training loss: the same run')
    t.equal(pro.seconds, sweepResults.train_runtime, "wall time is the trainer's")
    // The summaries are the runs' numbers, averaged.
    const proRuns = first.runs.filter((r) => r.strategy === 'pro:2')
    const summary = report.summaries.find((s: { strategy: string }) => s.strategy === 'pro:2')
    t.ok(Math.abs(summary.keepAfter.mean - (proRuns[0]!.keep.after + proRuns[1]!.keep.after) / 2) < 1e-12)

    // Rerun of a finished sweep: nothing retrains, no marker is rewritten.
    const markers = first.runs.map((r) => join(r.dir, RUN_MARKER))
    const mtimes = markers.map((m) => statSync(m).mtimeMs)
    const again: SweepEvent[] = []
    const rerun = await runSweep({ ...options, outDir: 'first', onEvent: (e) => again.push(e) })
    t.equal(again.filter((e) => e.type === 'run-start').length, 0, 'no run retrained')
    t.equal(again.filter((e) => e.type === 'run-skipped').length, 4)
    t.ok(
      again.some((e) => e.type === 'expand' && e.reused),
      'the expansion is reused',
    )
    t.same(
      markers.map((m) => statSync(m).mtimeMs),
      mtimes,
    )
    t.same(rerun.runs, first.runs)

    // Interrupted in its third run, then continued: the first two are not retrained, and the figures are the first
    // sweep's.
    const controller = new AbortController()
    const started: string[] = []
    const stopped = await runSweep({
      ...options,
      outDir: 'second',
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === 'run-start') started.push(`${e.strategy}/${e.seed}`)
        if (e.type === 'step' && started.length === 3 && e.step === 2) controller.abort()
      },
    })
    t.ok(stopped.aborted && !stopped.complete)
    t.equal(stopped.runs.length, 2)
    const partial = JSON.parse(readFileSync(join(dir, 'second', 'report.json'), 'utf8'))
    t.equal(partial.complete, false)
    t.equal(partial.runs.length, 2, 'the report of the runs finished so far')
    t.match(readFileSync(join(dir, 'second', 'report.md'), 'utf8'), /\*\*Incomplete\*\*: 2 run\(s\) finished so far/)
    t.notOk(existsSync(join(dir, 'second', 'runs', 'pro-2', 'seed-6', RUN_MARKER)), 'the stopped run has no marker')
    const done = stopped.runs.map((r) => statSync(join(r.dir, RUN_MARKER)).mtimeMs)
    const resumedStarts: string[] = []
    const resumed = await runSweep({
      ...options,
      outDir: 'second',
      onEvent: (e) => e.type === 'run-start' && resumedStarts.push(`${e.strategy}/${e.seed}`),
    })
    t.same(resumedStarts, ['pro:2/6', 'last:2/6'], 'only the unfinished runs train (seed-major order)')
    t.same(
      stopped.runs.map((r) => statSync(join(r.dir, RUN_MARKER)).mtimeMs),
      done,
    )
    t.ok(resumed.complete)
    const figures = (runs: RunRecord[]) =>
      runs.map((r) => [
        r.strategy,
        r.seed,
        r.tokens,
        r.trainableParams,
        r.domain.before,
        r.domain.after,
        r.keep.before,
        r.keep.after,
      ])
    t.same(figures(resumed.runs), figures(first.runs), 'the same figures as the uninterrupted sweep')

    // A folder made with other settings is refused, not mixed.
    await t.rejects(runSweep({ ...options, outDir: 'first', steps: 7 }), /other settings/)
  },
)

t.test(
  "with val_size and no --eval, the new domain is the trainer's own held-out split, before and after",
  async (t) => {
    const dir = await tinySetup(t.testdir(), ['val_size: 0.2'])
    const result = await runSweep({
      config: 'sweep.yaml',
      strategies: 'last:2',
      keep: ['keep.jsonl'],
      steps: 4,
      cwd: dir,
      outDir: 'vs',
    })
    const [run] = result.runs
    const evalLossOf = (folder: string) => JSON.parse(readFileSync(join(folder, 'all_results.json'), 'utf8')).eval_loss
    t.equal(run!.domain.after, evalLossOf(run!.dir), "after: the trainer's eval_loss on the split")
    const baseline = join(dir, 'vs', 'baseline', 'original-seed-5')
    t.equal(run!.domain.before, evalLossOf(baseline), 'before: the same evaluation after a step at learning rate 0')
    t.ok(run!.domain.before > run!.domain.after, `learned: ${run!.domain.before} -> ${run!.domain.after}`)
    // The learning-rate-0 step changed no weight: the kept text scores exactly as on the base model.
    const keep = async (model: string) =>
      JSON.parse(
        await cli(
          [
            'eval',
            model,
            '--dataset',
            'keep.jsonl',
            '--stage',
            'pt',
            '--cutoff-len',
            '48',
            '--batch-size',
            '3',
            '--json',
          ],
          dir,
        ),
      ).models[0].loss
    t.equal(await keep(baseline), await keep('base'))
    t.equal(run!.keep.before, await keep('base'))
    await t.rejects(
      runSweep({ config: 'sweep.yaml', strategies: 'last:2', keep: [], steps: 4, cwd: dir, outDir: 'x' }),
      /--keep DATASET/,
    )
  },
)

t.test(
  'the CLI: progress lines, the report, and Ctrl-C ends with the report of the runs finished so far (status 130)',
  async (t) => {
    const dir = await tinySetup(t.testdir())
    const args = [
      'sweep',
      'sweep.yaml',
      '--strategies',
      'last:2,first:1',
      '--keep',
      'keep.jsonl',
      '--eval',
      'domain-heldout.jsonl',
      '--steps',
      '40',
      '--out',
      'cli',
    ]
    const child = spawn(process.execPath, [CLI, ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => (stdout += chunk))
    child.stderr.on('data', (chunk) => (stderr += chunk))
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (/\[2\/2\] first:1 seed 5: training/.test(stdout)) {
          clearInterval(poll)
          resolve()
        }
      }, 20)
    })
    child.kill('SIGINT')
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
    t.equal(code, 130, stderr)
    t.match(stdout, /sweep: last:2, first:1 × 1 seed\(s\) = 2 runs of 40 steps/)
    t.match(stdout, /last:2 seed 5: step 10\/40, loss [\d.]+, sweep ETA /)
    t.match(stderr, /interrupted after 1 of 2 runs; the report covers those/)
    const partial = JSON.parse(readFileSync(join(dir, 'cli', 'report.json'), 'utf8'))
    t.equal(partial.complete, false)
    t.same(
      partial.runs.map((r: RunRecord) => r.strategy),
      ['last:2'],
    )
    // The same command continues: only first:1 trains.
    const rest = await cli([...args, '--json'], dir)
    const report = JSON.parse(rest)
    t.equal(report.complete, true)
    t.same(
      report.runs.map((r: RunRecord) => r.strategy),
      ['last:2', 'first:1'],
    )
    t.same(report.runs[0], partial.runs[0], 'the finished run is reported as it was, not retrained')
    t.match(report.statements[0].text, /cannot tell: one seed/)
    const usage = await exec(process.execPath, [CLI, 'sweep', 'sweep.yaml', '--keep', 'keep.jsonl'], {
      cwd: dir,
    }).catch((e) => e)
    t.equal(usage.code, 2)
    t.match(usage.stderr, /--strategies is required/)
  },
)
