/**
 * A training event as the line a person reads: printed by `llamapro train` and written to running_log.txt, so
 * that the terminal and LlamaBoard's log box say the same.
 */
import { describeKernelOptions } from '../native/kernel-options.js'
import { formatBytes, formatCount } from '../util/format.js'
import type { LogRecord, TrainEvent } from './events.js'

/** The evaluation losses of a log line (eval_loss, eval_<name>_loss), by key. */
export function evalLosses(record: LogRecord): [string, number][] {
  return Object.entries(record).filter(
    (e): e is [string, number] => /^eval_(.+_)?loss$/.test(e[0]) && typeof e[1] === 'number',
  )
}

export function describeEvent(event: TrainEvent): string | undefined {
  switch (event.type) {
    case 'start':
      return (
        `training ${formatCount(event.trainableParams)} of ${formatCount(event.totalParams)} parameters ` +
        `(layers ${event.trainableLayerIds.join(', ') || 'none'}) on ${event.trainSequences ?? 'streamed'} sequences` +
        `${event.evalSequences ? ` (+${event.evalSequences} for evaluation)` : ''}, ${event.totalSteps} steps` +
        (event.resumedFrom ? `, resuming at step ${event.startStep} from ${event.resumedFrom}` : '') +
        `; device ${event.device} (${event.deviceReason})` +
        (event.kernels ? `\nkernels: ${describeKernelOptions(event.kernels)}` : '') +
        (event.worldSize && event.worldSize > 1
          ? `\ndata parallel over ${event.worldSize} ranks: ${formatBytes(event.allReduceBytes ?? 0)} of gradients ` +
            `all-reduced per step ` +
            `(full fine-tuning would all-reduce ${formatBytes(event.fullFineTuneAllReduceBytes ?? 0)})` +
            (event.zeroStage === 1 ? `; ZeRO stage 1: each rank keeps 1/${event.worldSize} of the AdamW state` : '')
          : '')
      )
    case 'log': {
      const r = event.record
      const evals = evalLosses(r)
      if (evals.length > 0)
        return `step ${r.current_steps}/${r.total_steps}  ${evals.map(([k, v]) => `${k} ${v.toFixed(4)}`).join('  ')}`
      return (
        `step ${r.current_steps}/${r.total_steps}  loss ${r.loss?.toFixed(4)}  lr ${r.lr?.toExponential(2)}  ` +
        `grad_norm ${r.grad_norm?.toFixed(3)}  ${r.tokens_per_second?.toFixed(0)} tok/s  ${r.elapsed_time}`
      )
    }
    case 'checkpoint':
      return `saved ${event.path}`
    case 'data':
      return event.message
    case 'report':
      return event.message
    default:
      return undefined
  }
}
