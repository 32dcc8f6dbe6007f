/**
 * `preprocessing_num_workers` worker threads, each with its own tokenizer. Chunks are handed out to whichever
 * worker is free and their results come back in submission order, so the store's order is the data's order
 * whatever the number of workers. At most two chunks per worker are in flight, which bounds memory.
 */
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { DatasetError } from '../dataset.js'
import type { LocatedExample } from '../dataset.js'
import type { ChunkResult, EncoderSettings } from './encode-chunk.js'

interface Pending {
  resolve: (result: ChunkResult) => void
  reject: (error: Error) => void
}

export class TokenizePool {
  readonly #workers: Worker[] = []
  readonly #idle: Worker[] = []
  readonly #waiting: { id: number; examples: LocatedExample[] }[] = []
  readonly #pending = new Map<number, Pending>()
  readonly #owner = new Map<number, Worker>()
  #next = 0
  #failure: Error | null = null

  constructor(
    readonly size: number,
    settings: EncoderSettings,
  ) {
    // Built as .js, run from source (tests) as .ts: the worker file has this file's extension.
    const extension = extname(fileURLToPath(import.meta.url))
    const url = new URL(`./tokenize-worker${extension}`, import.meta.url)
    // From source (tests, benches) the worker first registers the TypeScript loader that runs this file, tsx.
    const source =
      extension === '.ts'
        ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return ` +
          `import(${JSON.stringify(url.href)}) })`
        : null
    for (let i = 0; i < size; i++) {
      const worker =
        source === null
          ? new Worker(url, { workerData: settings })
          : new Worker(source, { eval: true, workerData: settings })
      worker.on(
        'message',
        (message: { id: number; result?: ChunkResult; error?: { message: string; name: string; code?: string } }) => {
          const pending = this.#pending.get(message.id)
          this.#pending.delete(message.id)
          this.#owner.delete(message.id)
          this.#release(worker)
          if (!pending) return
          if (message.error) {
            const { code, message: text } = message.error
            const error = new DatasetError(code === 'LLAMAPRO_DATASET' ? text : `tokenizing: ${text}`)
            pending.reject(error)
          } else pending.resolve(message.result!)
        },
      )
      worker.on('error', (error) => this.#fail(new DatasetError(`a tokenizing worker failed: ${error.message}`)))
      worker.on('exit', (code) => {
        if (code !== 0 && !this.#closing) this.#fail(new DatasetError(`a tokenizing worker exited with code ${code}`))
      })
      this.#workers.push(worker)
      this.#idle.push(worker)
    }
  }

  /** Chunks that may be submitted before the oldest result must be taken. */
  get capacity(): number {
    return this.size * 2
  }

  #release(worker: Worker): void {
    const job = this.#waiting.shift()
    if (job) this.#dispatch(worker, job)
    else this.#idle.push(worker)
  }

  #dispatch(worker: Worker, job: { id: number; examples: LocatedExample[] }): void {
    this.#owner.set(job.id, worker)
    worker.postMessage(job)
  }

  #fail(error: Error): void {
    this.#failure ??= error
    for (const pending of this.#pending.values()) pending.reject(this.#failure)
    this.#pending.clear()
  }

  submit(examples: LocatedExample[]): Promise<ChunkResult> {
    if (this.#failure) return Promise.reject(this.#failure)
    const id = this.#next++
    const promise = new Promise<ChunkResult>((resolve, reject) => this.#pending.set(id, { resolve, reject }))
    const worker = this.#idle.pop()
    if (worker) this.#dispatch(worker, { id, examples })
    else this.#waiting.push({ id, examples })
    return promise
  }

  #closing = false
  async close(): Promise<void> {
    this.#closing = true
    await Promise.all(this.#workers.map((w) => w.terminate()))
  }
}
