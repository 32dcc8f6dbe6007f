/**
 * A TensorBoard event-file writer, without TensorFlow: scalars as `simple_value`s (what torch's
 * `SummaryWriter.add_scalar` writes; several of one step share one event) and text as TensorBoard's own text
 * summary writes it, readable by TensorBoard (`tensorboard --logdir <dir>`) and its `EventAccumulator`.
 *
 * Cheap on the training path: adding events encodes them into an in-memory buffer (no I/O, no promise); the bytes
 * are appended to the file by one async write every `flushIntervalMs` (2 s), when the buffer passes
 * `maxPendingBytes` (1 MiB), on `flush()` and on `close()`. While one append is in flight, new events go into a
 * second buffer. A failed append (disk full, file size limit) stops the writer; its error, naming the file, is
 * thrown once, by the next `flush()` or `close()`, never as an unhandled rejection. The timer does not keep a
 * process alive: events still pending when a process exits without `close()` are lost, so close in a `finally`.
 *
 * The file, `events.out.tfevents.<unix seconds>.<hostname>` (transformers' and TensorFlow's name), is created by
 * `open()` with its first event (file_version "brain.Event:2"), so TensorBoard lists the run at once. Another
 * writer in the same folder and second gets `...<hostname>.<pid>.<n>` instead of overwriting it (the file is
 * created exclusively).
 *
 * Which trainer_log.jsonl field becomes which tag: see tensorboard-tags.ts.
 */
import { mkdir, open as openFile, type FileHandle } from 'node:fs/promises'
import { hostname as osHostname } from 'node:os'
import { join } from 'node:path'
import { EventRecordBuffer } from './event-records.js'

export { tensorboardScalars } from './tensorboard-tags.js'

export const EVENT_FILE_VERSION = 'brain.Event:2'
export const EVENT_FILE_PREFIX = 'events.out.tfevents.'

export interface TensorBoardWriterOptions {
  /** Host name in the file name (default: os.hostname()). */
  hostname?: string
  /** Unix time in seconds (not milliseconds) of the file's creation: its name and first event (default: now). */
  now?: number
  /** Longest time an added event waits in memory before it is appended to the file (default 2000 ms). */
  flushIntervalMs?: number
  /** Buffered bytes that start an append at once (default 1 MiB). */
  maxPendingBytes?: number
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

/**
 * transformers' default logging_dir, `<output_dir>/runs/<Mon><DD>_<HH>-<MM>-<SS>_<hostname>` in local time
 * (its `default_logdir()`: `datetime.now().strftime("%b%d_%H-%M-%S") + "_" + socket.gethostname()`).
 */
export function defaultLoggingDir(outputDir: string, date = new Date(), hostname = osHostname()): string {
  const two = (n: number) => String(n).padStart(2, '0')
  const day = `${MONTHS[date.getMonth()]}${two(date.getDate())}`
  const time = `${two(date.getHours())}-${two(date.getMinutes())}-${two(date.getSeconds())}`
  return join(outputDir, 'runs', `${day}_${time}_${hostname}`)
}

const nowSeconds = (): number => Date.now() / 1000

export class TensorBoardWriter {
  /** Creates `logDir` (and its parents) and the event file, with its first event already on disk. */
  static async open(logDir: string, options: TensorBoardWriterOptions = {}): Promise<TensorBoardWriter> {
    const host = options.hostname ?? osHostname()
    if (host === '' || /[/\\\0]/.test(host)) {
      throw new Error(`TensorBoard writer: hostname ${JSON.stringify(host)} cannot be part of a file name (no /, \\)`)
    }
    const now = options.now ?? nowSeconds()
    if (!Number.isFinite(now) || now < 0) throw new Error(`TensorBoard writer: now must be Unix seconds, got ${now}`)
    const interval = positiveOption('flushIntervalMs', options.flushIntervalMs ?? 2000)
    const maxPending = positiveOption('maxPendingBytes', options.maxPendingBytes ?? 1 << 20)
    try {
      await mkdir(logDir, { recursive: true })
    } catch (error) {
      const reason = (error as Error).message
      throw new Error(`cannot create the TensorBoard log folder ${logDir}: ${reason}`, { cause: error })
    }
    const { path, handle } = await createEventFile(logDir, `${EVENT_FILE_PREFIX}${Math.floor(now)}.${host}`)
    const writer = new TensorBoardWriter(path, handle, interval, maxPending)
    writer.active.appendFileVersion(EVENT_FILE_VERSION, now)
    await writer.flush().catch(async (error: unknown) => {
      await handle.close().catch(() => undefined)
      throw error
    })
    return writer
  }

  private active = new EventRecordBuffer()
  private spare = new EventRecordBuffer()
  private readonly tagBytes = new Map<string, Uint8Array>()
  /** Reused for every addScalars call: a logged step should not allocate per scalar. */
  private readonly tags: Uint8Array[] = []
  private readonly values: number[] = []
  /** Appends run one after another; each waits for the one before it, so the spare buffer is free to swap in. */
  private appending: Promise<void> = Promise.resolve()
  private timer: NodeJS.Timeout | null = null
  private failure: Error | null = null
  private failureReported = false
  private closed = false

