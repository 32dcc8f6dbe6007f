/**
 * What a run writes for those who watch it (lib/train/run-log.ts, evaluate.ts): LLaMA-Factory's trainer_log.jsonl
 * fields, running_log.txt in its LoggerHandler's format, training_args.yaml, llamapro_run.json, one loss per eval
 * dataset (eval_on_each_dataset), and LlamaBoard's own reader (LLaMA-Factory's webui code) over the folder.
 * Expectations come from outside the code under test: packed pt blocks hold exactly cutoff_len real tokens, a run
 * with one eval dataset gives the same loss for it, a learning rate of 0 leaves every eval loss at the base model's
 * (measured by llamapro eval's batchLoss on the same sequences), and LLaMA-Factory's own monitor reads the files.
 */
import t from 'tap'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { expandCheckpoint } from '../lib/expand/expand-checkpoint.js'
import { readExpansionRecord } from '../lib/expand/record.js'
import { corpusA, corpusB } from '../lib/demo/corpora.js'
import { parseTrainConfig } from '../lib/train/config.js'
import type { LogRecord } from '../lib/train/events.js'
import { RunLog, llamaFactoryLogLine, pythonExponential } from '../lib/train/run-log.js'
import { clock, train } from '../lib/train/trainer.js'
import { writeTrainableModel } from './helpers/trainable-model.js'
import { runPythonJson } from './helpers/python.js'

const CUTOFF = 64
const BATCH = 4

async function layOut(dir: string) {
  process.env.LLAMAPRO_TOKEN_CACHE = join(dir, 'cache')
  await writeTrainableModel(join(dir, 'base'), { seed: 5 })
  mkdirSync(join(dir, 'data'))
  const jsonl = (texts: string[]) => `${texts.map((text) => JSON.stringify({ text })).join('\n')}\n`
  writeFileSync(join(dir, 'data', 'code.jsonl'), jsonl(corpusB(120, 5)))
  writeFileSync(join(dir, 'data', 'code_held.jsonl'), jsonl(corpusB(30, 98)))
  writeFileSync(join(dir, 'data', 'prose.jsonl'), jsonl(corpusA(30, 99)))
  const entry = (file: string) => ({ file_name: file, columns: { prompt: 'text' } })
  writeFileSync(
    join(dir, 'data', 'dataset_info.json'),
    JSON.stringify({ code: entry('code.jsonl'), code_held: entry('code_held.jsonl'), prose: entry('prose.jsonl') }),
  )
}

const given = (out: string, extra: Record<string, unknown> = {}) => ({
  model_name_or_path: 'base',
  stage: 'pt',
  finetuning_type: 'freeze',
  freeze_trainable_layers: 2,
  dataset: 'code',
  dataset_dir: 'data',
  cutoff_len: CUTOFF,
  per_device_train_batch_size: BATCH,
  learning_rate: 1e-3,
  max_steps: 8,
  logging_steps: 2,
  eval_steps: 4,
  output_dir: out,
  ...extra,
})

