/**
 * The prompt for the next assistant turn, rendered by the templates training uses (lib/data/template.ts:
 * LLaMA-Factory's named templates, or the model's own Jinja), so a model answers in the format it was fine-tuned on.
 * The prompt is encoded with the tokenizer as the template leaves it (replace_eos), and generation stops at the
 * template's stop words and at whatever it writes after a reply (ChatML's "<|im_end|>", Llama 3's "<|eot_id|>").
 */
import { LlamaproError } from '../errors.js'
import type { Message } from '../data/dataset.js'
import { type ChatTemplate, type SegmentPart, chatTemplate, encodeSegment } from '../data/template.js'
import type { TextTokenizer } from '../data/tokenizer.js'

export interface GenerationPrompt {
  parts: SegmentPart[]
  /** Strings that end a reply in this template (besides the stop token ids). */
  stopWords: string[]
  /** The tokenizer as the template leaves it: encode the prompt and the stop words with it. */
  tokenizer: TextTokenizer
}

export function checkMessages(messages: readonly Message[]): void {
  if (messages.length === 0) throw new LlamaproError('LLAMAPRO_ARG', 'messages: the conversation is empty')
  messages.forEach((m, i) => {
    if (!m || typeof m.content !== 'string' || !['system', 'user', 'assistant'].includes(m.role)) {
      throw new LlamaproError(
        'LLAMAPRO_ARG',
        `messages[${i}] must be { role: 'system' | 'user' | 'assistant', content: string }`,
      )
    }
    if (m.role === 'system' && i !== 0)
      throw new LlamaproError('LLAMAPRO_ARG', `messages[${i}]: a system message may only come first`)
  })
  const turns = messages.filter((m) => m.role !== 'system')
  turns.forEach((m, i) => {
    const expected = i % 2 === 0 ? 'user' : 'assistant'
    if (m.role !== expected)
      throw new LlamaproError('LLAMAPRO_ARG', `messages must alternate user/assistant, but turn ${i} is ${m.role}`)
  })
  if (turns.length === 0 || turns[turns.length - 1]!.role !== 'user') {
    throw new LlamaproError('LLAMAPRO_ARG', 'messages must end with a user message (the assistant answers it)')
  }
}

// A chat renders a prompt per turn (and per history trim): build each template once per tokenizer, so the Jinja
// source is parsed once and "using the model's own chat template" is said once.
const templates = new WeakMap<TextTokenizer, Map<string, ChatTemplate>>()

function templateFor(name: string, tokenizer: TextTokenizer, warn: (message: string) => void): ChatTemplate {
  let byName = templates.get(tokenizer)
  if (!byName) templates.set(tokenizer, (byName = new Map()))
  let template = byName.get(name)
  if (!template) byName.set(name, (template = chatTemplate(name, tokenizer, warn)))
  return template
}

/** The one place that knows how templates render a generation prompt (see the file comment). */
export function generationPrompt(
  templateName: string,
  messages: readonly Message[],
  tokenizer: TextTokenizer,
  warn: (message: string) => void,
): GenerationPrompt {
  checkMessages(messages)
  const template = templateFor(templateName, tokenizer, warn)
  const stopWords = new Set([...template.stopWords, ...endOfTurnWords(template.renderConversation)])
  return {
    parts: template.renderPrompt(messages),
    stopWords: [...stopWords].filter((w) => w.length > 0),
    tokenizer: template.tokenizer,
  }
}

/**
 * What the template writes after an assistant reply, besides EOS: ChatML's "<|im_end|>", Llama 3's
 * "<|eot_id|>". Generation stops there, as LLaMA-Factory's stop_words make it (`default` ends replies with EOS
 * only, which is a stop token anyway).
 */
function endOfTurnWords(render: (messages: readonly Message[]) => { parts: SegmentPart[] }[]): string[] {
  const probe = 'llamapro-reply-probe'
  const segments = render([
    { role: 'user', content: 'q' },
    { role: 'assistant', content: probe },
  ])
  const text = (segments[segments.length - 1]?.parts ?? [])
    .map((part) => (typeof part === 'string' ? part : ''))
    .join('')
  const at = text.indexOf(probe)
  if (at < 0) return []
  const suffix = text.slice(at + probe.length).trim()
  return suffix ? [suffix] : []
}

/** The template to use when none is named: the model's own chat template if it has one, else `default`. */
export function defaultTemplateName(tokenizer: TextTokenizer): string {
  return tokenizer.chatTemplate ? 'model' : 'default'
}

export function encodePrompt(prompt: GenerationPrompt): number[] {
  return encodeSegment({ parts: prompt.parts, train: false }, prompt.tokenizer)
}
