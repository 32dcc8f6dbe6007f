/**
 * A one-line progress bar on a terminal (stderr), redrawn at most a few times a second; silent when stderr is
 * not a terminal, so logs and pipes stay clean.
 */
import { formatDuration } from './format.js'

export interface ProgressBarOptions {
  total: number
  /** Formats a quantity of work (bytes, steps) for display. */
  format?: (n: number) => string
  stream?: ProgressStream
  label?: string
}

/** What a progress bar writes to: a terminal stream such as process.stderr (declared without Node's types). */
export interface ProgressStream {
  isTTY?: boolean
  columns?: number
  write(text: string): unknown
}

export class ProgressBar {
  readonly #total: number
  readonly #format: (n: number) => string
  readonly #stream: ProgressStream
  readonly #label: string
  readonly #enabled: boolean
  readonly #started = performance.now()
  #lastDraw = 0
  #drawn = false

  constructor(options: ProgressBarOptions) {
    this.#total = Math.max(options.total, 1)
    this.#format = options.format ?? String
    this.#stream = options.stream ?? process.stderr
    this.#label = options.label ?? ''
    this.#enabled = Boolean(this.#stream.isTTY) && process.env.CI === undefined
  }

  update(done: number, detail = ''): void {
    if (!this.#enabled) return
    const now = performance.now()
    if (now - this.#lastDraw < 100 && done < this.#total) return
    this.#lastDraw = now
    const fraction = Math.min(done / this.#total, 1)
    const elapsed = (now - this.#started) / 1000
    const eta = fraction > 0 ? (elapsed * (1 - fraction)) / fraction : Infinity
    const width = 24
    const filled = Math.round(fraction * width)
    const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`
    const text =
      `${this.#label}${bar} ${(fraction * 100).toFixed(0).padStart(3)}% ` +
      `${this.#format(done)}/${this.#format(this.#total)}` +
      ` ${detail} eta ${formatDuration(eta)}`
    const columns = this.#stream.columns ?? 100
    this.#stream.write(`\r${text.slice(0, columns - 1).padEnd(Math.min(columns - 1, text.length))}`)
    this.#drawn = true
  }

  done(): void {
    if (this.#drawn) this.#stream.write('\n')
    this.#drawn = false
  }
}