const lines = (dir: string): LogRecord[] =>
  readFileSync(join(dir, 'trainer_log.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as LogRecord)

t.test(
  'trainer_log.jsonl, running_log.txt, training_args.yaml, llamapro_run.json and one loss per eval dataset',
  async (t) => {
    const dir = t.testdir()
    await layOut(dir)
    const each = given('each', { eval_dataset: 'code_held,prose', eval_on_each_dataset: true })
    const result = await train(parseTrainConfig(each, 'each.yaml', dir))
    const log = lines(join(dir, 'each'))
    const training = log.filter((r) => r.loss !== undefined)
    const evals = log.filter((r) => r.loss === undefined)
    t.same(
      training.map((r) => r.current_steps),
      [2, 4, 6, 8],
    )
    t.same(
      evals.map((r) => r.current_steps),
      [4, 8],
    )
    for (const r of training) {
      for (const key of [
        'current_steps',
        'total_steps',
        'loss',
        'lr',
        'epoch',
        'percentage',
        'elapsed_time',
        'remaining_time',
        'throughput',
        'total_tokens',
      ] as const) {
        t.ok(r[key] !== undefined, `training line ${r.current_steps} has ${key}`)
      }
      // Packed pt blocks hold exactly cutoff_len real tokens: each step trains on batch × cutoff_len.
      t.equal(r.total_tokens, r.current_steps * BATCH * CUTOFF, `total_tokens at step ${r.current_steps}`)
      t.match(r.elapsed_time, /^\d+:\d\d:\d\d$/)
      t.equal(r.percentage, Number(((100 * r.current_steps) / 8).toFixed(2)))
    }
    for (const r of evals) {
      t.same(
        Object.keys(r)
          .filter((k) => k.startsWith('eval_'))
          .sort(),
        ['eval_code_held_loss', 'eval_prose_loss'],
        'eval_<name>_loss per dataset, no eval_loss (as transformers)',
      )
    }
    const last = evals.at(-1)!
    t.same(result.evalLosses, {
      eval_code_held_loss: result.evalLosses.eval_code_held_loss,
      eval_prose_loss: result.evalLosses.eval_prose_loss,
    })
    const evalResults = JSON.parse(readFileSync(join(dir, 'each', 'eval_results.json'), 'utf8'))
    const allResults = JSON.parse(readFileSync(join(dir, 'each', 'all_results.json'), 'utf8'))
    for (const key of ['eval_code_held_loss', 'eval_prose_loss'] as const) {
      t.equal(Number(evalResults[key].toFixed(6)), last[key], `eval_results.json ${key}`)
      t.equal(allResults[key], evalResults[key], `all_results.json ${key}`)
    }

    // The same run with code_held as its only eval dataset: the same training, so the same loss on code_held.
    const single = await train(parseTrainConfig(given('single', { eval_dataset: 'code_held' }), 'single.yaml', dir))
    const singleEvals = lines(join(dir, 'single')).filter((r) => r.eval_loss !== undefined)
    t.same(
      singleEvals.map((r) => r.current_steps),
      [4, 8],
    )
    singleEvals.forEach((r, i) =>
      t.ok(
        Math.abs(r.eval_loss! - evals[i]!.eval_code_held_loss!) < 1e-5,
        `step ${r.current_steps}: eval_loss ${r.eval_loss} = eval_code_held_loss ${evals[i]!.eval_code_held_loss}`,
      ),
    )
    t.ok(Math.abs(single.evalLoss! - result.evalLosses.eval_code_held_loss!) < 1e-5)
    // evalLoss (the API's one number) is the loss over both sets' tokens: between the two. A merged eval_dataset would
    // differ, since pt packs the merged text across the datasets' boundary, as LLaMA-Factory's concatenation does.
    t.ok(
      result.evalLoss! > Math.min(last.eval_code_held_loss!, last.eval_prose_loss!) &&
        result.evalLoss! < Math.max(last.eval_code_held_loss!, last.eval_prose_loss!),
    )

    // running_log.txt: LLaMA-Factory's LoggerHandler format, LogCallback's line for each training log.
    const running = readFileSync(join(dir, 'each', 'running_log.txt'), 'utf8')
      .trimEnd()
      .split('\n')
    for (const line of running) t.match(line, /^\[(INFO|WARNING|ERROR)\|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] llamapro >> /)
    for (const r of training) {
      const expected =
        `{'loss': ${r.loss!.toFixed(4)}, 'learning_rate': ` +
        `${r.lr!.toExponential(4).replace(/e-(\d)$/, 'e-0$1')}, 'epoch': ${r.epoch.toFixed(2)}, 'throughput': ` +
        `${r.throughput!.toFixed(2)}}`
      t.ok(
        running.some((line) => line.endsWith(`>> ${expected}`)),
        `running_log.txt has ${expected}`,
      )
    }
    t.ok(running.some((line) => line.includes('eval_code_held_loss') && line.includes('eval_prose_loss')))
    t.ok(
      running.some((line) => /llamapro >> kernels: gemm (onednn|blas), fused attention (on|off), row plan/.test(line)),
      'the start says which kernel options are in effect',
    )
    t.match(running.at(-1), /finished: 8 steps, train_loss \d/)

    t.same(
      parse(readFileSync(join(dir, 'each', 'training_args.yaml'), 'utf8')),
      each,
      'training_args.yaml holds the keys as given',
    )
    const info = JSON.parse(readFileSync(join(dir, 'each', 'llamapro_run.json'), 'utf8'))
    t.match(info, {
      stage: 'pt',
      finetuning_type: 'freeze',
      total_steps: 8,
      num_layers: 4,
      trainable_layer_ids: [2, 3],
      expanded_layer_ids: [],
      eval_datasets: ['code_held', 'prose'],
      world_size: 1,
      pid: process.pid,
    })

    // LlamaBoard's monitor (LLaMA-Factory's get_trainer_info and gen_loss_plot) over the folder.
    const board = await runPythonJson<{
      running_log: string
      progress: { label: string; value: number; visible: boolean }
      loss_plot: { lines: [number[], number[]] } | null
    }>(['test/reference/llamaboard_reader.py', join(dir, 'each')])
    const latest = log.at(-1)!
    t.same(board.progress, {
      label: `Running ${latest.current_steps}/${latest.total_steps}: ${latest.elapsed_time} < ${latest.remaining_time}`,
      value: latest.percentage,
      visible: true,
    })
    t.same(
      board.loss_plot?.lines,
      [training.map((r) => r.current_steps), training.map((r) => r.loss)],
      "LlamaBoard's loss plot draws the training lines",
    )
    t.ok(board.running_log.includes(running.at(-1)!), "LlamaBoard's log box shows running_log.txt")
  },
)

t.test(
  "eval_on_each_dataset with a learning rate of 0: every loss is the base model's, in a token store and streamed",
  async (t) => {
    const dir = t.testdir()
    await layOut(dir)
    const extra = {
      eval_dataset: 'code_held,prose',
      eval_on_each_dataset: true,
      learning_rate: 0,
      max_steps: 2,
      eval_steps: 2,
    }
    const stored = await train(parseTrainConfig(given('stored', extra), 'stored.yaml', dir))
    const streamed = await train(
      parseTrainConfig(given('streamed', { ...extra, streaming: true }), 'streamed.yaml', dir),
    )
    const alone = await train(
      parseTrainConfig(
        given('alone', { ...extra, eval_dataset: 'prose', eval_on_each_dataset: false }),
        'alone.yaml',
        dir,
      ),
    )
    for (const key of ['eval_code_held_loss', 'eval_prose_loss'] as const)
      t.ok(
        Math.abs(stored.evalLosses[key]! - streamed.evalLosses[key]!) < 1e-5,
        `${key}: store ${stored.evalLosses[key]}, streamed ${streamed.evalLosses[key]}`,
      )
    t.ok(Math.abs(alone.evalLoss! - stored.evalLosses.eval_prose_loss!) < 1e-5)
    t.ok(
      Math.abs(stored.evalLosses.eval_code_held_loss! - stored.evalLosses.eval_prose_loss!) > 1e-3,
      'the two datasets give different losses',
    )
  },
)

t.test('llamapro_run.json names the new blocks of a LLaMA-Pro model', async (t) => {
  const dir = t.testdir()
  await layOut(dir)
  await expandCheckpoint(join(dir, 'base'), join(dir, 'pro'), { numExpand: 2 })
  await train(
    parseTrainConfig(given('out', { model_name_or_path: 'pro', use_llama_pro: true, max_steps: 2 }), 'pro.yaml', dir),
  )
  const info = JSON.parse(readFileSync(join(dir, 'out', 'llamapro_run.json'), 'utf8'))
  const record = await readExpansionRecord(join(dir, 'pro'))
  t.same(info.expanded_layer_ids, record!.new_layer_ids)
  t.same(info.trainable_layer_ids, record!.new_layer_ids, 'use_llama_pro trains exactly the new blocks')
  t.equal(info.num_layers, 6)
})

t.test('report_to, logging_dir and eval_on_each_dataset keys', async (t) => {
  const parse = (extra: Record<string, unknown>) =>
    parseTrainConfig({ model_name_or_path: 'm', output_dir: 'o', dataset: 'd', ...extra }, 'run.yaml', '/work')
  t.same(parse({}).reportTo, [], 'report_to defaults to none')
  t.same(parse({ report_to: 'all' }).reportTo, ['tensorboard'])
  t.same(parse({ report_to: 'none' }).reportTo, [])
  const mixed = parse({ report_to: ['tensorboard', 'wandb'] })
  t.same(mixed.reportTo, ['tensorboard'])
  t.match(mixed.configWarnings, [/report_to: wandb cannot be served by llamapro .*supported: tensorboard/])
  t.throws(
    () => parse({ report_to: 'tensorbord' }),
    /report_to: "tensorbord" is not an integration transformers knows \(valid: none, all, tensorboard, .*wandb/,
  )
  t.throws(() => parse({ report_to: 'none,tensorboard' }), /"none" cannot be combined/)
  t.equal(parse({ logging_dir: 'tb' }).loggingDir, '/work/tb', 'logging_dir resolves against the working directory')
  t.match(parse({ eval_on_each_dataset: true }).configWarnings, [
    /eval_on_each_dataset: true has no effect without eval_dataset/,
  ])
  t.same(parse({ learning_rate: 1 }).given, {
    model_name_or_path: 'm',
    output_dir: 'o',
    dataset: 'd',
    learning_rate: 1,
  })
})

t.test("LLaMA-Factory's formats: timedelta clock, Python exponent, LogCallback line", async (t) => {
  t.equal(clock(0), '0:00:00')
  t.equal(clock(3725.9), '1:02:05', 'whole seconds, as int(elapsed)')
  t.equal(clock(86400 + 3661), '1 day, 1:01:01')
  t.equal(clock(2 * 86400), '2 days, 0:00:00')
  t.equal(pythonExponential(1e-4, 4), '1.0000e-04')
  t.equal(pythonExponential(2.5e-10, 4), '2.5000e-10')
  t.equal(pythonExponential(12345, 2), '1.23e+04')
  const base = {
    current_steps: 1,
    total_steps: 2,
    epoch: 0.5,
    percentage: 50,
    elapsed_time: '0:00:01',
    remaining_time: '0:00:01',
    elapsed_seconds: 1,
  }
  t.equal(
    llamaFactoryLogLine({ ...base, loss: 1.23456, lr: 5e-5 }),
    "{'loss': 1.2346, 'learning_rate': 5.0000e-05, 'epoch': 0.50}",
  )
  t.equal(llamaFactoryLogLine({ ...base, eval_loss: 2 }), undefined, 'evaluation lines are not LogCallback loss lines')
})

t.test('a log file that cannot be written fails the next log line, naming the file', async (t) => {
  const dir = t.testdir()
  const log = await RunLog.open(join(dir, 'out'), { resumed: false, given: {}, info: {} as never })
  rmSync(join(dir, 'out', 'trainer_log.jsonl'))
  mkdirSync(join(dir, 'out', 'trainer_log.jsonl'))
  await t.rejects(
    log.record({
      current_steps: 1,
      total_steps: 1,
      epoch: 1,
      percentage: 100,
      elapsed_time: '0:00:00',
      remaining_time: '0:00:00',
      elapsed_seconds: 0,
    }),
    /cannot write .*trainer_log\.jsonl/,
  )
  await t.rejects(log.close(), /cannot write .*trainer_log\.jsonl/)
})
