/**
 * The renderer of the named templates: LLaMA-Factory's Template._encode / encode_multiturn / encode_oneturn
 * (and Llama2Template's and ReasoningTemplate's variants), over the slot table in table.ts, plus its
 * fix_special_tokens: the changes a template makes to the tokenizer (EOS replaced by the first stop word,
 * stop words made single special tokens).
 */
import { LlamaproError } from '../../errors.js'
import type { Message } from '../dataset.js'
import type { TextTokenizer } from '../tokenizer.js'
import { EOS, type Segment, type SegmentPart } from './parts.js'
import type { Slot, TemplateSpec } from './table.js'

export interface SlotTemplateOptions {
  /** LLaMA-Factory's `default_system` key: replaces the template's default system prompt. */
  defaultSystem?: string | null
  /**
   * LLaMA-Factory's `enable_thinking` (default true): for reasoning templates (qwen3), whether empty thoughts are
   * learned.
   */
  enableThinking?: boolean
}

const DEFAULT_THOUGHT_WORDS = ['<think>\n', '\n</think>\n\n'] as const

/**
 * StringFormatter.apply: in each string element, `{{content}}` replaced once, then (user slots of Template, not of
 * Llama2Template) `{{idx}}` once by the turn number, even when it came in with the content. Function replacers:
 * `$&` in a message stays literal.
 */
