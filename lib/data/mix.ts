/**
 * Several datasets into one stream of examples, as LLaMA-Factory 0.9.5's merge_dataset: `concat` reads them one
 * after another; `interleave_under` (datasets' first_exhausted) and `interleave_over` (all_exhausted) draw each
 * next example from a dataset picked with `interleave_probs` (or in turn, without them), stopping when the first
 * dataset runs out (under) or once every dataset has run out at least once, restarting those that did (over).
 * max_samples cuts each dataset first, as LLaMA-Factory does per dataset. The draws use llamapro's seeded
 * generator, not numpy's, so which example comes when differs from a Python run; the proportions are the same.
 */
import { DatasetError } from './dataset.js'
import type { DatasetSource, LocatedExample } from './dataset.js'
import { mulberry32 } from '../util/random.js'

export type MixStrategy = 'concat' | 'interleave_under' | 'interleave_over'
export const MIX_STRATEGIES: readonly MixStrategy[] = ['concat', 'interleave_under', 'interleave_over']

export type OpenStream = (source: DatasetSource, index: number) => AsyncIterable<LocatedExample>

async function* limited(
  stream: AsyncIterable<LocatedExample>,
  maxSamples: number | null,
): AsyncIterable<LocatedExample> {
  if (maxSamples === 0) return
  let n = 0
  for await (const example of stream) {
    yield example
    if (maxSamples !== null && ++n >= maxSamples) return
  }
}

export function checkInterleaveProbs(probs: readonly number[] | null, datasets: number): void {
  if (probs === null) return
  if (probs.length !== datasets)
    throw new DatasetError(
      `interleave_probs has ${probs.length} value(s), and there are ${datasets} dataset(s): give one probability per ` +
        `dataset`,
    )
  if (probs.some((p) => !(p >= 0)))
    throw new DatasetError(`interleave_probs must be numbers ≥ 0, got ${probs.join(', ')}`)
  const sum = probs.reduce((a, b) => a + b, 0)
  if (Math.abs(sum - 1) > 1e-6)
    throw new DatasetError(
      `interleave_probs must add up to 1 (they are probabilities, as numpy's choice needs), got ${probs.join(', ')} ` +
        `= ${sum}`,
    )
}

export async function* mixExamples(
  sources: readonly DatasetSource[],
  open: OpenStream,
  options: { strategy: MixStrategy; probs: readonly number[] | null; seed: number; maxSamples: number | null },
): AsyncIterable<LocatedExample> {
  if (sources.length === 1 || options.strategy === 'concat') {
    for (const [i, source] of sources.entries()) yield* limited(open(source, i), options.maxSamples)
    return
  }
  checkInterleaveProbs(options.probs, sources.length)
  const iterators = sources.map((s, i) => limited(open(s, i), options.maxSamples)[Symbol.asyncIterator]())
  // A dataset that is never drawn (probability 0) cannot run out: it does not hold interleave_over open.
  const exhausted = sources.map((_, i) => options.probs !== null && options.probs[i] === 0)
  const random = mulberry32(options.seed)
  const cumulative = options.probs
    ? options.probs.map((_, i) => options.probs!.slice(0, i + 1).reduce((a, b) => a + b, 0))
    : null
  let turn = 0
  for (;;) {
    let pick: number
    if (cumulative) {
      const r = random()
      pick = cumulative.findIndex((c) => r < c)
      if (pick < 0) pick = cumulative.length - 1
    } else pick = turn++ % sources.length
    let next = await iterators[pick]!.next()
    if (next.done) {
      exhausted[pick] = true
      if (options.strategy === 'interleave_under' || exhausted.every(Boolean)) return
      // all_exhausted: a dataset that ran out starts again (oversampling) until every one has run out once.
      iterators[pick] = limited(open(sources[pick]!, pick), options.maxSamples)[Symbol.asyncIterator]()
      next = await iterators[pick]!.next()
      if (next.done) throw new DatasetError(`dataset "${sources[pick]!.name}" has no examples`)
    }
    yield next.value
  }
}
