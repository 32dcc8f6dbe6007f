import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import type { Message } from '../data/dataset.js'
import { generateStream } from '../generate/generate.js'
import { LlamaModel } from '../model/llama-model.js'
import { LlamaproError, UsageError } from '../errors.js'
import { interruptSignal, positionals } from './args.js'
import { GENERATION_FLAGS, GENERATION_FLAGS_HELP, generateOptionsFrom, loadOptionsFrom } from './generation-flags.js'

export const GENERATE_HELP = `llamapro generate <model_dir> (--prompt TEXT | --messages FILE) [--chat] [--system TEXT] [--json] [sampling flags]

Generates a continuation of --prompt (or, with --chat, --system or --template, the assistant's reply to it as a
user message, rendered by the chat template) and prints it as it is generated. Ctrl-C stops generation.

  --prompt TEXT              the prompt ("-" reads it from stdin)
  --messages FILE            a conversation instead: a JSON array of { "role", "content" } ending with a user message
  --chat                     treat the prompt as a user message of a chat (also implied by --system and --template)
  --system TEXT              a system message
  --json                     print one JSON object at the end: text, token ids, finish reason, seed, timings
${GENERATION_FLAGS_HELP}`

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

export async function runGenerate(argv: string[]): Promise<number> {
  const { values, positionals: args } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      ...GENERATION_FLAGS,
      prompt: { type: 'string' },
      messages: { type: 'string' },
      chat: { type: 'boolean', default: false },
      system: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  })
  const [modelDir] = positionals(args, ['model_dir'])
  if ((values.prompt === undefined) === (values.messages === undefined)) {
    throw new UsageError('give either --prompt (use --prompt - to read it from stdin) or --messages FILE')
  }
  let conversation: Message[] | undefined
  if (values.messages !== undefined) {
    try {
      conversation = JSON.parse(await readFile(values.messages, 'utf8')) as Message[]
    } catch (error) {
      throw new LlamaproError(
        'LLAMAPRO_ARG',
        `--messages ${values.messages}: cannot read it as JSON (${(error as Error).message})`,
      )
    }
    if (!Array.isArray(conversation))
      throw new LlamaproError(
        'LLAMAPRO_ARG',
        `--messages ${values.messages}: expected a JSON array of { "role", "content" }`,
      )
  }
  const prompt = values.prompt === '-' ? await readStdin() : (values.prompt ?? '')
  const options = generateOptionsFrom(values)
  const model = await LlamaModel.load(modelDir!, loadOptionsFrom(values))
  const interrupt = interruptSignal()
  try {
    const chat = values.chat || values.system !== undefined || values.template !== undefined
    const messages: Message[] = conversation ?? [
      ...(values.system !== undefined ? [{ role: 'system' as const, content: values.system }] : []),
      { role: 'user', content: prompt },
    ]
    const stream = generateStream(model, chat || conversation ? messages : prompt, {
      ...options,
      signal: interrupt.signal,
      warn: (message) => process.stderr.write(`llamapro generate: warning: ${message}\n`),
    })
    let next = await stream.next()
    while (!next.done) {
      if (!values.json) process.stdout.write(next.value.text)
      next = await stream.next()
    }
    const result = next.value
    if (values.json) {
      console.log(
        JSON.stringify({
          text: result.text,
          tokenIds: result.tokenIds,
          promptTokens: result.promptTokenIds.length,
          finishReason: result.finishReason,
          ...(result.stoppedBy !== undefined ? { stoppedBy: result.stoppedBy } : {}),
          seed: result.seed,
          timings: result.timings,
        }),
      )
    } else {
      process.stdout.write('\n')
      const tokens = result.tokenIds.length
      const perSecond = result.timings.decodeMs > 0 ? (result.timings.decodeSteps / result.timings.decodeMs) * 1000 : 0
      process.stderr.write(
        `[${tokens} tokens, ${result.finishReason}; prefill ${result.timings.prefillTokens} tokens in ` +
          `${result.timings.prefillMs.toFixed(0)} ms, ${perSecond.toFixed(1)} tokens/s]\n`,
      )
    }
    return result.finishReason === 'aborted' ? 130 : 0
  } finally {
    interrupt.dispose()
    model.dispose()
  }
}
