import { loadTrainConfig, parseOverrides, trainKeyHelp } from '../train/config.js'
import type { TrainEvent } from '../train/events.js'
import { describeEvent } from '../train/event-text.js'
import { train } from '../train/trainer.js'
import { UsageError } from '../errors.js'
import { formatDuration } from '../util/format.js'
import { ProgressBar } from '../util/progress.js'
import { interruptSignal, parseInteger } from './args.js'
import { distributedFromEnv } from '../distributed/environment.js'
import { launchLocalRanks } from '../distributed/launcher.js'

/** --nproc-per-node N (torchrun's flag; --nproc_per_node and =N forms too), taken out of the arguments. */
function takeNprocFlag(argv: string[]): { nproc: number | undefined; rest: string[] } {
  const rest: string[] = []
  let nproc: number | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const match = /^--nproc[-_]per[-_]node(?:=(.*))?$/.exec(arg)
    if (!match) {
      rest.push(arg)
      continue
    }
    const value = match[1] ?? argv[++i]
    nproc = parseInteger(value, '--nproc-per-node', { min: 1 })
    if (nproc === undefined) throw new UsageError('--nproc-per-node needs a number of ranks, e.g. --nproc-per-node 2')
  }
  return { nproc, rest }
}

export const TRAIN_HELP = `llamapro train <config.yaml> [--nproc-per-node N] [--key value | key=value ...]

Fine-tunes a model with LLaMA-Factory's YAML keys (freeze tuning, LLaMA-Pro). Keys given after the file override
it. Writes checkpoint-<step>/ folders, trainer_log.jsonl and, at the end, the model to output_dir. Ctrl-C stops
after the current step and saves a checkpoint to resume from (resume_from_checkpoint).

Data-parallel: --nproc-per-node N starts N ranks here (c10d: Gloo on the CPU, NCCL on CUDA); each takes its
share of every global batch (per_device_train_batch_size is per rank). Ranks also start from torchrun's
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), e.g. under torchrun on several nodes.
zero_stage: 1 shards AdamW's state over the ranks (ZeRO stage 1).

Keys:
${trainKeyHelp()}`

export async function runTrain(argv: string[]): Promise<number> {
  const { nproc, rest: args } = takeNprocFlag(argv)
  const [file, ...rest] = args
  if (!file || file.startsWith('-')) throw new UsageError('expected <config.yaml>')
  const config = await loadTrainConfig(file, parseOverrides(rest))
  const env = distributedFromEnv()
  if (nproc !== undefined && env) {
    throw new UsageError(
      `--nproc-per-node ${nproc} starts ranks itself, but this process is already rank ${env.rank} of ` +
        `${env.worldSize} (WORLD_SIZE is set): use one or the other`,
    )
  }
  if (nproc !== undefined && nproc > 1) {
    console.log(`llamapro: starting ${nproc} ranks on this machine (c10d over 127.0.0.1)`)
    return launchLocalRanks({ nproc, args: ['train', ...args] })
  }
  // Rank 0 speaks for the job; the other ranks print only their errors.
  const quiet = env !== null && env.rank !== 0
  const interrupt = interruptSignal()
  let bar: ProgressBar | undefined
  const onEvent = (event: TrainEvent) => {
    if (quiet) return
    if (event.type === 'warning') {
      bar?.done()
      console.error(`warning: ${event.message}`)
      return
    }
    if (event.type === 'start') bar = new ProgressBar({ total: event.totalSteps, label: 'train ' })
    if (event.type === 'step') bar?.update(event.step, `loss ${event.loss.toFixed(3)}`)
    const line = describeEvent(event)
    if (line) {
      bar?.done()
      console.log(line)
    }
  }
  try {
    const result = await train(config, { signal: interrupt.signal, onEvent })
    bar?.done()
    if (result.aborted) {
      console.log(
        `interrupted at step ${result.globalStep}; continue with: llamapro train ${file} ` +
          `resume_from_checkpoint=${result.checkpoints.at(-1)}`,
      )
      return 130
    }
    console.log(
      `done: ${result.globalStep} steps in ${formatDuration(result.seconds)}, mean loss ${result.trainLoss.toFixed(4)}` +
        `${result.evalLoss !== null ? `, eval loss ${result.evalLoss.toFixed(4)}` : ''}, ` +
        `${result.tokensPerSecond.toFixed(0)} tok/s; ` +
        (config.finetuningType === 'lora'
          ? `LoRA adapter (PEFT format) in ${result.outputDir}: llamapro generate <model> --adapter ` +
            `${result.outputDir}, or llamapro merge <model> <out> --adapter ${result.outputDir}`
          : `model in ${result.outputDir}`),
    )
    return 0
  } finally {
    bar?.done()
    interrupt.dispose()
  }
}
