/**
 * Tokenize once, to disk: the tokenized sequences of the datasets (sequence-stream.ts) are written to a token store
 * (format.ts) with a progress bar and the totals at the end. Memory stays bounded whatever the corpus size: the
 * chunks in flight, one packing block, the write buffers.
 */
import type { ProgressStream } from '../../util/progress.js'
import { ProgressBar } from '../../util/progress.js'
import { formatBytes, formatCount, formatDuration } from '../../util/format.js'
import { type StoreManifest, type TokenDtype, bytesPerToken } from './format.js'
import {
  type SequenceStreamOptions,
  emptyTotals,
  noSequencesError,
  tokenizationCounter,
  tokenizedSequences,
} from './sequence-stream.js'
import { StoreWriter } from './writer.js'

export { defaultWorkers, tokenizationCounter } from './sequence-stream.js'

export interface BuildOptions extends Omit<SequenceStreamOptions, 'onProgress'> {
  dtype: TokenDtype
  inputs: Record<string, unknown>
  key: string
  /** One line of progress or totals, for the log. */
  log?: (line: string) => void
  /** Where the progress bar is drawn (stderr when a terminal). */
  progressStream?: ProgressStream
}

export async function buildStore(dir: string, options: BuildOptions): Promise<StoreManifest> {
  const { settings } = options
  const started = performance.now()
  const totals = emptyTotals()
  const packedPt = settings.stage === 'pt' && settings.packing
  const writer = await StoreWriter.create(dir, {
    dtype: options.dtype,
    labelsAreIds: settings.stage === 'pt',
    fixedLength: packedPt ? settings.cutoffLen : null,
    estimateTotalBytes: () => {
      const read = totals.bytesRead
      return read > 0
        ? Math.ceil((writer.bytesWritten / read) * Math.max(totals.totalBytes, read))
        : writer.bytesWritten
    },
  })
  tokenizationCounter.builds++
  const totalBytes = options.sources.reduce((s, x) => s + x.totalBytes, 0)
  const bar = new ProgressBar({
    total: totalBytes,
    format: formatBytes,
    label: 'tokenizing ',
    stream: options.progressStream,
  })
  const onProgress = () => {
    const seconds = Math.max((performance.now() - started) / 1000, 1e-9)
    bar.update(
      Math.min(totals.bytesRead, totalBytes),
      `${formatCount(Math.round(totals.examples / seconds))} ex/s ${formatBytes(totals.bytesRead / seconds)}/s`,
    )
  }
  try {
    for await (const sequence of tokenizedSequences({ ...options, onProgress }, totals)) {
      if (sequence.labels === null) await writer.append(sequence.ids)
      else await writer.append(sequence.ids, sequence.labels)
    }
    if (writer.sequences === 0) throw noSequencesError(options, totals)
    const seconds = (performance.now() - started) / 1000
    const { examples, droppedExamples, droppedTokens, bytesRead } = totals
    const manifest = await writer.commit(
      { examples, droppedExamples, droppedTokens, inputBytes: bytesRead, seconds },
      options.inputs,
      options.key,
    )
    bar.done()
    options.log?.(
      `tokenized ${formatCount(examples)} examples (${formatBytes(bytesRead)}) into ` +
        `${formatCount(manifest.sequences)} sequences, ${formatCount(manifest.tokens)} tokens ` +
        `(${formatCount(manifest.targetTokens)} learned; ${formatCount(droppedTokens)} dropped by ` +
        `cutoff_len${droppedExamples ? `, ${droppedExamples} examples skipped` : ''}) ` +
        `in ${formatDuration(seconds)} with ${Math.max(1, options.workers)} worker(s): ` +
        `${formatBytes(bytesRead / Math.max(seconds, 1e-9))}/s, ` +
        `${formatCount(Math.round(manifest.tokens / Math.max(seconds, 1e-9)))} tokens/s; store ${dir} ` +
        `(${bytesPerToken(manifest.dtype)} bytes a token)`,
    )
    return manifest
  } catch (error) {
    bar.done()
    await writer.abort()
    throw error
  }
}
