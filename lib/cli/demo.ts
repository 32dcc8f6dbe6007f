import { relative } from 'node:path'
import { runDemo } from '../demo/demo.js'
import { pinBlasKernels } from '../demo/kernels.js'
import { info, setThreads } from '../info.js'
import { setKernelOptions } from '../native/kernel-options.js'
import { formatCount, formatDuration } from '../util/format.js'
import { type Spread, formatSpread } from '../sweep/statistics.js'
import { ProgressBar } from '../util/progress.js'
import { interruptSignal, parseArgs, parseInteger } from './args.js'

export const DEMO_HELP = `llamapro demo [--out llamapro-demo] [--steps 150] [--seeds 3] [--pre-train-steps 400] [--force] [--json]

Shows LLaMA-Pro on a laptop, with nothing downloaded: trains a tiny base model on corpus A (prose), expands it
with identity blocks, trains only the new blocks on corpus B (code), and compares with a full fine-tune of the
base on B, each fine-tune with several data-order seeds. Prints held-out losses on A (to keep) and B (to learn),
mean ± std over the seeds, and says "forgets less" or "learns more" only when the mean ± std intervals do not
overlap (the rule of llamapro sweep); writes demo.png / demo.svg.

  --out DIR               where everything goes (default llamapro-demo, relative to the working directory)
  --steps N               optimizer steps of each fine-tune on corpus B (default 150)
  --seeds K               data-order seeds of each of the two fine-tunes (default 3; 1 states no difference)
  --pre-train-steps N     optimizer steps of the base model's pre-training on corpus A (default 400)
  --force                 replace a non-empty --out
  --json                  print the results as JSON`

/** A loss drop as the loss change it is. */
const negate = (s: Spread): Spread => ({ ...s, mean: -s.mean })

export async function runDemoCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      out: { type: 'string', default: 'llamapro-demo' },
      steps: { type: 'string' },
      seeds: { type: 'string' },
      'pre-train-steps': { type: 'string' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  })
  // Before anything loads LibTorch: OpenBLAS reads its settings once, when it is loaded (see demo/kernels.ts).
  const pin = pinBlasKernels()
  setKernelOptions(pin.kernels)
  const interrupt = interruptSignal()
  let bar: ProgressBar | undefined
  try {
    setThreads(1)
    if (!values.json) {
      const blas = info().blas
      console.log(
        `BLAS: ${blas.config ?? blas.name}, ${info().threads.blas ?? '?'} threads; LibTorch 1 intra-op thread ` +
          `(${[...pin.set, pin.reason].join('; ')})`,
      )
    }
    const result = await runDemo({
      outDir: values.out!,
      force: values.force,
      steps: parseInteger(values.steps, '--steps', { min: 1 }),
      seeds: parseInteger(values.seeds, '--seeds', { min: 1 }),
      preTrainSteps: parseInteger(values['pre-train-steps'], '--pre-train-steps', { min: 1 }),
      signal: interrupt.signal,
      log: values.json
        ? undefined
        : (line) => {
            bar?.done()
            console.log(line)
          },
      onEvent: (stage, event) => {
        if (values.json) return
        if (event.type === 'start') bar = new ProgressBar({ total: event.totalSteps, label: `${stage} ` })
        if (event.type === 'step') bar?.update(event.step, `loss ${event.loss.toFixed(3)}`)
        if (event.type === 'done') bar?.done()
      },
    })
    bar?.done()
    if (values.json) {
      console.log(JSON.stringify(result, null, 2))
      return 0
    }
    const delta = (change: Spread, before: number) =>
      `${(before + change.mean).toFixed(3)} (${formatSpread(change, 3, true)})`
    const n = result.seeds.length
    const rows = [
      ['held-out loss', 'corpus A: prose (keep)', 'corpus B: code (learn)'],
      ['base, trained on A', result.base.a.toFixed(3), result.base.b.toFixed(3)],
      [
        `LLaMA-Pro (${formatCount(result.trainableParams.llamaPro)} params trained)`,
        delta(result.forgot.llamaPro, result.base.a),
        delta(negate(result.learned.llamaPro), result.base.b),
      ],
      [
        `full fine-tune (${formatCount(result.trainableParams.fullFineTune)} params trained)`,
        delta(result.forgot.fullFineTune, result.base.a),
        delta(negate(result.learned.fullFineTune), result.base.b),
      ],
    ]
    const widths = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c]!.length)))
    console.log('')
    console.log(
      n > 1
        ? `mean ± std over ${n} data-order seeds (${result.seeds.join(', ')}) of each fine-tune:`
        : `one seed (${result.seeds[0]}) of each fine-tune:`,
    )
    for (const row of rows)
      console.log(
        row
          .map((cell, c) => cell.padEnd(widths[c]!))
          .join('   ')
          .trimEnd(),
      )
    const share = (100 * result.trainableParams.llamaPro) / result.trainableParams.fullFineTune
    console.log(
      `\nLLaMA-Pro trained ${share.toFixed(0)}% as many parameters as the full fine-tune. By the rule "a difference ` +
        `counts only when the mean ± std intervals do not overlap":`,
    )
    console.log(`- ${result.statements.forgetting.text}`)
    console.log(`- ${result.statements.learning.text}`)
    // Paths as the user gave --out: relative when inside the working directory.
    const shown = (path: string) =>
      relative(process.cwd(), path).startsWith('..') ? path : relative(process.cwd(), path)
    console.log(`plots: ${result.plots.map(shown).join(', ')}   (${formatDuration(result.seconds)})`)
    return 0
  } finally {
    bar?.done()
    interrupt.dispose()
  }
}
