/**
 * What a run writes for the people and tools that watch it, beside the model: trainer_log.jsonl (LLaMA-Factory's
 * LogCallback fields, one JSON line per log), running_log.txt (the readable log, as LLaMA-Factory's LoggerHandler
 * writes it for LlamaBoard), training_args.yaml (the configuration as given), llamapro_run.json (what the board
 * needs to know: the layers that train, which are new blocks, the eval sets) and the reporters of report_to.
 * Only the process that writes outputs (rank 0) opens one. Appends are queued in order and never wait on a step;
 * a failed write surfaces at the next awaited log line or at close, naming the file.
 */
import { appendFile, mkdir, writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { VERSION } from '../version.js'
import type { LogRecord, TrainEvent } from './events.js'
import { describeEvent } from './event-text.js'

export const TRAINER_LOG_FILE = 'trainer_log.jsonl'
export const RUNNING_LOG_FILE = 'running_log.txt'
export const TRAINING_ARGS_FILE = 'training_args.yaml'
export const RUN_INFO_FILE = 'llamapro_run.json'

/** llamapro_run.json: written when training starts. */
export interface RunInfo {
  created_by: string
  started_at: string
  hostname: string
  pid: number
  stage: string
  finetuning_type: string
  model_name_or_path: string
  output_dir: string
  total_steps: number
  num_layers: number
  trainable_layer_ids: number[]
  /** The new blocks of a LLaMA-Pro model (its llamapro_expansion.json); [] when the model was not expanded. */
  expanded_layer_ids: number[]
  /** eval_on_each_dataset: the eval datasets' names, as their losses are logged (eval_<name>_loss); else []. */
  eval_datasets: string[]
  world_size: number
  device: string
  /** The TensorBoard folder (report_to: tensorboard); null without. */
  logging_dir: string | null
}

/** A reporter of report_to: receives every log line; closed when the run ends. */
export interface Reporter {
  log(record: LogRecord): void
  close(): Promise<void>
}

/** Python's `{:2.4e}`: the exponent has at least two digits (1.0000e-04), as LLaMA-Factory prints learning rates. */
export const pythonExponential = (value: number, digits: number): string =>
  value.toExponential(digits).replace(/e([+-])(\d)$/, 'e$10$2')

/**
 * LogCallback's running_log.txt line for a training log: `{'loss': 1.2345, 'learning_rate': 1.0000e-04, 'epoch':
 * 0.50}`.
 */
export function llamaFactoryLogLine(record: LogRecord): string | undefined {
  if (record.loss === undefined || record.lr === undefined) return undefined
  let text =
    `'loss': ${record.loss.toFixed(4)}, 'learning_rate': ${pythonExponential(record.lr, 4)}, 'epoch': ` +
    `${record.epoch.toFixed(2)}`
  if (record.throughput) text += `, 'throughput': ${record.throughput.toFixed(2)}`
  return `{${text}}`
}

const timestamp = (date: Date): string => {
  const p = (n: number) => String(n).padStart(2, '0')
  return (
    `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())} ` +
    `${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}`
  )
}

export class RunLog {
  #queue: Promise<void> = Promise.resolve()
  #error: Error | null = null

  private constructor(
    readonly dir: string,
    /** What llamapro_run.json says of the run. */
    readonly info: RunInfo,
    private readonly reporters: Reporter[],
  ) {}

  /**
   * Opens the run's log files in `dir`: a new run starts them empty, a resumed one appends. training_args.yaml and
   * llamapro_run.json are written at once, so a watcher knows the run from its first second.
   */
  static async open(
    dir: string,
    options: {
      resumed: boolean
      given: Record<string, unknown>
      info: Omit<RunInfo, 'created_by' | 'started_at' | 'hostname' | 'pid'>
      reporters?: Reporter[]
    },
  ): Promise<RunLog> {
    await mkdir(dir, { recursive: true })
    if (!options.resumed) {
      await writeFile(join(dir, TRAINER_LOG_FILE), '')
      await writeFile(join(dir, RUNNING_LOG_FILE), '')
    }
    await writeFile(join(dir, TRAINING_ARGS_FILE), stringify(options.given))
    const info: RunInfo = {
      created_by: `llamapro ${VERSION}`,
      started_at: new Date().toISOString(),
      hostname: hostname(),
      pid: process.pid,
      ...options.info,
    }
    await writeFile(join(dir, RUN_INFO_FILE), `${JSON.stringify(info, null, 2)}\n`)
    return new RunLog(dir, info, options.reporters ?? [])
  }

  #append(file: string, text: string): void {
    const path = join(this.dir, file)
    this.#queue = this.#queue.then(() =>
      appendFile(path, text).catch((error: Error) => {
        this.#error ??= new Error(`cannot write ${path}: ${error.message}`)
      }),
    )
  }

  /** A line of running_log.txt, in LLaMA-Factory's format: `[INFO|2026-01-01 12:00:00] llamapro >> message`. */
  line(message: string, level: 'INFO' | 'WARNING' | 'ERROR' = 'INFO'): void {
    const stamp = `[${level}|${timestamp(new Date())}] llamapro >> `
    this.#append(
      RUNNING_LOG_FILE,
      `${message
        .split('\n')
        .map((l) => stamp + l)
        .join('\n')}\n`,
    )
  }

  /** Every event the trainer emits: its readable line goes to running_log.txt. */
  event(event: TrainEvent): void {
    const text =
      event.type === 'log'
        ? (llamaFactoryLogLine(event.record) ?? describeEvent(event))
        : event.type === 'warning'
          ? event.message
          : describeEvent(event)
    if (text !== undefined) this.line(text, event.type === 'warning' ? 'WARNING' : 'INFO')
  }

  /** One trainer_log.jsonl line, handed to every reporter too; resolves once it is on disk. */
  async record(record: LogRecord): Promise<void> {
    this.#append(TRAINER_LOG_FILE, `${JSON.stringify(record)}\n`)
    for (const reporter of this.reporters) reporter.log(record)
    await this.flush()
  }

  async flush(): Promise<void> {
    await this.#queue
    if (this.#error) throw this.#error
  }

  /** Flushes and closes the reporters; a second call does nothing. */
  async close(): Promise<void> {
    const reporters = this.reporters.splice(0)
    try {
      await this.flush()
    } finally {
      for (const reporter of reporters) await reporter.close()
    }
  }
}
