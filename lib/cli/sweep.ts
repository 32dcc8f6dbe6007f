import { relative } from 'node:path'
import { UsageError } from '../errors.js'
import { runSweep } from '../sweep/run.js'
import { formatDuration } from '../util/format.js'
import { ProgressBar } from '../util/progress.js'
import { interruptSignal, parseArgs, parseInteger } from './args.js'

export const SWEEP_HELP = `llamapro sweep <config.yaml> --strategies LIST --keep DATASET [--eval DATASET] [--steps N | --tokens N] [--seeds K] [--out DIR]

Which freeze strategy is worth its GPU time: trains each strategy on the YAML's data with the same data order,
learning-rate schedule and step budget, and measures on held-out data what each learned (loss on the new domain,
before → after), what each forgot (loss on the text to keep, before → after) and what each cost (trainable
parameters, tokens, wall time, tokens/s, peak memory). pro:N trains a copy of the model expanded by N blocks
(expanded once, shared by the seeds); the other strategies train the original. With --seeds K every strategy
trains K times (data-order seeds seed, seed+1, ...) and figures are mean ± std; a sentence such as "pro:8 forgets
less than full" is written only when the mean ± std intervals do not overlap, otherwise "within noise".

The YAML is an ordinary training YAML: model_name_or_path is the original (not expanded) model; its freeze keys
(finetuning_type, use_llama_pro, freeze_*) are replaced by each strategy's. Each run is an ordinary training
output folder, DIR/runs/<strategy>/seed-<n>/. Interrupted (Ctrl-C), the sweep writes the report of the runs
finished so far; the same command continues it, retraining nothing finished.

  --strategies LIST     full, last:N, first:N, pro:N, modules:a+b, ids:a,b,... (comma-separated, as bench)
  --keep DATASET        text the model should keep (dataset names or files, e.g. a sample of general English)
  --keep-stage pt|sft   how the kept text is read (default pt: plain text)
  --eval DATASET        held-out new-domain data (default: the YAML's eval_dataset, else its val_size split of the training data)
  --steps N             optimizer steps of every run (default: the YAML's max_steps or num_train_epochs)
  --tokens N            a token budget instead: N / (batch × accumulation × cutoff_len) steps
  --seeds K             runs per strategy (default 1: no spread, so no difference is stated)
  --out DIR             the sweep folder (default llamapro-sweep)
  --json                print the report as JSON

Writes DIR/report.md, report.json, forgetting-vs-learning.png/.svg and learning-per-hour.png/.svg.`

export async function runSweepCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      strategies: { type: 'string' },
      keep: { type: 'string' },
      'keep-stage': { type: 'string' },
      eval: { type: 'string' },
      steps: { type: 'string' },
      tokens: { type: 'string' },
      seeds: { type: 'string' },
      out: { type: 'string', default: 'llamapro-sweep' },
      json: { type: 'boolean', default: false },
    },
  })
  if (positionals.length !== 1) throw new UsageError(`expected <config.yaml>, got ${positionals.length} arguments`)
  if (!values.strategies) throw new UsageError('--strategies is required, e.g. --strategies pro:8,last:8,full')
  if (!values.keep)
    throw new UsageError('--keep is required: the text the model should not forget (dataset names or files)')
  const keepStage = values['keep-stage'] ?? 'pt'
  if (keepStage !== 'pt' && keepStage !== 'sft')
    throw new UsageError(`--keep-stage must be pt or sft, got ${JSON.stringify(keepStage)}`)
  const list = (text: string) =>
    text
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
  const interrupt = interruptSignal()
  let bar: ProgressBar | undefined
  const say = (line: string) => {
    bar?.done()
    bar = undefined
    if (!values.json) console.log(line)
  }
  try {
    const result = await runSweep({
      config: positionals[0]!,
      strategies: values.strategies,
      keep: list(values.keep),
      keepStage,
      eval: values.eval ? list(values.eval) : undefined,
      steps: parseInteger(values.steps, '--steps', { min: 1 }),
      tokens: parseInteger(values.tokens, '--tokens', { min: 1 }),
      seeds: parseInteger(values.seeds, '--seeds', { min: 1 }),
      outDir: values.out!,
      signal: interrupt.signal,
      onEvent: (event) => {
        switch (event.type) {
          case 'plan':
            say(
              `sweep: ${event.plan.strategies.map((s) => s.name).join(', ')} × ${event.plan.seeds.length} seed(s) = ` +
                `${event.plan.runs.length} runs` +
                `${event.plan.steps !== null ? ` of ${event.plan.steps} steps` : ''}${event.finished ? `; ${event.finished} already finished` : ''}`,
            )
            break
          case 'expand':
            say(`${event.reused ? 'reusing' : 'expanded'} the model +${event.blocks} blocks: ${event.dir}`)
            break
          case 'before':
            say(
              `before (${event.key}): new domain ${event.before.domain.toFixed(4)}, kept text ` +
                `${event.before.keep.toFixed(4)}`,
            )
            break
          case 'run-skipped':
            say(`${event.strategy} seed ${event.seed}: finished earlier (${event.dir})`)
            break
          case 'run-start':
            say(`[${event.index}/${event.total}] ${event.strategy} seed ${event.seed}: training`)
            break
          case 'step': {
            const eta = event.etaSeconds === null ? '' : `, sweep ETA ${formatDuration(event.etaSeconds)}`
            if (
              !values.json &&
              !process.stderr.isTTY &&
              (event.step === event.totalSteps || event.step % Math.max(1, Math.floor(event.totalSteps / 4)) === 0)
            ) {
              console.log(
                `  ${event.strategy} seed ${event.seed}: step ${event.step}/${event.totalSteps}, loss ` +
                  `${event.loss.toFixed(3)}${eta}`,
              )
            }
            bar ??= new ProgressBar({ total: event.totalSteps, label: `${event.strategy} seed ${event.seed} ` })
            bar.update(event.step, `loss ${event.loss.toFixed(3)}${eta}`)
            break
          }
          case 'run-done': {
            const r = event.record
            say(
              `  done in ${formatDuration(r.seconds)}: new domain ${r.domain.before.toFixed(4)} -> ` +
                `${r.domain.after.toFixed(4)}, ` +
                `kept text ${r.keep.before.toFixed(4)} -> ${r.keep.after.toFixed(4)}`,
            )
            break
          }
          case 'warning':
            bar?.done()
            bar = undefined
            process.stderr.write(`llamapro sweep: warning: ${event.message}\n`)
            break
        }
      },
    })
    bar?.done()
    if (values.json) {
      console.log(JSON.stringify(result.report, null, 2))
    } else {
      console.log('')
      for (const s of result.report.statements) console.log(`- ${s.text}`)
      const shown = (p: string) => (relative(process.cwd(), p).startsWith('..') ? p : relative(process.cwd(), p))
      console.log(`report: ${result.files.map(shown).join(', ')}`)
    }
    if (result.aborted) {
      process.stderr.write(
        `llamapro sweep: interrupted after ${result.runs.length} of ` +
          `${result.report.seeds.length * result.report.strategies.length} runs; the report covers those. Run the ` +
          `same command again to continue.\n`,
      )
      return 130
    }
    return 0
  } finally {
    bar?.done()
    interrupt.dispose()
  }
}
