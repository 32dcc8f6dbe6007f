/**
 * The prompt for the next assistant turn, rendered by the templates training uses (lib/data/template.ts), so
 * a model answers in the format it was fine-tuned on.
 *
 * Integration point: when lib/data exports LLaMA-Factory's named templates as
 * `chatTemplate(name, tokenizer, warn)` with `renderPrompt(messages)` and `stopWords`, `generationPrompt` below
 * is the one function to repoint at it:
 *   const template = chatTemplate(name, tokenizer, warn)
 *   return { parts: template.renderPrompt(messages), stopWords: template.stopWords }
 * Until then it derives the prompt from the training renderer: render the
 * conversation with an empty assistant reply appended; everything before that reply is the prompt (for
 * `default` that ends with "\nAssistant:", for the model's Jinja template it is add_generation_prompt: true).
 */
import { LlamaproError } from '../errors.js'
import type { Message } from '../data/dataset.js'
import { type SegmentPart, conversationRenderer, encodeSegment } from '../data/template.js'
import type { TextTokenizer } from '../data/tokenizer.js'

export interface GenerationPrompt {
  parts: SegmentPart[]
  /** Strings that end a reply in this template (besides the stop token ids). */
  stopWords: string[]
}

export function checkMessages(messages: readonly Message[]): void {
  if (messages.length === 0) throw new LlamaproError('LLAMAPRO_ARG', 'messages: the conversation is empty')
  messages.forEach((m, i) => {
    if (!m || typeof m.content !== 'string' || !['system', 'user', 'assistant'].includes(m.role)) {
      throw new LlamaproError('LLAMAPRO_ARG', `messages[${i}] must be { role: 'system' | 'user' | 'assistant', content: string }`)
    }
    if (m.role === 'system' && i !== 0) throw new LlamaproError('LLAMAPRO_ARG', `messages[${i}]: a system message may only come first`)
  })
  const turns = messages.filter((m) => m.role !== 'system')
  turns.forEach((m, i) => {
    const expected = i % 2 === 0 ? 'user' : 'assistant'
    if (m.role !== expected) throw new LlamaproError('LLAMAPRO_ARG', `messages must alternate user/assistant, but turn ${i} is ${m.role}`)
  })
  if (turns.length === 0 || turns[turns.length - 1]!.role !== 'user') {
    throw new LlamaproError('LLAMAPRO_ARG', 'messages must end with a user message (the assistant answers it)')
  }
}

/** The one place that knows how templates render a generation prompt (see the file comment). */
export function generationPrompt(templateName: string, messages: readonly Message[], tokenizer: TextTokenizer, warn: (message: string) => void): GenerationPrompt {
  checkMessages(messages)
  const render = conversationRenderer(templateName, tokenizer, warn)
  const segments = render([...messages, { role: 'assistant', content: '' }])
  const parts: SegmentPart[] = []
  for (const segment of segments.slice(0, -1)) parts.push(...segment.parts)
  return { parts, stopWords: endOfTurnWords(render) }
}

/**
 * What the template writes after an assistant reply, besides EOS: ChatML's "<|im_end|>", Llama 3's
 * "<|eot_id|>". Generation stops there, as LLaMA-Factory's stop_words make it (`default` ends replies with EOS
 * only, which is a stop token anyway).
 */
function endOfTurnWords(render: (messages: readonly Message[]) => { parts: SegmentPart[] }[]): string[] {
  const probe = 'llamapro-reply-probe'
  const segments = render([{ role: 'user', content: 'q' }, { role: 'assistant', content: probe }])
  const text = (segments[segments.length - 1]?.parts ?? []).map((part) => (typeof part === 'string' ? part : '')).join('')
  const at = text.indexOf(probe)
  if (at < 0) return []
  const suffix = text.slice(at + probe.length).trim()
  return suffix ? [suffix] : []
}

/** The template to use when none is named: the model's own chat template if it has one, else `default`. */
export function defaultTemplateName(tokenizer: TextTokenizer): string {
  return tokenizer.chatTemplate ? 'model' : 'default'
}

export function encodePrompt(prompt: GenerationPrompt, tokenizer: TextTokenizer): number[] {
  return encodeSegment({ parts: prompt.parts, train: false }, tokenizer)
}
