/**
 * One training output folder as the board sees it: its trainer_log.jsonl read incrementally, the small files
 * beside it (llamapro_run.json, training_args.yaml, the results) re-read only when their size or time changes,
 * and its status inferred from what is there. Older runs lack most files: whatever is present is shown.
 */
import { hostname } from 'node:os'
import { open, readFile, realpath, stat } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { JsonLinesTail } from './log-tail.js'
import { SeriesBuffer, recordPoints } from './series.js'
import type { Point, RunDetail, RunStatus, RunSummary } from './wire.js'
import { isInside } from './paths.js'

export const RUN_LOG = 'trainer_log.jsonl'
const CRASHED = 'it crashed or was killed'
const TEXT_LOG = 'running_log.txt'
/** As LlamaBoard: the end of running_log.txt, not all of it. */
const TEXT_LOG_TAIL_BYTES = 20_000
const SMALL_FILE_LIMIT = 256_000

type LogRecordObject = Record<string, unknown>

interface CachedFile {
  key: string
  text: string | null
}

const asRecord = (text: string | null): Record<string, unknown> | null => {
  if (text === null) return null
  try {
    const value: unknown = JSON.parse(text)
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null
  } catch {
    return null
  }
}

const num = (value: unknown): number | null => (typeof value === 'number' && Number.isFinite(value) ? value : null)
const str = (value: unknown): string | null => (typeof value === 'string' ? value : null)

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export class RunFolder {
  private readonly tail: JsonLinesTail
  private readonly series = new Map<string, SeriesBuffer>()
  private readonly files = new Map<string, CachedFile>()
  private lastRecord: Record<string, unknown> | null = null
  private lastTraining: Record<string, unknown> | null = null
  private lastProgress: Record<string, unknown> | null = null
  private readonly lastEval: Record<string, number> = {}
  private lastThroughput: number | null = null
  private lines = 0
  /** elapsed_seconds of the first and last record, to tell how often the run logs. */
  private firstSeconds: number | null = null
  private lastSeconds: number | null = null

  private reading: Promise<void> = Promise.resolve()

  /**
   * @param dir the run folder's real path (resolved, symlinks followed)
   * @param onAppend told of every batch of new lines, whoever's refresh read them; `from` is the number of lines
   *   before them (0 after a reset, when the file was replaced and `records` are all of it)
   */
  constructor(
    readonly id: string,
    readonly dir: string,
    readonly name = basename(dir),
    private readonly onAppend?: (run: RunFolder, records: LogRecordObject[], from: number, reset: boolean) => void,
  ) {
    this.tail = new JsonLinesTail(join(dir, RUN_LOG))
  }

  /** Reads what was appended since the last call. Calls are queued: two never read the same bytes. */
  refresh(): Promise<void> {
    // A file removed between its stat and its read is absent until the next refresh: the queue goes on.
    this.reading = this.reading
      .then(async () => {
        if (!(await this.contained(RUN_LOG))) return
        const { records, reset } = await this.tail.poll()
        if (reset) this.clear()
        const from = this.lines
        for (const record of records) this.add(record)
        if (records.length || reset) this.onAppend?.(this, records, from, reset)
      })
      .catch(() => undefined)
    return this.reading
  }

  private clear(): void {
    this.series.clear()
    this.lastRecord = this.lastTraining = this.lastProgress = null
    for (const key of Object.keys(this.lastEval)) delete this.lastEval[key]
    this.lastThroughput = this.firstSeconds = this.lastSeconds = null
    this.lines = 0
  }

  private add(record: Record<string, unknown>): void {
    this.lines++
    this.lastRecord = record
    if (typeof record.current_steps === 'number') this.lastProgress = record
    if (typeof record.loss === 'number') this.lastTraining = record
    const seconds = num(record.elapsed_seconds)
    if (seconds !== null) {
      this.firstSeconds ??= seconds
      this.lastSeconds = seconds
    }
    for (const [name, value] of recordPoints(record)) {
      let buffer = this.series.get(name)
      if (!buffer) this.series.set(name, (buffer = new SeriesBuffer()))
      buffer.push(record.current_steps as number, value)
      if (name.startsWith('eval/')) this.lastEval[name.slice(5)] = value
      if (name === 'throughput') this.lastThroughput = value
    }
  }

  /** A file of the run folder, unless it is a link that leads out of it. */
  private async contained(name: string): Promise<boolean> {
    try {
      return isInside(await realpath(join(this.dir, name)), this.dir)
    } catch {
      return false
    }
  }

  /** A small file's text, re-read only when its size or time changed; null when absent or leading out. */
  private async small(name: string, tailBytes?: number): Promise<string | null> {
    const path = join(this.dir, name)
    let info
    try {
      info = await stat(path)
    } catch {
      this.files.delete(name)
      return null
    }
    const key = `${info.ino}:${info.size}:${info.mtimeMs}`
    const cached = this.files.get(name)
    if (cached?.key === key) return cached.text
    let text: string | null = null
    if (info.isFile() && (await this.contained(name))) {
      if (tailBytes !== undefined && info.size > tailBytes) {
        const file = await open(path, 'r')
        try {
          const buffer = Buffer.alloc(tailBytes)
          const { bytesRead } = await file.read(buffer, 0, tailBytes, info.size - tailBytes)
          const chunk = buffer.toString('utf8', 0, bytesRead)
          text = chunk.slice(chunk.indexOf('\n') + 1) // from the first whole line
        } finally {
          await file.close()
        }
      } else if (info.size <= SMALL_FILE_LIMIT || tailBytes !== undefined) {
        text = await readFile(path, 'utf8')
      }
    }
    this.files.set(name, { key, text })
    return text
  }

  private async fileTime(name: string): Promise<number | null> {
    try {
      return (await stat(join(this.dir, name))).mtimeMs
    } catch {
      return null
    }
  }

  private async status(meta: Record<string, unknown> | null): Promise<{ status: RunStatus; statusReason: string }> {
    const logTime = this.tail.mtimeMs || null
    const finishedAt = await this.fileTime('all_results.json')
    const interruptedAt = await this.fileTime('interrupted_results.json')
    // A results file older than the log's last write belongs to an earlier run that this one resumed.
    const current = (at: number | null) => at !== null && (logTime === null || at >= logTime - 2000)
    if (current(finishedAt) && (!current(interruptedAt) || finishedAt! >= interruptedAt!)) {
      return { status: 'finished', statusReason: 'all_results.json was written at the end of the run' }
    }
    if (current(interruptedAt)) {
      const statusReason = 'interrupted_results.json: the run was stopped by a signal and saved a checkpoint'
      return { status: 'interrupted', statusReason }
    }
    const pid = num(meta?.pid)
    if (pid !== null && str(meta?.hostname) === hostname()) {
      return processAlive(pid)
        ? { status: 'running', statusReason: `process ${pid} on this host is alive` }
        : { status: 'stopped', statusReason: `process ${pid} on this host has ended without its results: ${CRASHED}` }
    }
    if (logTime === null) return { status: 'stopped', statusReason: `no ${RUN_LOG} yet` }
    // Another host's run, or an older one without llamapro_run.json: judge by how recently the log grew.
    const logged = this.firstSeconds !== null && this.lastSeconds !== null && this.lines > 1
    const perLine = logged ? (this.lastSeconds! - this.firstSeconds!) / (this.lines - 1) : 0
    const quiet = (Date.now() - logTime) / 1000
    const patience = Math.max(120, 5 * perLine)
    if (quiet < patience) return { status: 'running', statusReason: `the log grew ${Math.round(quiet)} s ago` }
    const minutes = Math.round(quiet / 60)
    return { status: 'stopped', statusReason: `no results file, and the log has not changed for ${minutes} min` }
  }

  async summary(): Promise<RunSummary> {
    const meta = asRecord(await this.small('llamapro_run.json'))
    const { status, statusReason } = await this.status(meta)
    const p = this.lastProgress
    const t = this.lastTraining
    return {
      id: this.id,
      name: this.name,
      path: this.dir,
      status,
      statusReason,
      progress: {
        current_steps: num(p?.current_steps),
        total_steps: num(p?.total_steps) ?? num(meta?.total_steps),
        percentage: num(p?.percentage),
        elapsed_time: str(p?.elapsed_time),
        remaining_time: str(p?.remaining_time),
      },
      last: {
        step: num(t?.current_steps),
        loss: num(t?.loss),
        lr: num(t?.lr ?? t?.learning_rate),
        grad_norm: num(t?.grad_norm),
        throughput: this.lastThroughput,
        eval: { ...this.lastEval },
      },
      lines: this.lines,
      skippedLines: this.tail.skipped,
      updatedAt: this.tail.mtimeMs || null,
    }
  }

  async detail(maxPoints?: number): Promise<RunDetail> {
    const summary = await this.summary()
    const series: Record<string, Point[]> = {}
    const pointCounts: Record<string, number> = {}
    for (const [name, buffer] of this.series) {
      series[name] = buffer.drawn(maxPoints)
      pointCounts[name] = buffer.length
    }
    return {
      ...summary,
      lastRecord: this.lastRecord,
      meta: asRecord(await this.small('llamapro_run.json')),
      results: {
        all: asRecord(await this.small('all_results.json')),
        interrupted: asRecord(await this.small('interrupted_results.json')),
        eval: asRecord(await this.small('eval_results.json')),
      },
      config: await this.small('training_args.yaml'),
      logTail: await this.small(TEXT_LOG, TEXT_LOG_TAIL_BYTES),
      series,
      pointCounts,
    }
  }
}
