#!/usr/bin/env node
/** The `llamapro` command: dispatches to one module per subcommand. */
import { UsageError, errorMessage, isLlamaproCode } from '../errors.js'
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

/** File-system failures are the user's to fix, not llamapro bugs: say so instead of printing a stack. */
const FILE_SYSTEM_HINTS: Record<string, string> = {
  ENOENT: 'no such file or folder',
  EACCES: 'permission denied: check the folder permissions',
  EPERM: 'operation not permitted',
  ENOSPC: 'the disk is full: free some space and run again; partial outputs were removed',
  EDQUOT: 'disk quota exceeded: free some space and run again',
  EROFS: 'the file system is read-only: choose another output folder',
  EISDIR: 'a folder was given where a file is expected',
  ENOTDIR: 'a file was given where a folder is expected',
  EMFILE: 'too many open files: raise the limit with ulimit -n',
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
    if (isLlamaproCode(error)) {
      console.error(`llamapro ${name}: ${error.code === 'LLAMAPRO_INTERRUPTED' ? '' : 'error: '}${error.message}`)
      return error.code === 'LLAMAPRO_INTERRUPTED' ? 130 : 1
    }
    const fsHint = FILE_SYSTEM_HINTS[code]
    if (fsHint) {
      console.error(`llamapro ${name}: error: ${errorMessage(error)} (${fsHint})`)
      return 1
    }
    console.error(`llamapro ${name}: unexpected error:`, error)
    return 1
  }
}

const exitCode = await main(process.argv.slice(2))
process.exitCode = exitCode
