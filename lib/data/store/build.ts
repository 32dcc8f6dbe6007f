/**
 * Tokenize once, to disk: the datasets are read as a stream, mixed, tokenized by `preprocessing_num_workers`
 * worker threads, packed, and written to a token store (format.ts) with a progress bar and the totals at the end.
 * Memory stays bounded whatever the corpus size: the chunks in flight, one packing block, the write buffers.
 */
import type { ProgressStream } from '../../util/progress.js'
import { cpus } from 'node:os'
import { DatasetError } from '../dataset.js'
import { type DatasetSource, type LocatedExample, streamExamples } from '../dataset.js'
import { type MixStrategy, mixExamples } from '../mix.js'
import { ProgressBar } from '../../util/progress.js'
import { formatBytes, formatCount, formatDuration } from '../../util/format.js'
import type { EncoderSettings, ChunkResult } from './encode-chunk.js'
import { type StoreManifest, type TokenDtype, bytesPerToken } from './format.js'
import { TokenizePool } from './tokenize-pool.js'
import { StoreWriter } from './writer.js'

export interface BuildOptions {
  sources: readonly DatasetSource[]
  settings: EncoderSettings
  workers: number
  dtype: TokenDtype
  /** BOS that starts each packed pt block (tokenizer_config.json's add_bos_token), or null. */
  blockBos: number | null
  mixStrategy: MixStrategy
  interleaveProbs: readonly number[] | null
  seed: number
  maxSamples: number | null
  inputs: Record<string, unknown>
  key: string
  signal?: AbortSignal
  /** One line of progress or totals, for the log. */
  log?: (line: string) => void
  /** Where the progress bar is drawn (stderr when a terminal). */
  progressStream?: ProgressStream
}

/** Examples per chunk sent to a worker: big enough to amortise the message, small enough to keep all busy. */
const CHUNK_EXAMPLES = 256
const CHUNK_CHARS = 1 << 20

export const defaultWorkers = (): number => Math.max(1, cpus().length)

/** Number of times the tokenizer ran, over all builds of this process (tests assert reuse with it). */
export const tokenizationCounter = { chunks: 0, builds: 0 }

