/**
 * Examples to token sequences, as LLaMA-Factory prepares them:
 * - sft: prompt tokens are labelled -100 (not learned), response tokens are learned, and the sequence ends with
 *   EOS; a conversation longer than cutoff_len gets a token budget per turn (LLaMA-Factory's infer_seqlen), so
 *   responses are never cut away entirely. With packing, examples are packed into cutoff_len sequences.
 * - pt: texts are joined with EOS after each and cut into blocks of exactly cutoff_len tokens.
 */
import type { Example } from './dataset.js'
import type { ConversationRenderer } from './template.js'
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

export function encodeConversation(segments: { text: string; train: boolean }[], tokenizer: TextTokenizer, cutoffLen: number): Sequence | undefined {
  const ids: number[] = []
  const labels: number[] = []
  let budget = cutoffLen
  for (let i = 0; i + 1 < segments.length && budget > 0; i += 2) {
    const source = tokenizer.encode(segments[i]!.text)
    let target = tokenizer.encode(segments[i + 1]!.text)
    if (i + 2 >= segments.length && target[target.length - 1] !== tokenizer.eosId) target = [...target, tokenizer.eosId]
    const [sourceLen, targetLen] = inferSeqlen(source.length, target.length, budget)
    ids.push(...source.slice(0, sourceLen), ...target.slice(0, targetLen))
    labels.push(...new Array<number>(sourceLen).fill(IGNORE_INDEX), ...target.slice(0, targetLen))
    budget -= sourceLen + targetLen
  }
  return labels.some((l) => l !== IGNORE_INDEX) ? { ids, labels } : undefined
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
): PreprocessResult {
  if (stage === 'pt') {
    const stream: number[] = []
    for (const example of examples) {
      if (example.kind !== 'text') continue
      stream.push(...tokenizer.encode(example.text), tokenizer.eosId)
    }
    const sequences: Sequence[] = []
    const whole = Math.floor(stream.length / cutoffLen) * cutoffLen
    for (let i = 0; i < whole; i += cutoffLen) {
      const block = stream.slice(i, i + cutoffLen)
      sequences.push({ ids: block, labels: block })
    }
    if (sequences.length === 0 && stream.length > 1) sequences.push({ ids: stream, labels: stream })
    return { sequences, dropped: 0 }
  }
  const sequences: Sequence[] = []
  let dropped = 0
  for (const example of examples) {
    if (example.kind !== 'conversation') continue
    const sequence = encodeConversation(render!(example.messages), tokenizer, cutoffLen)
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
    current.ids.push(...s.ids)
    current.labels.push(...s.labels)
  }
  if (current.ids.length > 0) out.push(current)
  return out
}
