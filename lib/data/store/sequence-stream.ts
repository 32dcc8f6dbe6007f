/**
 * The tokenized sequences of a mix of datasets, in the data's order: the datasets are read as a stream, mixed,
 * tokenized by `preprocessing_num_workers` worker threads and packed (pt blocks of cutoff_len; sft packing). The
 * token store is written from it (build.ts) and `streaming: true` trains from it directly (streaming.ts). Memory
 * stays bounded whatever the corpus size: the chunks in flight and one packing block.
 */
import { cpus } from 'node:os'
import { DatasetError } from '../dataset.js'
import { type DatasetSource, type LocatedExample, streamExamples } from '../dataset.js'
import { type MixStrategy, mixExamples } from '../mix.js'
import type { EncoderSettings, ChunkResult } from './encode-chunk.js'
import { TokenizePool } from './tokenize-pool.js'

export interface SequenceStreamOptions {
  sources: readonly DatasetSource[]
  settings: EncoderSettings
  workers: number
  /** BOS that starts each packed pt block (tokenizer_config.json's add_bos_token), or null. */
  blockBos: number | null
  mixStrategy: MixStrategy
  interleaveProbs: readonly number[] | null
  seed: number
  maxSamples: number | null
  signal?: AbortSignal
  /** Called after each tokenized chunk with the totals so far. */
  onProgress?: (totals: SequenceStreamTotals) => void
}

export interface SequenceStreamTotals {
  examples: number
  droppedExamples: number
  droppedTokens: number
  /** Bytes of the data files read, counting a file again each time interleave_over restarts it. */
  bytesRead: number
  /** Bytes of all the data files, once. */
  totalBytes: number
  sequences: number
}

/** A sequence as the stream gives it; labels null when they equal the ids (pt). Valid until the next one is taken. */
export interface StreamedSequence {
  ids: Int32Array
  labels: Int32Array | null
}

/** Examples per chunk sent to a worker: big enough to amortise the message, small enough to keep all busy. */
const CHUNK_EXAMPLES = 256
const CHUNK_CHARS = 1 << 20

export const defaultWorkers = (): number => Math.max(1, cpus().length)

/** Number of times the tokenizer ran, over all builds of this process (tests assert reuse with it). */
export const tokenizationCounter = { chunks: 0, builds: 0 }

