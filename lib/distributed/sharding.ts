/**
 * Each rank's share of every global batch, the way accelerate shards transformers' dataloader (its
 * BatchSamplerShard): one shuffled order for all ranks, whole per-device batches handed out round-robin, so rank r
 * gets batches r, r+W, r+2W, … and a W-rank step sees the samples that one process sees with W× the batch. When
 * the last round is short, ranks without a batch take them again from the start of the epoch (even_batches).
 */
import type { Batch, BatchSchedule } from '../data/batches.js'

export interface TokenCounts {
  targetTokens: number
  tokens: number
}

/** The batch schedule one rank of W sees; with W = 1 it is the schedule itself. */
export class RankSchedule {
  readonly batchesPerEpoch: number

  constructor(
    private readonly global: BatchSchedule,
    readonly rank: number,
    readonly worldSize: number,
  ) {
    this.batchesPerEpoch = Math.ceil(global.batchesPerEpoch / worldSize)
  }

  /** The global batch index rank `rank` takes as its `index`-th batch of an epoch. */
  globalIndex(index: number, rank = this.rank): number {
    return (index * this.worldSize + rank) % this.global.batchesPerEpoch
  }

  batch(epoch: number, index: number): Batch {
    return this.global.batch(epoch, this.globalIndex(index))
  }

  /** This rank's batch and every rank's token counts (the interface a streamed schedule shares). */
  async take(epoch: number, index: number): Promise<{ batch: Batch; across: TokenCounts }> {
    return { batch: this.batch(epoch, index), across: this.countsAcrossRanks(epoch, index) }
  }

  /**
   * Target and real tokens of the index-th batch of every rank together. Every rank knows the whole order, so the
   * step's token count — which weights the loss as transformers' num_items_in_batch does — needs no communication.
   */
  countsAcrossRanks(epoch: number, index: number): TokenCounts {
    const out = { targetTokens: 0, tokens: 0 }
    for (let r = 0; r < this.worldSize; r++) {
      const counts = this.global.counts(epoch, this.globalIndex(index, r))
      out.targetTokens += counts.targetTokens
      out.tokens += counts.tokens
    }
    return out
  }
}
