/**
 * Evaluation during training: the mean loss over every target token of an eval set, one set or (with
 * eval_on_each_dataset) one per dataset, each logged under transformers' name for it (eval_loss, eval_<name>_loss).
 */
import { collate } from '../data/batches.js'
import type { SequenceSource } from '../data/store/reader.js'
import type { ProcessGroup } from '../distributed/process-group.js'
import type { LlamaModel } from '../model/llama-model.js'

/** An eval set and the metric its loss is logged as. */
export interface EvalSet {
  /** The eval dataset's name with eval_on_each_dataset; null for the one set (eval_dataset merged, or val_size). */
  name: string | null
  source: SequenceSource
}

/** transformers' metric key of a set's loss: eval_loss, or eval_<name>_loss for a dataset of a dict. */
export const evalLossKey = (set: Pick<EvalSet, 'name'>): string =>
  set.name === null ? 'eval_loss' : `eval_${set.name}_loss`

export interface EvalOutcome {
  /** Each set's loss by its metric key, in the sets' order. */
  losses: Record<string, number>
  /** The loss over every set's target tokens together (what one merged set would give). */
  loss: number
  /** Target tokens evaluated, all sets together (over every rank). */
  tokens: number
}

/** The loss of one set: batches dealt round-robin over the ranks, the sums added up. */
async function setLoss(
  model: LlamaModel,
  source: SequenceSource,
  options: { batchSize: number; padId: number; group: ProcessGroup | null },
): Promise<{ loss: number; tokens: number }> {
  const { batchSize, padId, group } = options
  let weighted = 0
  let tokens = 0
  for (let i = (group?.rank ?? 0) * batchSize; i < source.length; i += batchSize * (group?.worldSize ?? 1)) {
    const rows = []
    for (let j = i; j < Math.min(i + batchSize, source.length); j++) rows.push(source.read(j))
    const result = await model.batchLoss(collate(rows, padId))
    weighted += result.loss * result.tokens
    tokens += result.tokens
  }
  if (group) [weighted, tokens] = (await group.sum([weighted, tokens], 'evaluation across ranks')) as [number, number]
  return { loss: tokens > 0 ? weighted / tokens : 0, tokens }
}

export async function evaluateSets(
  model: LlamaModel,
  sets: readonly EvalSet[],
  options: { batchSize: number; padId: number; group: ProcessGroup | null },
): Promise<EvalOutcome> {
  const losses: Record<string, number> = {}
  let tokens = 0
  let weighted = 0
  for (const set of sets) {
    const result = await setLoss(model, set.source, options)
    losses[evalLossKey(set)] = result.loss
    tokens += result.tokens
    weighted += result.loss * result.tokens
  }
  return { losses, loss: tokens > 0 ? weighted / tokens : 0, tokens }
}
