/**
 * `llamapro merge <base> <delta> <out>`: the base model with the delta's tensors in place of its own, streamed
 * like expansion (no LibTorch, bounded memory), written to a temporary folder and renamed.
 */
import { existsSync, statSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ADAPTER_CONFIG_FILE, isAdapterFolder } from '../adapters/peft-adapter.js'
import { CONFIG_FILE, openCheckpoint } from '../checkpoint/checkpoint.js'
import { SAFETENSORS_DTYPE_SIZES } from '../checkpoint/dtypes.js'
import { readSafetensorsHeader } from '../checkpoint/safetensors.js'
import { DEFAULT_SHARD_SIZE } from '../checkpoint/shards.js'
import { copySideFiles } from '../checkpoint/side-files.js'
import { StreamCopier, type TensorSource } from '../checkpoint/stream-copy.js'
import { configJson, writeShardedSafetensors } from '../checkpoint/write-shards.js'
import { LlamaproError } from '../errors.js'
import { DELTA_FILE } from '../train/delta.js'
import { checkOutputDir, writeFolderAtomically } from '../util/atomic-dir.js'
import { parseSize } from '../util/size.js'

export interface MergeResult {
  output: string
  replaced: number
  files: string[]
  bytesWritten: number
}

/** The delta's safetensors file: `deltaDir` itself, or the delta.safetensors in that folder. */
function deltaFile(deltaDir: string): string {
  if (!existsSync(deltaDir)) throw new LlamaproError('LLAMAPRO_MERGE', `${deltaDir}: no such delta folder or file`)
  if (!statSync(deltaDir).isDirectory()) return deltaDir
  if (existsSync(join(deltaDir, DELTA_FILE))) return join(deltaDir, DELTA_FILE)
  if (isAdapterFolder(deltaDir)) {
    throw new LlamaproError(
      'LLAMAPRO_MERGE',
      `${deltaDir} is a PEFT LoRA adapter (it has ${ADAPTER_CONFIG_FILE}), not a delta: merge it with mergeAdapter() ` +
        '(llamapro merge <base_dir> <output_dir> --adapter <adapter_dir>)',
    )
  }
  const hint = 'a delta is written by llamapro train with save_delta: true'
  throw new LlamaproError('LLAMAPRO_MERGE', `${deltaDir}: no ${DELTA_FILE} (${hint})`)
}

export async function mergeDelta(
  baseDir: string,
  deltaDir: string,
  outDir: string,
  options: { force?: boolean; shardSize?: string | number } = {},
): Promise<MergeResult> {
  const base = await openCheckpoint(baseDir)
  const deltaPath = deltaFile(deltaDir)
  const delta = await readSafetensorsHeader(deltaPath)
  const baseByName = new Map(base.tensors.map((t) => [t.name, t]))
  for (const t of delta.tensors) {
    const target = baseByName.get(t.name)
    if (!target)
      throw new LlamaproError(
        'LLAMAPRO_MERGE',
        `${deltaPath}: tensor "${t.name}" is not in the base model ${baseDir} (was the delta trained on another model?)`,
      )
    if (target.shape.join() !== t.shape.join()) {
      throw new LlamaproError(
        'LLAMAPRO_MERGE',
        `${deltaPath}: tensor "${t.name}" has shape [${t.shape}] but the base has [${target.shape}]`,
      )
    }
  }
  const shardSize = parseSize(options.shardSize ?? DEFAULT_SHARD_SIZE, 'shard size')
  await checkOutputDir(outDir, options.force ?? false, 'pass --force')
  const replacements = new Map(delta.tensors.map((t) => [t.name, t]))
  const tensors = base.tensors.map((t) => {
    const d = replacements.get(t.name)
    const source: TensorSource = d
      ? { file: deltaPath, offset: delta.dataStart + d.begin, nbytes: d.end - d.begin }
      : { file: t.file, offset: t.offset, nbytes: t.nbytes }
    return { name: t.name, dtype: d?.dtype ?? t.dtype, shape: t.shape, nbytes: d ? d.end - d.begin : t.nbytes, source }
  })
  const totalParameters = tensors.reduce((s, t) => s + t.nbytes / SAFETENSORS_DTYPE_SIZES[t.dtype], 0)
  const copier = new StreamCopier()
  const written = await writeFolderAtomically(outDir, async (tmp) => {
    try {
      const shards = await writeShardedSafetensors(tmp, tensors, shardSize, totalParameters, (path, header, ordered) =>
        copier.writeFile(
          path,
          header,
          ordered.map((t) => t.source),
        ),
      )
      await copySideFiles(base.dir, tmp)
      await writeFile(
        join(tmp, CONFIG_FILE),
        configJson(JSON.parse(await readFile(join(base.dir, CONFIG_FILE), 'utf8'))),
      )
      return shards
    } finally {
      await copier.close()
    }
  })
  return { output: outDir, replaced: delta.tensors.length, files: written.files, bytesWritten: written.bytes }
}
