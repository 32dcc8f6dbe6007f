import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import type { Message } from '../data/dataset.js'
import type { TextTokenizer } from '../data/tokenizer.js'
import { LlamaproError } from '../errors.js'
import { type GenerateOptions, generate, modelTokenizer } from '../generate/generate.js'
import { KvCache } from '../generate/kv-cache.js'
import { defaultTemplateName, encodePrompt, generationPrompt } from '../generate/prompt.js'
import { LlamaModel } from '../model/llama-model.js'
import { positionals } from './args.js'
import { GENERATION_FLAGS, GENERATION_FLAGS_HELP, generateOptionsFrom, loadOptionsFrom } from './generation-flags.js'

export const CHAT_HELP = `llamapro chat <model_dir> [--template NAME] [--system TEXT] [sampling flags]

An interactive chat on the terminal (or on piped stdin, one message per line). Replies stream as they are
generated; Ctrl-C stops a reply, and at the prompt ends the chat. The conversation is kept within the model's
context (max_position_embeddings): the oldest turns are dropped when a new one would not fit, and the cache of
the earlier turns is reused, so only the new message is computed.

Commands: /reset (forget the conversation), /exit (end; so does end of input)

  --system TEXT              a system message at the start of the conversation
${GENERATION_FLAGS_HELP}`

/** The conversation without its oldest turns, so that its prompt plus a reply fits in the context. */
export function trimHistory(
  history: readonly Message[],
  fits: (messages: readonly Message[]) => boolean,
): Message[] | null {
  const system = history[0]?.role === 'system' ? [history[0]] : []
  let turns = history.slice(system.length)
  while (!fits([...system, ...turns])) {
    if (turns.length <= 1) return null
    turns = turns.slice(2) // the oldest user message and its reply
  }
  return [...system, ...turns]
}

export async function runChat(argv: string[]): Promise<number> {
  const { values, positionals: args } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: { ...GENERATION_FLAGS, system: { type: 'string' } },
  })
  const [modelDir] = positionals(args, ['model_dir'])
  const options = generateOptionsFrom(values)
  const model = await LlamaModel.load(modelDir!, loadOptionsFrom(values))
  const tokenizer: TextTokenizer | null = await modelTokenizer(model)
  if (!tokenizer) {
    model.dispose()
    throw new LlamaproError('LLAMAPRO_TOKENIZER', `${modelDir} has no tokenizer.json: chat needs the model's tokenizer`)
  }
  const warn = (message: string) => process.stderr.write(`llamapro chat: warning: ${message}\n`)
  const template = options.template ?? defaultTemplateName(tokenizer)
  const context = model.config.maxPositionEmbeddings
  const reserve = Math.min(options.maxNewTokens ?? 256, Math.floor(context / 2))
  const fits = (messages: readonly Message[]) =>
    encodePrompt(generationPrompt(template, messages, tokenizer, warn)).length + reserve <= context
  const start: Message[] = values.system !== undefined ? [{ role: 'system', content: values.system }] : []
  let history: Message[] = [...start]
  const cache = new KvCache(model)
  const interactive = process.stdin.isTTY === true
  const rl = createInterface({
    input: process.stdin,
    output: interactive ? process.stdout : undefined,
    terminal: interactive,
  })
  let replying: AbortController | null = null
  rl.on('SIGINT', () => {
    if (replying) replying.abort()
    else rl.close()
  })
  const ask = () => {
    if (interactive) rl.prompt()
  }
  rl.setPrompt('User: ')
  if (interactive) process.stdout.write(`llamapro chat: ${modelDir} (template ${template}; /reset, /exit)\n`)
  ask()
  try {
    for await (const raw of rl) {
      const line = raw.trim()
      if (line === '') {
        ask()
        continue
      }
      if (line === '/exit') break
      if (line === '/reset') {
        history = [...start]
        console.log('(conversation reset)')
        ask()
        continue
      }
      const trimmed = trimHistory([...history, { role: 'user', content: line }], fits)
      if (!trimmed) {
        console.log(`(that message is too long for the model's context of ${context} tokens; it was not sent)`)
        ask()
        continue
      }
      if (trimmed.length < history.length + 1)
        warn(`the oldest turns were dropped to stay within the context of ${context} tokens`)
      replying = new AbortController()
      process.stdout.write('Assistant: ')
      const generateOptions: GenerateOptions = {
        ...options,
        template,
        tokenizer,
        cache,
        warn,
        signal: replying.signal,
        onToken: (chunk) => process.stdout.write(chunk.text),
      }
      const result = await generate(model, trimmed, generateOptions)
      replying = null
      process.stdout.write(result.finishReason === 'aborted' ? ' [stopped]\n' : '\n')
      history = [...trimmed, { role: 'assistant', content: result.text }]
      ask()
    }
  } finally {
    rl.close()
    cache.dispose()
    model.dispose()
  }
  return 0
}
