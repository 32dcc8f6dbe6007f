/**
 * The on-disk token store: a folder holding
 *   manifest.json  what it is (format, version, dtype, counts, the inputs it was built from); written last, so a
 *                  folder without it is not a store
 *   ids.bin        every sequence's token ids, one after another, little-endian uint16 (vocabularies below 65535)
 *                  or uint32
 *   labels.bin     the labels, same dtype, with the dtype's largest value standing for -100 (not learned); absent
 *                  when labels equal ids (stage pt)
 *   offsets.bin    float64 start of each sequence in tokens, plus the end (n + 1 values); absent when every sequence
 *                  is `fixedLength` long (packed pt blocks)
 *   targets.bin    uint32 count of learned tokens per sequence (labels ≠ -100 after the shift); absent with labels.bin
 * The folder is built under a temporary name beside its final one and renamed when complete.
 */
export const STORE_FORMAT = 'llamapro-token-store'
export const STORE_VERSION = 1
export const MANIFEST_FILE = 'manifest.json'
export const IDS_FILE = 'ids.bin'
export const LABELS_FILE = 'labels.bin'
export const OFFSETS_FILE = 'offsets.bin'
export const TARGETS_FILE = 'targets.bin'
/** eval_dataset's sequences: a store of their own inside the training store's folder. */
export const EVAL_SUBDIR = 'eval'
/**
 * eval_on_each_dataset: one store per eval dataset, `eval-each/<i>/`, each tokenized (and packed) on its own as
 * LLaMA-Factory preprocesses each, with `eval-each/datasets.json` naming them in eval_dataset's order.
 */
export const EVAL_EACH_SUBDIR = 'eval-each'
export const EVAL_EACH_NAMES_FILE = 'datasets.json'

export type TokenDtype = 'uint16' | 'uint32'

export interface StoreTotals {
  /** Examples read from the data files (after max_samples and mixing). */
  examples: number
  /** Sequences in the store (packed blocks count once). */
  sequences: number
  tokens: number
  targetTokens: number
  /** Examples that had nothing to learn within cutoff_len (sft), skipped. */
  droppedExamples: number
  /** Tokens cut off by cutoff_len, plus a packed corpus's last partial block. */
  droppedTokens: number
  inputBytes: number
  seconds: number
}

export interface StoreManifest extends StoreTotals {
  format: typeof STORE_FORMAT
  version: number
  dtype: TokenDtype
  /** Every sequence has this many tokens (no offsets.bin), or null. */
  fixedLength: number | null
  hasLabels: boolean
  maxTokenId: number
  /** What the tokens were made from (the cache key's inputs), for people and for checks. */
  inputs: Record<string, unknown>
  key: string
  createdBy: string
}

export const dtypeFor = (maxTokenId: number): TokenDtype => (maxTokenId < 0xffff ? 'uint16' : 'uint32')
export const bytesPerToken = (dtype: TokenDtype): number => (dtype === 'uint16' ? 2 : 4)
export const ignoreSentinel = (dtype: TokenDtype): number => (dtype === 'uint16' ? 0xffff : 0xffffffff)