function apply(slot: Slot, content: string, idx?: string): SegmentPart[] {
  return slot.map((element) => {
    if (typeof element !== 'string') return element
    const text = element.replace('{{content}}', () => content)
    return idx === undefined ? text : text.replace('{{idx}}', () => idx)
  })
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** The pieces of LLaMA-Factory's Template a renderer needs, with its defaults filled in. */
export interface ResolvedSpec {
  user: Slot
  assistant: Slot
  system: Slot
  prefix: Slot
  defaultSystem: string
  stopWords: readonly string[]
  efficientEos: boolean
  replaceEos: boolean
  systemInUser: boolean
  reasoning: boolean
  thoughtWords: readonly [string, string]
}

export function resolveSpec(spec: TemplateSpec): ResolvedSpec {
  const efficientEos = spec.efficientEos ?? false
  return {
    user: spec.user ?? ['{{content}}'],
    assistant: spec.assistant ?? (efficientEos ? ['{{content}}'] : ['{{content}}', EOS]),
    system: spec.system ?? ['{{content}}'],
    prefix: spec.prefix ?? [],
    defaultSystem: spec.defaultSystem ?? '',
    stopWords: spec.stopWords ?? [],
    efficientEos,
    replaceEos: spec.replaceEos ?? false,
    systemInUser: spec.systemInUser ?? false,
    reasoning: spec.reasoning ?? false,
    thoughtWords: spec.thoughtWords ?? DEFAULT_THOUGHT_WORDS,
  }
}

/** The slot renderer: segments for training and the prompt for generation. */
export class SlotRenderer {
  private readonly thoughtPattern: RegExp
  private readonly emptyThought: string

  constructor(
    readonly spec: ResolvedSpec,
    private readonly options: SlotTemplateOptions = {},
  ) {
    const [open, close] = spec.thoughtWords
    this.thoughtPattern = new RegExp(`${escapeRegExp(open)}([\\s\\S]*?)${escapeRegExp(close)}`, 'g')
    this.emptyThought = open + close
  }

  private get enableThinking(): boolean {
    return this.options.enableThinking ?? true
  }

  /** Template._encode: one list of parts per message; the first also holds the prefix and the system prompt. */
  private encodeMessages(messages: readonly Message[]): { turns: Message[]; parts: SegmentPart[][] } {
    const given = messages[0]?.role === 'system' ? messages[0].content : ''
    // `system or default_system`: an empty system message falls back to the default too.
    const system = given || (this.options.defaultSystem ?? this.spec.defaultSystem)
    const turns = messages.filter((m) => m.role !== 'system')
    const parts = turns.map((message, i) => {
      const elements: SegmentPart[] = []
      let content = message.content
      if (i === 0) {
        elements.push(...this.spec.prefix)
        if (system) {
          const systemParts = apply(this.spec.system, system)
          if (!this.spec.systemInUser) elements.push(...systemParts)
          else {
            const first = systemParts[0]
            if (typeof first !== 'string')
              throw new LlamaproError(
                'LLAMAPRO_TEMPLATE',
                'a system slot that goes into the user message must start with text',
              )
            content = first + content
          }
        }
      }
      if (message.role === 'user')
        elements.push(...apply(this.spec.user, content, this.spec.systemInUser ? undefined : String(Math.floor(i / 2))))
      else elements.push(...apply(this.spec.assistant, content))
      return elements
    })
    return { turns, parts }
  }

  private hasThought(content: string): boolean {
    const [open, close] = this.spec.thoughtWords
    return content.includes(open.trim()) || content.includes(close.trim())
  }

  /** ReasoningTemplate.remove_thought: every thought removed, then leading newlines. */
  private removeThought(content: string): string {
    return content.replace(this.thoughtPattern, '').replace(/^\n+/, '')
  }

  /** encode_multiturn: (prompt, response) segment pairs. */
  renderConversation(messages: readonly Message[]): Segment[] {
    let input = messages
    if (this.spec.reasoning && !this.enableThinking) {
      input = messages.map((m) => (m.role === 'assistant' ? { ...m, content: this.removeThought(m.content) } : m))
    }
    const { turns, parts } = this.encodeMessages(input)
    const segments: Segment[] = []
    for (let i = 0; i + 1 < parts.length; i += 2) {
      const prompt = parts[i]!
      const response = parts[i + 1]!
      if (this.spec.reasoning && !this.hasThought(turns[i + 1]!.content)) {
        if (this.enableThinking) response.unshift(this.emptyThought)
        else prompt.push(this.emptyThought)
      }
      segments.push({ parts: prompt, train: false }, { parts: response, train: true })
    }
    return segments
  }

  /** encode_oneturn's prompt for `messages` + an empty assistant turn: what the model sees before it answers. */
  renderPrompt(messages: readonly Message[]): SegmentPart[] {
    const last = messages[messages.length - 1]
    if (last?.role !== 'user') {
      throw new LlamaproError(
        'LLAMAPRO_TEMPLATE',
        `a prompt for the next answer needs messages that end with a user turn (the last is ${last?.role ?? 'missing'})`,
      )
    }
    let input = messages
    // ReasoningTemplate.encode_oneturn drops the thoughts of earlier answers (preserve_thinking is false).
    if (this.spec.reasoning)
      input = messages.map((m) => (m.role === 'assistant' ? { ...m, content: this.removeThought(m.content) } : m))
    const prompt = this.encodeMessages(input).parts.flat()
    if (this.spec.reasoning && !this.enableThinking) prompt.push(this.emptyThought)
    return prompt
  }
}

/** Parts of the tokenizer a template changes, and the id of a token text. */
function tokenIdOf(tokenizer: TextTokenizer, token: string): number | undefined {
  const id = tokenizer.tokenId?.(token)
  if (id !== undefined) return id
  const ids = tokenizer.encode(token)
  return ids.length === 1 ? ids[0] : undefined
}

/** Every string element of the template's slots: a stop word written in one must be a token of the tokenizer. */
function slotText(spec: ResolvedSpec): string {
  return [spec.user, spec.assistant, spec.system, spec.prefix]
    .flat()
    .filter((e): e is string => typeof e === 'string')
    .join('\n')
}

/**
 * Template.fix_special_tokens: with replace_eos the first stop word becomes EOS; the other stop words become
 * special tokens, so text containing them encodes each as one id, as the Hugging Face tokenizer does after
 * add_special_tokens. A word the tokenizer lacks would be a new token in LLaMA-Factory (resize_vocab): refused
 * where the template's slots or EOS need it, skipped where it is only a generation stop word.
 */
export function fixTokenizer(name: string, spec: ResolvedSpec, tokenizer: TextTokenizer): TextTokenizer {
  const slots = slotText(spec)
  const words = new Map<string, number>()
  let { eosId, eosToken } = tokenizer
  spec.stopWords.forEach((word, i) => {
    const id = tokenIdOf(tokenizer, word)
    const becomesEos = spec.replaceEos && i === 0
    if (id === undefined) {
      if (becomesEos || slots.includes(word)) {
        throw new LlamaproError(
          'LLAMAPRO_TEMPLATE',
          `template "${name}" needs the token ${JSON.stringify(word)} ` +
            `(${becomesEos ? 'its end-of-turn token, which becomes EOS' : 'written in its slots'}), ` +
            "and the model's tokenizer has no such token. LLaMA-Factory would add it as a new token (resize_vocab), " +
            'which llamapro ' +
            "does not do: use the template of the model's family (or template: model for the model's own chat template)",
        )
      }
      return
    }
    words.set(word, id)
    if (becomesEos) {
      eosId = id
      eosToken = word
    }
  })
  const split = [...words].filter(([word, id]) => {
    const ids = tokenizer.encode(word)
    return ids.length !== 1 || ids[0] !== id
  })
  if (eosId === tokenizer.eosId && split.length === 0) return tokenizer
  let encode = tokenizer.encode
  if (split.length > 0) {
    const ids = new Map(split)
    const pattern = new RegExp(
      `(${split
        .map(([word]) => word)
        .sort((a, b) => b.length - a.length)
        .map(escapeRegExp)
        .join('|')})`,
    )
    const base = tokenizer.encode
    encode = (text) => {
      const out: number[] = []
      text.split(pattern).forEach((piece, i) => {
        if (i % 2 === 1) out.push(ids.get(piece)!)
        else if (piece.length > 0) for (const id of base(piece)) out.push(id)
      })
      return out
    }
  }
  return { ...tokenizer, eosId, eosToken, encode }
}
