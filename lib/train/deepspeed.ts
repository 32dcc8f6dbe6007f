/**
 * LLaMA-Factory's `deepspeed:` key names a DeepSpeed JSON config (its examples/deepspeed/ds_z0_config.json …
 * ds_z3_config.json). llamapro has no DeepSpeed engine; of that file it reads only `zero_optimization.stage`, which
 * chooses its own ZeRO stage 1 (zero_stage). Stages 2 and 3 (which also shard gradients and weights) run as
 * stage 1, with a warning that says so; everything else in the file has no effect, and the warning says that too.
 */
import { readFileSync } from 'node:fs'
import { ConfigKeyError } from './errors.js'

export function zeroStageFromDeepspeed(path: string, where: string): { zeroStage: 0 | 1; warning: string } {
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'))
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (error as Error).message
    throw new ConfigKeyError(`${where}: deepspeed: ${path}: cannot read it as a DeepSpeed JSON config (${reason})`)
  }
  const zero =
    typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>).zero_optimization : undefined
  const raw = typeof zero === 'object' && zero !== null ? (zero as Record<string, unknown>).stage : undefined
  const stage = raw === undefined ? 0 : Number(raw)
  if (!Number.isInteger(stage) || stage < 0 || stage > 3) {
    throw new ConfigKeyError(
      `${where}: deepspeed: ${path}: zero_optimization.stage must be 0, 1, 2 or 3, got ${JSON.stringify(raw)}`,
    )
  }
  const zeroStage = stage === 0 ? 0 : 1
  const how =
    stage <= 1
      ? `zero_optimization.stage ${stage} sets zero_stage: ${zeroStage}`
      : `zero_optimization.stage ${stage} runs as zero_stage: 1 (llamapro shards the AdamW state only, not ` +
        `gradients${stage === 3 ? ' or weights' : ''})`
  return {
    zeroStage,
    warning:
      `deepspeed: ${path}: llamapro has no DeepSpeed engine and reads only zero_optimization.stage: ${how}; ` +
      `the file's other settings have no effect`,
  }
}
