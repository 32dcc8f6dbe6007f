/**
 * Chat templates turn a conversation into segments, each marked as prompt (masked from the loss) or response
 * (learned). Every name but `model` is LLaMA-Factory 0.9.5's template of that name, slot for slot (the table is
 * templates/table.ts, the renderer templates/render.ts): its slots, default system prompt, BOS/EOS elements,
 * stop words, efficient_eos and replace_eos, which changes the tokenizer's EOS. `model` renders the model's own
 * Jinja chat template (chat_template.jinja, or tokenizer_config.json's chat_template). Any other name is an error.
 */
import { Template } from '@huggingface/jinja'
import { LlamaproError } from '../errors.js'
import type { Message } from './dataset.js'
import type { ConversationRenderer, Segment, SegmentPart } from './templates/parts.js'
import { SlotRenderer, type SlotTemplateOptions, fixTokenizer, resolveSpec } from './templates/render.js'
import { TEMPLATES } from './templates/table.js'
import type { TextTokenizer } from './tokenizer.js'

export { BOS, EOS, encodeParts, encodeSegment, partsText, segmentText } from './templates/parts.js'
export type { ConversationRenderer, Segment, SegmentPart, SegmentTokenizer } from './templates/parts.js'
export type { SlotTemplateOptions as TemplateOptions } from './templates/render.js'

export interface ChatTemplate {
  name: string
  /** segments for training, as conversationRenderer returns them: (prompt, response) pairs */
  renderConversation: ConversationRenderer
  /** the prompt for the NEXT assistant turn (messages end with a user turn): what generation feeds the model */
  renderPrompt(messages: readonly Message[]): SegmentPart[]
  /** extra stop strings / token texts for generation (the template's stop_words and its EOS) */
  stopWords: string[]
  /**
   * The tokenizer as the template leaves it (LLaMA-Factory's fix_special_tokens): with replace_eos its EOS is the
   * template's end-of-turn token, and stop words encode as single tokens. Encode this template's segments with it.
   */
  tokenizer: TextTokenizer
  /** LLaMA-Factory's efficient_eos: responses carry no EOS; one EOS ends the sequence (see encodeConversation). */
  efficientEos: boolean
}

/** Every template name `template:` accepts: LLaMA-Factory's names, then `model`. */
export const TEMPLATE_NAMES: readonly string[] = Object.freeze([...Object.keys(TEMPLATES), 'model'])

function unknownTemplate(name: string): LlamaproError {
  return new LlamaproError('LLAMAPRO_TEMPLATE', `unknown template "${name}" (known: ${TEMPLATE_NAMES.join(', ')})`)
}

function chatTemplateFile(tokenizer: TextTokenizer): string {
  return tokenizer.chatTemplateFile ?? "the tokenizer's chat_template"
}

function jinjaTemplate(tokenizer: TextTokenizer, options: SlotTemplateOptions): ChatTemplate {
  const source = tokenizer.chatTemplate!
  const file = chatTemplateFile(tokenizer)
  let template: Template
  try {
    template = new Template(source)
  } catch (error) {
    throw new LlamaproError(
      'LLAMAPRO_TEMPLATE',
      `the model's chat template (${file}) does not parse: ${(error as Error).message}`,
    )
  }
  const withSystem = (messages: readonly Message[]): readonly Message[] =>
    options.defaultSystem && messages[0]?.role !== 'system'
      ? [{ role: 'system', content: options.defaultSystem }, ...messages]
      : messages
  const render = (messages: readonly Message[], addGenerationPrompt: boolean) =>
    template.render({
      messages: withSystem(messages) as Message[],
      add_generation_prompt: addGenerationPrompt,
      bos_token: tokenizer.bosToken ?? '',
      eos_token: tokenizer.eosToken,
      ...(options.enableThinking === undefined ? {} : { enable_thinking: options.enableThinking }),
    })
  const renderConversation: ConversationRenderer = (messages) => {
    const segments: Segment[] = []
    let done = ''
    messages.forEach((message, i) => {
      if (message.role !== 'assistant') return
      const prompt = render(messages.slice(0, i), true)
      const full = render(messages.slice(0, i + 1), false)
      if (!prompt.startsWith(done) || !full.startsWith(prompt)) {
        throw new LlamaproError(
          'LLAMAPRO_TEMPLATE',
          `the model's chat template (${file}) does not render a conversation turn by turn (a prefix changes when a ` +
            `turn is added), ` +
            "so prompt and response tokens cannot be told apart; use one of LLaMA-Factory's templates (template: " +
            'default, chatml, llama3, ...)',
        )
      }
      segments.push(
        { parts: [prompt.slice(done.length)], train: false },
        { parts: [full.slice(prompt.length)], train: true },
      )
      done = full
    })
    return segments
  }
  return {
    name: 'model',
    renderConversation,
    renderPrompt: (messages) => [render(messages, true)],
    stopWords: [tokenizer.eosToken],
    tokenizer,
    efficientEos: false,
  }
}