  private constructor(
    /** The event file this writer appends to. */
    readonly path: string,
    private readonly handle: FileHandle,
    private readonly flushIntervalMs: number,
    private readonly maxPendingBytes: number,
  ) {}

  /** One scalar at `step` (a non-negative integer); `wallTime` in Unix seconds, default now. */
  addScalar(tag: string, value: number, step: number, wallTime?: number): void {
    this.addScalars({ [tag]: value }, step, wallTime)
  }

  /** Several scalars at one step, as one event (one record: cheaper than an event per scalar, read the same). */
  addScalars(record: Readonly<Record<string, number>>, step: number, wallTime?: number): void {
    this.checkOpen()
    checkStep(step)
    let count = 0
    for (const tag in record) {
      const value = record[tag]
      if (typeof value !== 'number') {
        throw new TypeError(`TensorBoard scalar ${JSON.stringify(tag)}: value must be a number, got ${typeof value}`)
      }
      this.tags[count] = this.tagUtf8(tag)
      this.values[count++] = value
    }
    if (count === 0 || this.failure) return
    this.active.appendScalars(this.tags, this.values, count, step, wallTime ?? nowSeconds())
    this.afterAppend()
  }

  /** A text summary (TensorBoard's Text tab renders it as markdown), as TensorBoard's own text summary writes it. */
  addText(tag: string, markdown: string, step: number, wallTime?: number): void {
    this.checkOpen()
    checkStep(step)
    if (typeof markdown !== 'string') throw new TypeError(`TensorBoard text ${JSON.stringify(tag)}: must be a string`)
    const tagBytes = this.tagUtf8(tag)
    if (this.failure) return
    this.active.appendText(tagBytes, Buffer.from(markdown, 'utf8'), step, wallTime ?? nowSeconds())
    this.afterAppend()
  }

  /** Appends every event added so far to the file. Throws (once) if an append failed. */
  async flush(): Promise<void> {
    this.cancelTimer()
    await this.startAppend()
    if (this.failure && !this.failureReported) {
      this.failureReported = true
      throw this.failure
    }
  }

  /** Flushes and closes the file; later adds throw. Closing twice is harmless. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    let failure: unknown = null
    await this.flush().catch((error: unknown) => (failure = error))
    await this.handle.close().catch((error: Error) => {
      failure ??= new Error(`cannot close the TensorBoard event file ${this.path}: ${error.message}`, { cause: error })
    })
    if (failure) throw failure
  }

  private checkOpen(): void {
    if (this.closed) throw new Error(`TensorBoard writer for ${this.path} is closed`)
  }

  private tagUtf8(tag: string): Uint8Array {
    let bytes = this.tagBytes.get(tag)
    if (bytes === undefined) {
      if (typeof tag !== 'string' || tag === '') throw new TypeError(`TensorBoard tag must be a non-empty string`)
      bytes = Buffer.from(tag, 'utf8')
      this.tagBytes.set(tag, bytes)
    }
    return bytes
  }

  private afterAppend(): void {
    if (this.active.size >= this.maxPendingBytes) {
      this.cancelTimer()
      void this.startAppend()
    } else if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null
        void this.startAppend()
      }, this.flushIntervalMs)
      // A pending flush must not keep a finished program alive; close() writes what is left.
      this.timer.unref()
    }
  }

  private cancelTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }

  /** Queues an append of what is buffered now; the returned promise never rejects (failures are kept). */
  private startAppend(): Promise<void> {
    this.appending = this.appending.then(() => this.appendBuffered())
    return this.appending
  }

  private async appendBuffered(): Promise<void> {
    if (this.active.size === 0) return
    const full = this.active
    this.active = this.spare
    this.spare = full
    try {
      if (this.failure) return
      const bytes = full.bytes()
      for (let done = 0; done < bytes.length; ) {
        const { bytesWritten } = await this.handle.write(bytes, done, bytes.length - done, null)
        done += bytesWritten
      }
    } catch (error) {
      this.failure = new Error(
        `cannot append to the TensorBoard event file ${this.path}: ${(error as Error).message}`,
        { cause: error },
      )
    } finally {
      full.reset()
    }
  }
}

function positiveOption(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new Error(`TensorBoard writer: ${name} must be > 0, got ${value}`)
  return value
}

function checkStep(step: number): void {
  if (!Number.isSafeInteger(step) || step < 0) {
    throw new RangeError(`TensorBoard step must be a non-negative integer, got ${step}`)
  }
}

/** Creates the file exclusively: `name`, else `name.<pid>.<n>`, so two writers never share (and clobber) a file. */
async function createEventFile(logDir: string, name: string): Promise<{ path: string; handle: FileHandle }> {
  for (let n = 0; ; n++) {
    const path = join(logDir, n === 0 ? name : `${name}.${process.pid}.${n}`)
    try {
      return { path, handle: await openFile(path, 'ax') }
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'EEXIST' && n < 1000) continue
      throw new Error(`cannot create the TensorBoard event file ${path}: ${(error as Error).message}`, { cause: error })
    }
  }
}
