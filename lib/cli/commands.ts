/** The subcommands: name, one-line summary, full help, and the function that runs it. */
import { INFO_HELP, runInfo } from './info.js'

export interface Command {
  name: string
  summary: string
  help: string
  run(argv: string[]): Promise<number>
}

export const COMMANDS: Command[] = [
  { name: 'info', summary: 'show the LibTorch, CUDA devices, threads and BLAS llamapro runs on', help: INFO_HELP, run: runInfo },
]
