/**
 * `streaming: true`, LLaMA-Factory's streaming mode: no preprocessing pass and no token store. The datasets are
 * tokenized while training runs (the same readers, workers and packing as the store: sequence-stream.ts), shuffled
 * through a buffer of `buffer_size` sequences as HF `IterableDataset.shuffle(buffer_size, seed)` does, and cut into
 * batches. The first step starts after one buffer, not after the whole corpus; an epoch is one pass over the data
 * (the next pass reshuffles with seed + epoch, as `set_epoch` does), and `max_steps` bounds the run.
 * `val_size` (a count) holds out the first sequences of the shuffled stream, as LLaMA-Factory's take/skip does.
 * Every rank streams the same order and takes its own batches, so W ranks tokenize W times.
 * Memory: the shuffle buffer (buffer_size × cutoff_len × 4 bytes, twice for sft labels) and the chunks in flight.
 */
import { type Batch, collate } from './batches.js'
import {
  type SequenceStreamOptions,
  type StreamedSequence,
  emptyTotals,
  noSequencesError,
  tokenizedSequences,
} from './store/sequence-stream.js'
import { arraySource, type SequenceSource } from './store/reader.js'
import { type TokenDataOptions, sequenceStreams } from './store/token-data.js'
import { mulberry32 } from '../util/random.js'

interface OwnedSequence {
  ids: Int32Array
  labels: Int32Array
}

/** A copy the consumer may keep (the stream reuses its pt block). Labels are materialised for collate. */
function own(sequence: StreamedSequence): OwnedSequence {
  const ids = sequence.ids.slice()
  return { ids, labels: sequence.labels === null ? ids : sequence.labels.slice() }
}

/**
 * HF datasets' BufferShuffledExamplesIterable: fill a buffer of `size`; then each new item takes the place of a
 * random one, which is yielded; at the end the rest of the buffer is shuffled and yielded.
 */
export async function* shuffleBuffer<T>(items: AsyncIterable<T>, size: number, seed: number): AsyncGenerator<T> {
  const random = mulberry32(seed)
  const buffer: T[] = []
  for await (const item of items) {
    if (buffer.length === size) {
      const i = Math.floor(random() * size)
      yield buffer[i]!
      buffer[i] = item
    } else buffer.push(item)
  }
  for (let i = buffer.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[buffer[i], buffer[j]] = [buffer[j]!, buffer[i]!]
  }
  yield* buffer
}

export interface StreamingOptions {
  stream: SequenceStreamOptions
  bufferSize: number
  /** Sequences held out for evaluation (an integer, as LLaMA-Factory requires with streaming); 0 for none. */
  valSize: number
  batchSize: number
  seed: number
  padId: number
  rank: number
  worldSize: number
}

interface TokenCounts {
  targetTokens: number
  tokens: number
}

/**
 * One rank's batches of a streamed run: rank r's index-th batch is global batch index·W + r (accelerate's
 * round-robin, as RankSchedule), and batches are taken in order — a resumed run streams past the ones it trained on.
 */
export class StreamSchedule {
  /** An epoch has no known end: the stream starts its next pass itself. */
  readonly batchesPerEpoch = Number.POSITIVE_INFINITY
  #pass = 0
  #sequences: AsyncGenerator<OwnedSequence> | null = null
  #group: { index: number; batches: Batch[] } | null = null

  private constructor(
    private readonly options: StreamingOptions,
    readonly evalSource: SequenceSource,
    /** eval_on_each_dataset: each eval dataset's sequences with its name. */
    readonly evalEach: { name: string; source: SequenceSource }[] | null,
  ) {}

  /** Opens the stream; with val_size, reads (and keeps) the held-out sequences first. */
  static async open(
    options: StreamingOptions,
    evalSequences: OwnedSequence[] | null,
    evalEach: { name: string; sequences: OwnedSequence[] }[] | null = null,
  ): Promise<StreamSchedule> {
    let held = evalSequences
    if (held === null) {
      held = []
      if (options.valSize > 0) {
        for await (const sequence of shuffleBuffer(
          StreamSchedule.#onePass(options),
          options.bufferSize,
          options.seed,
        )) {
          held.push(sequence)
          if (held.length === options.valSize) break
        }
      }
    }
    const source = (sequences: OwnedSequence[]) =>
      arraySource(sequences.map((s) => ({ ids: Array.from(s.ids), labels: Array.from(s.labels) })))
    return new StreamSchedule(
      options,
      source(held),
      evalEach?.map((e) => ({ name: e.name, source: source(e.sequences) })) ?? null,
    )
  }

