/**
 * Sharding as transformers writes it: tensors taken in state_dict order fill a shard until the next one would
 * push it past the limit; a tensor larger than the limit gets a shard of its own. One shard is written as
 * model.safetensors without an index; more are model-0000i-of-0000n.safetensors plus
 * model.safetensors.index.json ({"metadata": {"total_parameters", "total_size"}, "weight_map"}, keys sorted).
 */
import type { SafetensorsDtype } from './dtypes.js'
import { SINGLE_WEIGHTS_FILE } from './checkpoint.js'

export const DEFAULT_SHARD_SIZE = 5_000_000_000

export interface ShardTensor {
  name: string
  dtype: SafetensorsDtype
  shape: number[]
  nbytes: number
}

export interface Shard<T extends ShardTensor = ShardTensor> {
  file: string
  tensors: T[]
}

export function shardFileName(index: number, count: number): string {
  if (count === 1) return SINGLE_WEIGHTS_FILE
  const pad = (n: number) => String(n).padStart(5, '0')
  return `model-${pad(index + 1)}-of-${pad(count)}.safetensors`
}

export function planShards<T extends ShardTensor>(
  tensors: readonly T[],
  maxShardSize: number = DEFAULT_SHARD_SIZE,
): Shard<T>[] {
  const groups: T[][] = []
  let current: T[] = []
  let currentSize = 0
  for (const t of tensors) {
    if (t.nbytes > maxShardSize) {
      groups.push([t])
      continue
    }
    if (currentSize + t.nbytes > maxShardSize && current.length > 0) {
      groups.push(current)
      current = []
      currentSize = 0
    }
    current.push(t)
    currentSize += t.nbytes
  }
  if (current.length > 0 || groups.length === 0) groups.push(current)
  return groups.map((group, i) => ({ file: shardFileName(i, groups.length), tensors: group }))
}

/** The text of model.safetensors.index.json, byte for byte as transformers writes it. */
export function shardIndexJson(shards: readonly Shard[], totalParameters: number): string {
  const weightMap: Record<string, string> = {}
  let totalSize = 0
  const entries: [string, string][] = []
  for (const shard of shards) {
    for (const t of shard.tensors) {
      entries.push([t.name, shard.file])
      totalSize += t.nbytes
    }
  }
  entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  for (const [name, file] of entries) weightMap[name] = file
  const index = { metadata: { total_parameters: totalParameters, total_size: totalSize }, weight_map: weightMap }
  return `${JSON.stringify(index, null, 2)}\n`
}
