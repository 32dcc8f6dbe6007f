/**
 * Writes a set of tensors as Hugging Face does: shards planned in state_dict order (shards.ts), each file's header
 * laid out by the safetensors encoder, and the index when there is more than one shard. The bytes come from a
 * caller-supplied writer: native tensors for a loaded model, streamed file ranges for on-disk expansion.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { INDEX_FILE } from './checkpoint.js'
import { type EncodedHeader, encodeSafetensorsHeader, safetensorsOrder } from './safetensors.js'
import { type Shard, type ShardTensor, planShards, shardIndexJson } from './shards.js'

export type ShardFileWriter<T extends ShardTensor> = (
  path: string,
  header: EncodedHeader,
  tensors: T[],
) => Promise<void>

export interface WrittenShards {
  files: string[]
  bytes: number
}

export async function writeShardedSafetensors<T extends ShardTensor>(
  dir: string,
  tensors: readonly T[],
  maxShardSize: number,
  totalParameters: number,
  writeShard: ShardFileWriter<T>,
): Promise<WrittenShards> {
  const shards: Shard<T>[] = planShards(tensors, maxShardSize)
  let bytes = 0
  for (const shard of shards) {
    const ordered = safetensorsOrder(shard.tensors)
    const header = encodeSafetensorsHeader(ordered)
    await writeShard(join(dir, shard.file), header, ordered)
    bytes += header.bytes.length + header.dataSize
  }
  if (shards.length > 1) await writeFile(join(dir, INDEX_FILE), shardIndexJson(shards, totalParameters))
  return { files: shards.map((s) => s.file), bytes }
}

/** config.json as transformers writes it: keys sorted, two-space indent, trailing newline. */
export function configJson(raw: Readonly<Record<string, unknown>>): string {
  const sortKeys = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(sortKeys)
    if (value !== null && typeof value === 'object') {
      return Object.fromEntries(
        Object.keys(value)
          .sort()
          .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
      )
    }
    return value
  }
  return `${JSON.stringify(sortKeys(raw), null, 2)}\n`
}
