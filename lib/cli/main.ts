#!/usr/bin/env node
/** The `llamapro` command: dispatches to one module per subcommand. */
import { LlamaproError, UsageError, errorMessage } from '../errors.js'
import { VERSION } from '../version.js'
import { COMMANDS } from './commands.js'

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length))
  return [
    `llamapro ${VERSION}: grow LLaMA-family models by block expansion and fine-tune them with freeze tuning`,
    '',
    'Usage: llamapro <command> [options]        llamapro <command> --help for its options',
    '',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
  ].join('\n')
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage())
    return name ? 0 : 2
  }
  if (name === '--version' || name === '-v') {
    console.log(VERSION)
    return 0
  }
  const command = COMMANDS.find((c) => c.name === name)
  if (!command) {
    console.error(`llamapro: unknown command '${name}'. Commands: ${COMMANDS.map((c) => c.name).join(', ')}`)
    return 2
  }
  const { help, run } = await command.load()
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(help)
    return 0
  }
  try {
    return await run(rest)
  } catch (error) {
    // parseArgs throws TypeErrors with code ERR_PARSE_ARGS_*: those are usage errors too.
    const code = (error as { code?: string }).code ?? ''
    if (error instanceof UsageError || code.startsWith('ERR_PARSE_ARGS')) {
      console.error(`llamapro ${name}: ${errorMessage(error)}\n\n${help}`)
      return 2
    }
    if (error instanceof LlamaproError) {
      console.error(`llamapro ${name}: error: ${error.message}`)
      return 1
    }
    console.error(`llamapro ${name}: unexpected error:`, error)
    return 1
  }
}

const exitCode = await main(process.argv.slice(2))
process.exitCode = exitCode
