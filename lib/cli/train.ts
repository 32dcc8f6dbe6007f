import { loadTrainConfig, parseOverrides, trainKeyHelp } from '../train/config.js'
import type { TrainEvent } from '../train/events.js'
import { train } from '../train/trainer.js'
import { UsageError } from '../errors.js'
import { formatCount, formatDuration } from '../util/format.js'
import { ProgressBar } from '../util/progress.js'
import { interruptSignal } from './args.js'

export const TRAIN_HELP = `llamapro train <config.yaml> [--key value | key=value ...]

Fine-tunes a model with LLaMA-Factory's YAML keys (freeze tuning, LLaMA-Pro). Keys given after the file override
it. Writes checkpoint-<step>/ folders, trainer_log.jsonl and, at the end, the model to output_dir. Ctrl-C stops
after the current step and saves a checkpoint to resume from (resume_from_checkpoint).

Keys:
${trainKeyHelp()}`

function describe(event: TrainEvent): string | undefined {
  switch (event.type) {
    case 'start':
      return (
        `training ${formatCount(event.trainableParams)} of ${formatCount(event.totalParams)} parameters ` +
        `(layers ${event.trainableLayerIds.join(', ') || 'none'}) on ${event.trainSequences} sequences` +
        `${event.evalSequences ? ` (+${event.evalSequences} for evaluation)` : ''}, ${event.totalSteps} steps` +
        (event.resumedFrom ? `, resuming at step ${event.startStep} from ${event.resumedFrom}` : '') +
        `; device ${event.device} (${event.deviceReason})`
      )
    case 'log': {
      const r = event.record
      if (r.eval_loss !== undefined) return `step ${r.current_steps}/${r.total_steps}  eval_loss ${r.eval_loss.toFixed(4)}`
      return `step ${r.current_steps}/${r.total_steps}  loss ${r.loss?.toFixed(4)}  lr ${r.lr?.toExponential(2)}  grad_norm ${r.grad_norm?.toFixed(3)}  ${r.tokens_per_second?.toFixed(0)} tok/s  ${r.elapsed_time}`
    }
    case 'checkpoint':
      return `saved ${event.path}`
    default:
      return undefined
  }
}

export async function runTrain(argv: string[]): Promise<number> {
  const [file, ...rest] = argv
  if (!file || file.startsWith('-')) throw new UsageError('expected <config.yaml>')
  const config = await loadTrainConfig(file, parseOverrides(rest))
  const interrupt = interruptSignal()
  let bar: ProgressBar | undefined
  const onEvent = (event: TrainEvent) => {
    if (event.type === 'warning') {
      bar?.done()
      console.error(`warning: ${event.message}`)
      return
    }
    if (event.type === 'start') bar = new ProgressBar({ total: event.totalSteps, label: 'train ' })
    if (event.type === 'step') bar?.update(event.step, `loss ${event.loss.toFixed(3)}`)
    const line = describe(event)
    if (line) {
      bar?.done()
      console.log(line)
    }
  }
  try {
    const result = await train(config, { signal: interrupt.signal, onEvent })
    bar?.done()
    if (result.aborted) {
      console.log(`interrupted at step ${result.globalStep}; continue with: llamapro train ${file} resume_from_checkpoint=${result.checkpoints.at(-1)}`)
      return 130
    }
    console.log(
      `done: ${result.globalStep} steps in ${formatDuration(result.seconds)}, mean loss ${result.trainLoss.toFixed(4)}` +
        `${result.evalLoss !== null ? `, eval loss ${result.evalLoss.toFixed(4)}` : ''}, ${result.tokensPerSecond.toFixed(0)} tok/s; model in ${result.outputDir}`,
    )
    return 0
  } finally {
    bar?.done()
    interrupt.dispose()
  }
}