/** The sequences; `totals` is filled in as they come and is final when the generator returns. */
export async function* tokenizedSequences(
  options: SequenceStreamOptions,
  totals: SequenceStreamTotals = emptyTotals(),
): AsyncGenerator<StreamedSequence> {
  const { settings } = options
  totals.totalBytes = options.sources.reduce((s, x) => s + x.totalBytes, 0)
  const sourceBytes = new Array<number>(options.sources.length).fill(0)
  const restarts = new Array<number>(options.sources.length).fill(0)
  const packedPt = settings.stage === 'pt' && settings.packing
  const bytesRead = () =>
    sourceBytes.reduce((a, b) => a + b, 0) + options.sources.reduce((s, x, i) => s + restarts[i]! * x.totalBytes, 0)
  // The workers are the parallelism: the Rust tokenizer must not also fan each batch out over every core (rayon),
  // which would oversubscribe the machine. A value the user set is kept.
  process.env.TOKENIZERS_PARALLELISM ??= 'false'
  const pool = new TokenizePool(Math.max(1, options.workers), settings)
  // Packing state: one block being filled (pt), or one pack being grown (sft).
  const block = new Int32Array(settings.cutoffLen)
  let fill = 0
  let packIds: number[] = []
  let packLabels: number[] = []

  function* sequencesOf(result: ChunkResult): Generator<StreamedSequence> {
    tokenizationCounter.chunks++
    totals.examples += result.examples
    totals.droppedExamples += result.droppedExamples
    totals.droppedTokens += result.droppedTokens
    totals.bytesRead = bytesRead()
    let at = 0
    for (const length of result.lengths) {
      const ids = result.ids.subarray(at, at + length)
      const labels = result.labels?.subarray(at, at + length) ?? null
      at += length
      if (packedPt) {
        for (let t = 0; t < ids.length; ) {
          const take = Math.min(block.length - fill, ids.length - t)
          block.set(ids.subarray(t, t + take), fill)
          fill += take
          t += take
          if (fill === block.length) {
            if (options.blockBos !== null) block[0] = options.blockBos
            totals.sequences++
            yield { ids: block, labels: null }
            fill = 0
          }
        }
      } else if (settings.packing) {
        if (packIds.length > 0 && packIds.length + length > settings.cutoffLen) {
          totals.sequences++
          yield { ids: Int32Array.from(packIds), labels: Int32Array.from(packLabels) }
          packIds = []
          packLabels = []
        }
        for (let t = 0; t < length; t++) {
          packIds.push(ids[t]!)
          packLabels.push(labels![t]!)
        }
      } else {
        totals.sequences++
        yield { ids, labels }
      }
    }
    options.onProgress?.(totals)
  }

  try {
    const open = (source: DatasetSource, index: number): AsyncIterable<LocatedExample> => {
      if (sourceBytes[index]! > 0) {
        restarts[index]!++
        sourceBytes[index] = 0
      }
      return streamExamples(source, { signal: options.signal, onBytes: (n) => (sourceBytes[index] = n) })
    }
    const queue: Promise<ChunkResult>[] = []
    let chunk: LocatedExample[] = []
    let chars = 0
    const submit = () => {
      const promise = pool.submit(chunk)
      promise.catch(() => undefined)
      queue.push(promise)
      chunk = []
      chars = 0
    }
    for await (const located of mixExamples(options.sources, open, {
      strategy: options.mixStrategy,
      probs: options.interleaveProbs,
      seed: options.seed,
      maxSamples: options.maxSamples,
    })) {
      if (options.signal?.aborted) throw new DatasetError('tokenizing was interrupted')
      chunk.push(located)
      const e = located.example
      chars += e.kind === 'text' ? e.text.length : e.messages.reduce((s, m) => s + m.content.length, 0)
      if (chunk.length >= CHUNK_EXAMPLES || chars >= CHUNK_CHARS) {
        submit()
        if (queue.length >= pool.capacity) yield* sequencesOf(await queue.shift()!)
      }
    }
    if (chunk.length > 0) submit()
    while (queue.length > 0) yield* sequencesOf(await queue.shift()!)
    totals.bytesRead = bytesRead()
    if (packedPt) {
      if (totals.sequences === 0 && fill > 1) {
        // Less text than one block: train on what there is rather than on nothing (as preprocess.ts).
        const ids = Array.from(block.subarray(0, fill))
        if (options.blockBos !== null) ids.unshift(options.blockBos)
        totals.sequences++
        yield { ids: Int32Array.from(ids), labels: null }
      } else totals.droppedTokens += fill
    } else if (packIds.length > 0) {
      totals.sequences++
      yield { ids: Int32Array.from(packIds), labels: Int32Array.from(packLabels) }
    }
  } finally {
    await pool.close()
  }
}

export const emptyTotals = (): SequenceStreamTotals => ({
  examples: 0,
  droppedExamples: 0,
  droppedTokens: 0,
  bytesRead: 0,
  totalBytes: 0,
  sequences: 0,
})

/** The error for data that gave no sequence at all. */
export function noSequencesError(options: SequenceStreamOptions, totals: SequenceStreamTotals): DatasetError {
  return new DatasetError(
    `no training sequences: ${totals.examples} example(s) in ${options.sources.flatMap((s) => s.files).join(', ')} ` +
      `gave none of up to ${options.settings.cutoffLen} tokens` +
      (totals.droppedExamples > 0 ? ` (${totals.droppedExamples} had no response tokens left within cutoff_len)` : ''),
  )
}