export async function buildStore(dir: string, options: BuildOptions): Promise<StoreManifest> {
  const { settings } = options
  const started = performance.now()
  const totalBytes = options.sources.reduce((s, x) => s + x.totalBytes, 0)
  const sourceBytes = new Array<number>(options.sources.length).fill(0)
  const restarts = new Array<number>(options.sources.length).fill(0)
  const packedPt = settings.stage === 'pt' && settings.packing
  let examples = 0
  let droppedExamples = 0
  let droppedTokens = 0
  const bytesRead = () => sourceBytes.reduce((a, b) => a + b, 0) + options.sources.reduce((s, x, i) => s + restarts[i]! * x.totalBytes, 0)
  const writer = await StoreWriter.create(dir, {
    dtype: options.dtype,
    labelsAreIds: settings.stage === 'pt',
    fixedLength: packedPt ? settings.cutoffLen : null,
    estimateTotalBytes: () => {
      const read = bytesRead()
      return read > 0 ? Math.ceil((writer.bytesWritten / read) * Math.max(totalBytes, read)) : writer.bytesWritten
    },
  })
  tokenizationCounter.builds++
  const bar = new ProgressBar({ total: totalBytes, format: formatBytes, label: 'tokenizing ', stream: options.progressStream })
  // The workers are the parallelism: the Rust tokenizer must not also fan each batch out over every core (rayon),
  // which would oversubscribe the machine. A value the user set is kept.
  process.env.TOKENIZERS_PARALLELISM ??= 'false'
  const pool = new TokenizePool(Math.max(1, options.workers), settings)
  // Packing state: one block being filled (pt), or one pack being grown (sft).
  const block = new Int32Array(settings.cutoffLen)
  let fill = 0
  let packIds: number[] = []
  let packLabels: number[] = []

  const consume = async (result: ChunkResult) => {
    tokenizationCounter.chunks++
    examples += result.examples
    droppedExamples += result.droppedExamples
    droppedTokens += result.droppedTokens
    let at = 0
    for (const length of result.lengths) {
      const ids = result.ids.subarray(at, at + length)
      const labels = result.labels?.subarray(at, at + length)
      at += length
      if (packedPt) {
        for (let t = 0; t < ids.length; ) {
          const take = Math.min(block.length - fill, ids.length - t)
          block.set(ids.subarray(t, t + take), fill)
          fill += take
          t += take
          if (fill === block.length) {
            if (options.blockBos !== null) block[0] = options.blockBos
            await writer.append(block)
            fill = 0
          }
        }
      } else if (settings.packing) {
        if (packIds.length > 0 && packIds.length + length > settings.cutoffLen) {
          await writer.append(packIds, packLabels)
          packIds = []
          packLabels = []
        }
        for (let t = 0; t < length; t++) {
          packIds.push(ids[t]!)
          packLabels.push(labels![t]!)
        }
      } else await writer.append(ids, labels)
    }
    const seconds = (performance.now() - started) / 1000
    bar.update(Math.min(bytesRead(), totalBytes), `${formatCount(Math.round(examples / Math.max(seconds, 1e-9)))} ex/s ${formatBytes(bytesRead() / Math.max(seconds, 1e-9))}/s`)
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
    queue.forEach((p) => p.catch(() => undefined))
    let chunk: LocatedExample[] = []
    let chars = 0
    const submit = async () => {
      const promise = pool.submit(chunk)
      promise.catch(() => undefined)
      queue.push(promise)
      chunk = []
      chars = 0
      if (queue.length >= pool.capacity) await consume(await queue.shift()!)
    }
    for await (const located of mixExamples(options.sources, open, { strategy: options.mixStrategy, probs: options.interleaveProbs, seed: options.seed, maxSamples: options.maxSamples })) {
      if (options.signal?.aborted) throw new DatasetError('tokenizing was interrupted')
      chunk.push(located)
      const e = located.example
      chars += e.kind === 'text' ? e.text.length : e.messages.reduce((s, m) => s + m.content.length, 0)
      if (chunk.length >= CHUNK_EXAMPLES || chars >= CHUNK_CHARS) await submit()
    }
    if (chunk.length > 0) await submit()
    while (queue.length > 0) await consume(await queue.shift()!)
    if (packedPt) {
      if (writer.sequences === 0 && fill > 1) {
        // Less text than one block: train on what there is rather than on nothing (as preprocess.ts).
        const ids = Array.from(block.subarray(0, fill))
        if (options.blockBos !== null) ids.unshift(options.blockBos)
        await writer.append(ids)
      } else droppedTokens += fill
    } else if (packIds.length > 0) await writer.append(packIds, packLabels)
    if (writer.sequences === 0) {
      throw new DatasetError(
        `no training sequences: ${examples} example(s) in ${options.sources.flatMap((s) => s.files).join(', ')} gave none of up to ${settings.cutoffLen} tokens` +
          (droppedExamples > 0 ? ` (${droppedExamples} had no response tokens left within cutoff_len)` : ''),
      )
    }
    const seconds = (performance.now() - started) / 1000
    const manifest = await writer.commit({ examples, droppedExamples, droppedTokens, inputBytes: bytesRead(), seconds }, options.inputs, options.key)
    bar.done()
    options.log?.(
      `tokenized ${formatCount(examples)} examples (${formatBytes(bytesRead())}) into ${formatCount(manifest.sequences)} sequences, ${formatCount(manifest.tokens)} tokens ` +
        `(${formatCount(manifest.targetTokens)} learned; ${formatCount(droppedTokens)} dropped by cutoff_len${droppedExamples ? `, ${droppedExamples} examples skipped` : ''}) ` +
        `in ${formatDuration(seconds)} with ${pool.size} worker(s): ${formatBytes(bytesRead() / Math.max(seconds, 1e-9))}/s, ` +
        `${formatCount(Math.round(manifest.tokens / Math.max(seconds, 1e-9)))} tokens/s; store ${dir} (${bytesPerToken(manifest.dtype)} bytes a token)`,
    )
    return manifest
  } catch (error) {
    bar.done()
    await writer.abort()
    throw error
  } finally {
    await pool.close()
  }
}
