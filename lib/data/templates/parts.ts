/**
 * What a chat template produces: segments of text and special-token markers, each segment marked as prompt
 * (masked from the loss) or response (learned). Text parts are tokenized one by one, never joined, because
 * LLaMA-Factory tokenizes each slot element on its own and the token boundaries between them change the ids.
 */
import type { TextTokenizer } from '../tokenizer.js'

/** The tokenizer's end-of-sequence token (LLaMA-Factory's `{"eos_token"}` slot), as an id, not as text. */
export const EOS = Object.freeze({ special: 'eos' as const })
/** The tokenizer's beginning-of-sequence token (`{"bos_token"}`); nothing when the tokenizer has none. */
export const BOS = Object.freeze({ special: 'bos' as const })

/** Text (tokenized on its own, as LLaMA-Factory tokenizes slots), or the EOS / BOS token. */
export type SegmentPart = string | typeof EOS | typeof BOS

export interface Segment {
  parts: SegmentPart[]
  /** True for assistant responses: the tokens that are learned. */
  train: boolean
}

export type ConversationRenderer = (messages: readonly import('../dataset.js').Message[]) => Segment[]

export type SegmentTokenizer = Pick<TextTokenizer, 'encode' | 'eosId'> & Partial<Pick<TextTokenizer, 'bosId'>>

/** Token ids of segment parts. Give it the template's tokenizer (ChatTemplate.tokenizer): its EOS may be replaced. */
export function encodeParts(parts: readonly SegmentPart[], tokenizer: SegmentTokenizer): number[] {
  const ids: number[] = []
  for (const part of parts) {
    if (typeof part === 'string') {
      if (part.length > 0) for (const id of tokenizer.encode(part)) ids.push(id)
    } else if (part === EOS || part.special === 'eos') {
      ids.push(tokenizer.eosId)
    } else if (tokenizer.bosId !== undefined && tokenizer.bosId !== null) {
      ids.push(tokenizer.bosId)
    }
  }
  return ids
}

/** Token ids of a segment. */
export function encodeSegment(segment: Segment, tokenizer: SegmentTokenizer): number[] {
  return encodeParts(segment.parts, tokenizer)
}

/** Parts as text, with EOS and BOS shown as `eosToken` and `bosToken` (for messages and tests). */
export function partsText(parts: readonly SegmentPart[], eosToken: string, bosToken = '<bos>'): string {
  return parts.map((part) => (typeof part === 'string' ? part : part.special === 'eos' ? eosToken : bosToken)).join('')
}

/** A segment as text, with EOS shown as `eosToken`. */
export function segmentText(segment: Segment, eosToken: string, bosToken = '<bos>'): string {
  return partsText(segment.parts, eosToken, bosToken)
}
