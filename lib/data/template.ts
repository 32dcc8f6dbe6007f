/**
 * Chat templates turn a conversation into text segments, each marked as prompt (masked from the loss) or
 * response (learned). `default` is a plain Human/Assistant format like LLaMA-Factory's default template; `empty`
 * joins the turns with nothing around them; `model` renders the model's own Jinja chat_template (any other name
 * does too, when the model has one, since LLaMA-Factory's named templates mirror the models' own).
 */
import { Template } from '@huggingface/jinja'
import { LlamaproError } from '../errors.js'
import type { Message } from './dataset.js'
import type { TextTokenizer } from './tokenizer.js'

export interface Segment {
  text: string
  /** True for assistant responses: the tokens that are learned. */
  train: boolean
}

export type ConversationRenderer = (messages: readonly Message[]) => Segment[]

export const BUILTIN_TEMPLATES = ['default', 'empty', 'model'] as const

function splitSystem(messages: readonly Message[]): { system: string | null; turns: Message[] } {
  const system = messages[0]?.role === 'system' ? messages[0].content : null
  return { system, turns: messages.filter((m) => m.role !== 'system') }
}

function plainRenderer(userPrefix: string, userSuffix: string, systemFormat: (s: string) => string): ConversationRenderer {
  return (messages) => {
    const { system, turns } = splitSystem(messages)
    const segments: Segment[] = []
    let prompt = system ? systemFormat(system) : ''
    for (const turn of turns) {
      if (turn.role === 'user') prompt += `${userPrefix}${turn.content}${userSuffix}`
      else {
        segments.push({ text: prompt, train: false }, { text: turn.content, train: true })
        prompt = '\n'
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
      segments.push({ text: prompt.slice(done.length), train: false }, { text: full.slice(prompt.length), train: true })
      done = full
    })
    return segments
  }
}

/** The renderer for a template name; `where` names the config key in errors. */
export function conversationRenderer(name: string, tokenizer: TextTokenizer, warn: (message: string) => void): ConversationRenderer {
  if (name === 'default') return plainRenderer('Human: ', '\nAssistant: ', (s) => `System: ${s}\n`)
  if (name === 'empty') return plainRenderer('', '', (s) => s)
  if (tokenizer.chatTemplate) {
    if (name !== 'model') warn(`template "${name}": using the model's own chat_template from tokenizer_config.json`)
    return jinjaRenderer(tokenizer.chatTemplate, tokenizer)
  }
  throw new LlamaproError(
    'LLAMAPRO_TEMPLATE',
    `template "${name}" needs the model's chat_template, and its tokenizer_config.json has none (valid here: default, empty)`,
  )
}
