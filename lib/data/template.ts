/**
 * Chat templates turn a conversation into segments, each marked as prompt (masked from the loss) or response
 * (learned). `default` and `empty` are LLaMA-Factory's templates of those names, slot for slot: `default` is
 * "Human: {user}<eos>\nAssistant:" / "{assistant}<eos>\n" / "System: {system}<eos>\n", so every response
 * ends with EOS; `empty` joins the turns with nothing around them and adds no EOS. `model` renders the model's
 * own Jinja chat_template, whose turns end with the model's own end-of-turn tokens (any other name does too,
 * when the model has one, since LLaMA-Factory's named templates mirror the models' own).
 */
import { Template } from '@huggingface/jinja'
import { LlamaproError } from '../errors.js'
import type { Message } from './dataset.js'
import type { TextTokenizer } from './tokenizer.js'

/** The tokenizer's end-of-sequence token, as a token id rather than text that might tokenize differently. */
export const EOS = Object.freeze({ special: 'eos' as const })

/** Text (tokenized piece by piece, as LLaMA-Factory tokenizes slots) or the EOS token. */
export type SegmentPart = string | typeof EOS

export interface Segment {
  parts: SegmentPart[]
  /** True for assistant responses: the tokens that are learned. */
  train: boolean
}

export type ConversationRenderer = (messages: readonly Message[]) => Segment[]

export const BUILTIN_TEMPLATES = ['default', 'empty', 'model'] as const

/** Token ids of a segment. */
export function encodeSegment(segment: Segment, tokenizer: Pick<TextTokenizer, 'encode' | 'eosId'>): number[] {
  const ids: number[] = []
  for (const part of segment.parts) {
    if (typeof part !== 'string') ids.push(tokenizer.eosId)
    else if (part.length > 0) for (const id of tokenizer.encode(part)) ids.push(id)
  }
  return ids
}

/** A segment as text, with EOS shown as `eosToken` (for messages and tests). */
export function segmentText(segment: Segment, eosToken: string): string {
  return segment.parts.map((part) => (typeof part === 'string' ? part : eosToken)).join('')
}

interface SlotTemplate {
  system: (content: string) => SegmentPart[]
  user: (content: string) => SegmentPart[]
  assistant: (content: string) => SegmentPart[]
}

const DEFAULT_SLOTS: SlotTemplate = {
  system: (content) => [`System: ${content}`, EOS, '\n'],
  user: (content) => [`Human: ${content}`, EOS, '\nAssistant:'],
  assistant: (content) => [content, EOS, '\n'],
}

const EMPTY_SLOTS: SlotTemplate = {
  system: (content) => [content],
  user: (content) => [content],
  assistant: (content) => [content],
}

/** LLaMA-Factory's Template._encode: the system prompt joins the first user turn; each assistant turn is learned. */
function slotRenderer(slots: SlotTemplate): ConversationRenderer {
  return (messages) => {
    const system = messages[0]?.role === 'system' ? messages[0].content : null
    const segments: Segment[] = []
    let prompt: SegmentPart[] = system ? slots.system(system) : []
    for (const turn of messages) {
      if (turn.role === 'system') continue
      if (turn.role === 'user') prompt.push(...slots.user(turn.content))
      else {
        segments.push({ parts: prompt, train: false }, { parts: slots.assistant(turn.content), train: true })
        prompt = []
      }
    }
    return segments
  }
}

function jinjaRenderer(source: string, tokenizer: TextTokenizer): ConversationRenderer {
  let template: Template
  try {
    template = new Template(source)
  } catch (error) {
    throw new LlamaproError('LLAMAPRO_TEMPLATE', `the model's chat_template does not parse: ${(error as Error).message}`)
  }
  const render = (messages: readonly Message[], addGenerationPrompt: boolean) =>
    template.render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: tokenizer.bosToken ?? '',
      eos_token: tokenizer.eosToken,
    })
  return (messages) => {
    const segments: Segment[] = []
    let done = ''
    messages.forEach((message, i) => {
      if (message.role !== 'assistant') return
      const prompt = render(messages.slice(0, i), true)
      const full = render(messages.slice(0, i + 1), false)
      if (!prompt.startsWith(done) || !full.startsWith(prompt)) {
        throw new LlamaproError(
          'LLAMAPRO_TEMPLATE',
          "the model's chat_template does not render a conversation turn by turn (a prefix changes when a turn is added), " +
            'so prompt and response tokens cannot be told apart; use template: default',
        )
      }
      segments.push({ parts: [prompt.slice(done.length)], train: false }, { parts: [full.slice(prompt.length)], train: true })
      done = full
    })
    return segments
  }
}

/** The renderer for a template name; `where` names the config key in errors. */
export function conversationRenderer(name: string, tokenizer: TextTokenizer, warn: (message: string) => void): ConversationRenderer {
  if (name === 'default') return slotRenderer(DEFAULT_SLOTS)
  if (name === 'empty') return slotRenderer(EMPTY_SLOTS)
  if (tokenizer.chatTemplate) {
    if (name !== 'model') warn(`template "${name}": using the model's own chat_template from tokenizer_config.json`)
    return jinjaRenderer(tokenizer.chatTemplate, tokenizer)
  }
  throw new LlamaproError(
    'LLAMAPRO_TEMPLATE',
    `template "${name}" needs the model's chat_template, and its tokenizer_config.json has none (valid here: default, empty)`,
  )
}
