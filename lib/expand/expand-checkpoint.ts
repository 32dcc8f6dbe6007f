/**
 * Block expansion on disk (LLaMA-Pro). Streams a checkpoint into an expanded one: every tensor is copied byte for
 * byte from its source range, new blocks are copies of the layer before them with o_proj and down_proj (biases
 * too) written as zeros, so each new block starts as an identity map. No LibTorch and no GPU are involved, and
 * memory stays bounded by the copy windows whatever the model's size.
 *
 * Everything that can be wrong with the input or the options is found before the first byte is written, and the
 * output appears only when it is complete (written to a temporary folder, then renamed).
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type Checkpoint, CONFIG_FILE, type TensorLocation, openCheckpoint } from '../checkpoint/checkpoint.js'
import { SAFETENSORS_DTYPE_SIZES } from '../checkpoint/dtypes.js'
import { parseLayerName } from '../checkpoint/parameters.js'
import { copySideFiles } from '../checkpoint/side-files.js'
import { DEFAULT_SHARD_SIZE, type ShardTensor } from '../checkpoint/shards.js'
import { StreamCopier, type TensorSource } from '../checkpoint/stream-copy.js'
import { configJson, writeShardedSafetensors } from '../checkpoint/write-shards.js'
import { checkOutputDir, writeFolderAtomically } from '../util/atomic-dir.js'
import { parseSize } from '../util/size.js'
import { expandedRawConfig } from './expanded-config.js'
import { type ExpansionOptions, type ExpansionPlan, planExpansion } from './plan.js'
import { EXPANSION_RECORD_FILE, expansionRecord } from './record.js'

export interface ExpandProgress {
  bytesDone: number
  bytesTotal: number
  tensorsDone: number
  tensorsTotal: number
}

export interface ExpandCheckpointOptions extends ExpansionOptions {
  /** Largest output shard (transformers' max_shard_size): default '5GB'. */
  shardSize?: string | number
  /** Replace an existing non-empty output folder. */
  force?: boolean
  onProgress?: (progress: ExpandProgress) => void
  /** Told when temporaries of the output left by killed processes were removed (default: a process warning). */
  onWarning?: (message: string) => void
  signal?: AbortSignal
}

export interface ExpandResult {
  output: string
  originalNumLayers: number
  numLayers: number
  /** Indices of the new blocks in the expanded model. */
  newLayerIds: number[]
  /** For each new block: the original layer it copies. */
  sourceLayerOf: Record<number, number>
  files: string[]
  bytesWritten: number
  seconds: number
}

/** A block is an identity map when its attention output and MLP output projections are zero. */
export const ZEROED_IN_NEW_BLOCKS = /^(self_attn\.o_proj|mlp\.down_proj)\./

interface OutputTensor extends ShardTensor {
  source: TensorSource
}

/** The output tensors in state_dict order, each with where its bytes come from. */
export function expandedTensors(checkpoint: Checkpoint, plan: ExpansionPlan): OutputTensor[] {
  const byLayer = new Map<number, { rest: string; location: TensorLocation }[]>()
  const before: TensorLocation[] = []
  const after: TensorLocation[] = []
  for (const location of checkpoint.tensors) {
    const parsed = parseLayerName(location.name)
    if (parsed) {
      const list = byLayer.get(parsed.layer) ?? []
      list.push({ rest: parsed.rest, location })
      byLayer.set(parsed.layer, list)
    } else if (byLayer.size === 0) {
      before.push(location)
    } else {
      after.push(location)
    }
  }
  const copy = (name: string, location: TensorLocation): OutputTensor => ({
    name,
    dtype: location.dtype,
    shape: location.shape,
    nbytes: location.nbytes,
    source: { file: location.file, offset: location.offset, nbytes: location.nbytes },
  })
  const out: OutputTensor[] = before.map((l) => copy(l.name, l))
  plan.layers.forEach((layer, index) => {
    for (const { rest, location } of byLayer.get(layer.source) ?? []) {
      const name = `model.layers.${index}.${rest}`
      const zero = layer.isNew && ZEROED_IN_NEW_BLOCKS.test(rest)
      out.push(zero ? { ...copy(name, location), source: { zero: location.nbytes } } : copy(name, location))
    }
  })
  out.push(...after.map((l) => copy(l.name, l)))
  return out
}

/** The `llamapro train` YAML lines that train exactly the new blocks. */
export function fineTuneHint(output: string, plan: ExpansionPlan): string {
  // use_llama_pro's stride rule selects exactly the new blocks only when they were placed by num_expand.
  const k = plan.newLayerIds.length
  const strideRuleMatches =
    plan.originalNumLayers % k === 0 &&
    planExpansion(plan.originalNumLayers, { numExpand: k }).insertAfter.join() === plan.insertAfter.join()
  const selection = strideRuleMatches
    ? [`freeze_trainable_layers: ${plan.newLayerIds.length}`, 'use_llama_pro: true']
    : [`freeze_trainable_layer_ids: ${plan.newLayerIds.join(',')}`]
  return [`model_name_or_path: ${output}`, 'finetuning_type: freeze', ...selection].join('\n')
}

export async function expandCheckpoint(
  src: string,
  dst: string,
  options: ExpandCheckpointOptions,
): Promise<ExpandResult & { hint: string }> {
  const started = performance.now()
  const checkpoint = await openCheckpoint(src)
  const plan = planExpansion(checkpoint.config.numLayers, options)
  const shardSize = parseSize(options.shardSize ?? DEFAULT_SHARD_SIZE, 'shard size')
  await checkOutputDir(dst, options.force ?? false, 'pass --force')

  const tensors = expandedTensors(checkpoint, plan)
  const bytesTotal = tensors.reduce((sum, t) => sum + t.nbytes, 0)
  const totalParameters = tensors.reduce((sum, t) => sum + t.nbytes / SAFETENSORS_DTYPE_SIZES[t.dtype], 0)
  const copier = new StreamCopier(({ bytesDone, tensorsDone }) =>
    options.onProgress?.({ bytesDone, bytesTotal, tensorsDone, tensorsTotal: tensors.length }),
  )
  const raw = expandedRawConfig(checkpoint.rawConfig, plan.originalNumLayers, plan.insertAfter)
  const written = await writeFolderAtomically(
    dst,
    async (tmp) => {
      try {
        const shards = await writeShardedSafetensors(
          tmp,
          tensors,
          shardSize,
          totalParameters,
          (path, header, ordered) =>
            copier.writeFile(
              path,
              header,
              ordered.map((t) => t.source),
              options.signal,
            ),
        )
        await copySideFiles(checkpoint.dir, tmp)
        await writeFile(join(tmp, CONFIG_FILE), configJson(raw))
        await writeFile(join(tmp, EXPANSION_RECORD_FILE), `${JSON.stringify(expansionRecord(plan), null, 2)}\n`)
        return shards
      } finally {
        await copier.close()
      }
    },
    { onWarning: options.onWarning },
  )
  const sourceLayerOf: Record<number, number> = {}
  plan.newLayerIds.forEach((id, i) => {
    sourceLayerOf[id] = plan.insertAfter[i]!
  })
  return {
    output: dst,
    originalNumLayers: plan.originalNumLayers,
    numLayers: plan.numLayers,
    newLayerIds: plan.newLayerIds,
    sourceLayerOf,
    files: written.files,
    bytesWritten: written.bytes,
    seconds: (performance.now() - started) / 1000,
    hint: fineTuneHint(dst, plan),
  }
}