  /** One pass over the data, unshuffled. */
  static async *#onePass(options: StreamingOptions): AsyncGenerator<OwnedSequence> {
    const totals = emptyTotals()
    for await (const sequence of tokenizedSequences(options.stream, totals)) yield own(sequence)
    if (totals.sequences === 0) throw noSequencesError(options.stream, totals)
  }

  /** The training sequences, pass after pass: each pass shuffled with seed + pass, the held-out ones skipped. */
  async *#training(): AsyncGenerator<OwnedSequence> {
    for (;;) {
      let skipped = 0
      let trained = 0
      // No abort signal here: an interrupted run stops between steps, and saves, when the batch in hand is done.
      const pass = StreamSchedule.#onePass({ ...this.options, stream: { ...this.options.stream, signal: undefined } })
      for await (const sequence of shuffleBuffer(pass, this.options.bufferSize, this.options.seed + this.#pass)) {
        if (skipped < this.options.valSize) {
          skipped++
          continue
        }
        trained++
        yield sequence
      }
      if (trained === 0) {
        throw noSequencesError(this.options.stream, { ...emptyTotals(), sequences: skipped })
      }
      this.#pass++
    }
  }

  async #nextBatch(): Promise<Batch> {
    this.#sequences ??= this.#training()
    const rows: OwnedSequence[] = []
    while (rows.length < this.options.batchSize) {
      const next = await this.#sequences.next()
      if (next.done) break
      rows.push(next.value)
    }
    return collate(rows, this.options.padId)
  }

  /** The W global batches of round `index`, read from the stream (skipping earlier rounds on a resume). */
  async #round(index: number): Promise<Batch[]> {
    const current = this.#group?.index ?? -1
    if (index < current)
      throw new Error(`a streamed run reads its batches in order: batch ${index} was asked for after ${current}`)
    if (index === current) return this.#group!.batches
    for (let round = current + 1; round <= index; round++) {
      const batches: Batch[] = []
      for (let r = 0; r < this.options.worldSize; r++) batches.push(await this.#nextBatch())
      this.#group = { index: round, batches }
    }
    return this.#group!.batches
  }

  /** This rank's index-th batch and the token counts of every rank's batch of that round. */
  async take(_epoch: number, index: number): Promise<{ batch: Batch; across: TokenCounts }> {
    const batches = await this.#round(index)
    const across = { targetTokens: 0, tokens: 0 }
    for (const b of batches) {
      across.targetTokens += b.targetTokens
      across.tokens += b.tokens
    }
    return { batch: batches[this.options.rank]!, across }
  }

  /** Ends the stream (its tokenizing workers stop). */
  async close(): Promise<void> {
    await this.#sequences?.return(undefined)
  }
}

/** Every sequence of a (small) evaluation dataset, in memory: eval_dataset under streaming. */
async function streamedEvalSequences(stream: SequenceStreamOptions): Promise<OwnedSequence[]> {
  const out: OwnedSequence[] = []
  for await (const sequence of tokenizedSequences(stream)) out.push(own(sequence))
  return out
}

/** The training stream of a run's data keys, with its eval_dataset (read into memory) or val_size held out. */
export async function openStreaming(
  options: TokenDataOptions,
  streaming: Omit<StreamingOptions, 'stream'>,
): Promise<StreamSchedule> {
  const streams = await sequenceStreams(options)
  if (streams.evalEach) {
    const each = []
    for (const { name, stream } of streams.evalEach) each.push({ name, sequences: await streamedEvalSequences(stream) })
    return StreamSchedule.open(
      { ...streaming, stream: streams.train },
      each.flatMap((e) => e.sequences),
      each,
    )
  }
  const evalSequences = streams.eval ? await streamedEvalSequences(streams.eval) : null
  return StreamSchedule.open({ ...streaming, stream: streams.train }, evalSequences)
}
