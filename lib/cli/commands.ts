/** The subcommands: name, one-line summary, full help, and the function that runs it. */
import { DEMO_HELP, runDemoCommand } from './demo.js'
import { EXPAND_HELP, runExpand } from './expand.js'
import { INFO_HELP, runInfo } from './info.js'
import { MERGE_HELP, runMerge } from './merge.js'
import { TRAIN_HELP, runTrain } from './train.js'
import { PLAN_HELP, runPlan } from './plan.js'
import { VERIFY_HELP, runVerify } from './verify.js'

export interface Command {
  name: string
  summary: string
  help: string
  run(argv: string[]): Promise<number>
}

export const COMMANDS: Command[] = [
  { name: 'demo', summary: 'LLaMA-Pro end to end on a built-in tiny model (about a minute on 2 CPU cores)', help: DEMO_HELP, run: runDemoCommand },
  { name: 'train', summary: 'fine-tune with LLaMA-Factory YAML keys (freeze tuning, LLaMA-Pro)', help: TRAIN_HELP, run: runTrain },
  { name: 'expand', summary: 'grow a checkpoint by block expansion (LLaMA-Pro), streaming, no GPU needed', help: EXPAND_HELP, run: runExpand },
  { name: 'verify', summary: 'prove an expanded checkpoint computes what its original did', help: VERIFY_HELP, run: runVerify },
  { name: 'plan', summary: 'show which layers a freeze strategy trains and what it costs in memory', help: PLAN_HELP, run: runPlan },
  { name: 'merge', summary: 'apply a delta (trained tensors only) to its base model', help: MERGE_HELP, run: runMerge },
  { name: 'info', summary: 'show the LibTorch, CUDA devices, threads and BLAS llamapro runs on', help: INFO_HELP, run: runInfo },
]
