/**
 * Examples to token sequences, as LLaMA-Factory prepares them:
 * - sft: prompt tokens are labelled -100 (not learned), response tokens are learned (ending as the template
 *   says: EOS for `default`, "<|im_end|>\n" for chatml, ...); a conversation longer than cutoff_len gets a token
 *   budget per turn (LLaMA-Factory's infer_seqlen), so responses are never cut away entirely. Templates with
 *   efficient_eos (gemma2, falcon, solar) end the sequence with one learned EOS, and the first token of each later
 *   prompt is labelled EOS (the previous response's end), as LLaMA-Factory's supervised processor does. With
 *   packing, examples are packed into cutoff_len sequences.
 * - pt: each text gets EOS after it. With packing (the default for pt) the texts are joined and cut into blocks
 *   of exactly cutoff_len tokens; without, each text is one sequence, cut at cutoff_len. Where the tokenizer
 *   says add_bos_token, each sequence starts with BOS (a block's first token is replaced by it, as
 *   LLaMA-Factory does).
 *
 * Token lists are appended with loops, never `push(...list)`: a long document would overflow the call stack.
 */
import type { Example } from './dataset.js'
import { type ConversationRenderer, type Segment, encodeSegment } from './template.js'
import type { TextTokenizer } from './tokenizer.js'

export interface Sequence {
  ids: number[]
  labels: number[]
}

export const IGNORE_INDEX = -100

/** LLaMA-Factory's split of a token budget between a prompt and its response. */
export function inferSeqlen(sourceLen: number, targetLen: number, cutoffLen: number): [number, number] {
  let maxTarget: number
  if (targetLen * 2 < cutoffLen) maxTarget = cutoffLen
  else if (sourceLen * 2 < cutoffLen) maxTarget = cutoffLen - sourceLen
  else maxTarget = Math.floor((cutoffLen * targetLen) / (sourceLen + targetLen))
  const newTarget = Math.min(maxTarget, targetLen)
  const maxSource = Math.max(cutoffLen - newTarget, 0)
  return [Math.min(maxSource, sourceLen), newTarget]
}

/** Appends `source[0, count)` to `target`. */
function append(target: number[], source: readonly number[], count = source.length): void {
  for (let i = 0; i < count; i++) target.push(source[i]!)
}

function appendFill(target: number[], value: number, count: number): void {
  for (let i = 0; i < count; i++) target.push(value)
}

type SequenceTokenizer = Pick<TextTokenizer, 'encode' | 'eosId'>

export function encodeConversation(
  segments: readonly Segment[],
  tokenizer: SequenceTokenizer,
  cutoffLen: number,
  options: { efficientEos?: boolean } = {},
): Sequence | undefined {
  const efficientEos = options.efficientEos ?? false
  const ids: number[] = []
  const labels: number[] = []
  let budget = efficientEos ? cutoffLen - 1 : cutoffLen
  let learned = false
  for (let i = 0; i + 1 < segments.length && budget > 0; i += 2) {
    const source = encodeSegment(segments[i]!, tokenizer)
    const target = encodeSegment(segments[i + 1]!, tokenizer)
    const [sourceLen, targetLen] = inferSeqlen(source.length, target.length, budget)
    append(ids, source, sourceLen)
    append(ids, target, targetLen)
    if (efficientEos && i > 0 && sourceLen > 0) {
      labels.push(tokenizer.eosId)
      appendFill(labels, IGNORE_INDEX, sourceLen - 1)
    } else {
      appendFill(labels, IGNORE_INDEX, sourceLen)
    }
    append(labels, target, targetLen)
    learned ||= targetLen > 0
    budget -= sourceLen + targetLen
  }
  if (efficientEos) {
    ids.push(tokenizer.eosId)
    labels.push(tokenizer.eosId)
    learned = true
  }
  return learned ? { ids, labels } : undefined
}

type PretrainTokenizer = SequenceTokenizer & Pick<TextTokenizer, 'bosId' | 'addBosToken'>

/** pt sequences: see the file comment. */
export function encodePretrain(
  texts: readonly string[],
  tokenizer: PretrainTokenizer,
  cutoffLen: number,
  packing: boolean,
): Sequence[] {
  const bos = tokenizer.addBosToken ? tokenizer.bosId : null
  const sequences: Sequence[] = []
  if (!packing) {
    for (const text of texts) {
      const ids: number[] = bos === null ? [] : [bos]
      append(ids, tokenizer.encode(text))
      ids.push(tokenizer.eosId)
      if (ids.length > cutoffLen) ids.length = cutoffLen
      if (ids.length >= 2) sequences.push({ ids, labels: ids.slice() })
    }
    return sequences
  }
  const stream: number[] = []
  for (const text of texts) {
    append(stream, tokenizer.encode(text))
    stream.push(tokenizer.eosId)
  }
  const whole = Math.floor(stream.length / cutoffLen) * cutoffLen
  for (let i = 0; i < whole; i += cutoffLen) {
    const block = stream.slice(i, i + cutoffLen)
    if (bos !== null) block[0] = bos
    sequences.push({ ids: block, labels: block.slice() })
  }
  // Less text than one block: train on what there is rather than on nothing.
  if (sequences.length === 0 && stream.length > 1) {
    if (bos !== null) stream.unshift(bos)
    sequences.push({ ids: stream, labels: stream.slice() })
  }
  return sequences
}

export interface PreprocessResult {
  sequences: Sequence[]
  /** Examples dropped because nothing learnable was left after truncation. */
  dropped: number
}

export function preprocess(
  examples: readonly Example[],
  stage: 'pt' | 'sft',
  tokenizer: TextTokenizer,
  render: ConversationRenderer | undefined,
  cutoffLen: number,
  packing: boolean,
  options: { efficientEos?: boolean } = {},
): PreprocessResult {
  if (stage === 'pt') {
    const texts = examples.flatMap((example) => (example.kind === 'text' ? [example.text] : []))
    return { sequences: encodePretrain(texts, tokenizer, cutoffLen, packing), dropped: 0 }
  }
  const sequences: Sequence[] = []
  let dropped = 0
  for (const example of examples) {
    if (example.kind !== 'conversation') continue
    const sequence = encodeConversation(render!(example.messages), tokenizer, cutoffLen, options)
    if (sequence) sequences.push(sequence)
    else dropped++
  }
  return { sequences: packing ? pack(sequences, cutoffLen) : sequences, dropped }
}

/** Greedy packing in order: each sequence holds as many whole examples as fit in cutoff_len. */
export function pack(sequences: readonly Sequence[], cutoffLen: number): Sequence[] {
  const out: Sequence[] = []
  let current: Sequence = { ids: [], labels: [] }
  for (const s of sequences) {
    if (current.ids.length > 0 && current.ids.length + s.ids.length > cutoffLen) {
      out.push(current)
      current = { ids: [], labels: [] }
    }
    append(current.ids, s.ids)
    append(current.labels, s.labels)
  }
  if (current.ids.length > 0) out.push(current)
  return out
}
