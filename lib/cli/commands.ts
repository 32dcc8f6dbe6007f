/** The subcommands: name, one-line summary, full help, and the function that runs it. */
import { EXPAND_HELP, runExpand } from './expand.js'
import { INFO_HELP, runInfo } from './info.js'
import { PLAN_HELP, runPlan } from './plan.js'
import { VERIFY_HELP, runVerify } from './verify.js'

export interface Command {
  name: string
  summary: string
  help: string
  run(argv: string[]): Promise<number>
}

export const COMMANDS: Command[] = [
  { name: 'expand', summary: 'grow a checkpoint by block expansion (LLaMA-Pro), streaming, no GPU needed', help: EXPAND_HELP, run: runExpand },
  { name: 'verify', summary: 'prove an expanded checkpoint computes what its original did', help: VERIFY_HELP, run: runVerify },
  { name: 'plan', summary: 'show which layers a freeze strategy trains and what it costs in memory', help: PLAN_HELP, run: runPlan },
  { name: 'info', summary: 'show the LibTorch, CUDA devices, threads and BLAS llamapro runs on', help: INFO_HELP, run: runInfo },
]