/**
 * The template `name` over `tokenizer`. `warn` receives notes a user should see (which chat template file
 * `model` uses). Throws LLAMAPRO_TEMPLATE for an unknown name (listing the known ones), for `model` when the
 * model has no chat template, and for a template whose special tokens the tokenizer lacks.
 */
export function chatTemplate(
  name: string,
  tokenizer: TextTokenizer,
  warn: (message: string) => void,
  options: SlotTemplateOptions = {},
): ChatTemplate {
  if (name === 'model') {
    if (!tokenizer.chatTemplate) {
      throw new LlamaproError(
        'LLAMAPRO_TEMPLATE',
        'template "model" renders the model\'s own chat template, and the model has none (no chat_template.jinja, no ' +
          'chat_template in ' +
          `tokenizer_config.json); choose one of: ${TEMPLATE_NAMES.filter((n) => n !== 'model').join(', ')}`,
      )
    }
    warn(`template "model": using the model's own chat template from ${chatTemplateFile(tokenizer)}`)
    return jinjaTemplate(tokenizer, options)
  }
  const spec = Object.hasOwn(TEMPLATES, name) ? TEMPLATES[name]! : undefined
  if (!spec) throw unknownTemplate(name)
  const resolved = resolveSpec(spec)
  const fixed = fixTokenizer(name, resolved, tokenizer)
  const renderer = new SlotRenderer(resolved, options)
  return {
    name,
    renderConversation: (messages) => renderer.renderConversation(messages),
    renderPrompt: (messages) => renderer.renderPrompt(messages),
    stopWords: [...new Set([fixed.eosToken, ...resolved.stopWords])],
    tokenizer: fixed,
    efficientEos: resolved.efficientEos,
  }
}

/**
 * The tokenizer for pre-training (stage pt) under template `name`, as LLaMA-Factory prepares pt data: each text
 * ends with the tokenizer's EOS after the template's fix_special_tokens (so replace_eos templates end texts with
 * their end-of-turn token), except llama3, whose texts end with <|end_of_text|>.
 */
export function pretrainTokenizer(name: string, tokenizer: TextTokenizer): TextTokenizer {
  if (name === 'model') return tokenizer
  const spec = Object.hasOwn(TEMPLATES, name) ? TEMPLATES[name]! : undefined
  if (!spec) throw unknownTemplate(name)
  const fixed = fixTokenizer(name, resolveSpec(spec), tokenizer)
  if (name !== 'llama3') return fixed
  const ids = fixed.encode('<|end_of_text|>')
  if (ids.length !== 1) {
    throw new LlamaproError(
      'LLAMAPRO_TEMPLATE',
      'template "llama3" ends pre-training texts with <|end_of_text|> (as LLaMA-Factory does), which is not a token ' +
        'of this tokenizer',
    )
  }
  return { ...fixed, eosId: ids[0]!, eosToken: '<|end_of_text|>' }
}

/** The training renderer for a template name (chatTemplate(...).renderConversation). */
export function conversationRenderer(
  name: string,
  tokenizer: TextTokenizer,
  warn: (message: string) => void,
): ConversationRenderer {
  return chatTemplate(name, tokenizer, warn).renderConversation
}
