/**
 * `llamapro plan`: what a freeze strategy trains in a given checkpoint, layer by layer, what it costs, and, with
 * use_llama_pro, in words which layers train and whether they are the expanded blocks. Reads only headers (and
 * the bytes of candidate new blocks' projections): no LibTorch, no weights in memory.
 */
import { open } from 'node:fs/promises'
import { type Checkpoint, type TensorLocation, openCheckpoint } from '../checkpoint/checkpoint.js'
import type { ModelDtype } from '../checkpoint/dtypes.js'
import { parseLayerName } from '../checkpoint/parameters.js'
import { readExpansionRecord } from '../expand/record.js'
import { ZEROED_IN_NEW_BLOCKS } from '../expand/expand-checkpoint.js'
import { type FreezeOptions, type TrainablePlan, freezePolicy } from './freeze-policy.js'
import { type LoraTargetOptions, loraPolicy } from '../adapters/lora-targets.js'
import { type MemoryEstimate, estimateTrainingMemory } from './memory-estimate.js'
import { kernelOptions } from '../native/kernel-options.js'

export interface PlanInput {
  modelDir: string
  /** finetuning_type lora: the LoRA keys too (loraRank default 8). */
  options: FreezeOptions & LoraTargetOptions & { loraRank?: number }
  batch: number
  seq: number
  computeDtype: ModelDtype
  masterDtype: ModelDtype
  attention?: 'grouped' | 'flash'
  /** Where training would run: float32 on the CPU uses llamapro's fused kernels, which keep less (default cpu). */
  device?: 'cpu' | 'cuda'
  /** Activation checkpointing of the decoder layers (default true). */
  gradientCheckpointing?: boolean
  /** With checkpointing, the frozen layers backward passes through are recomputed too (default false). */
  checkpointFrozenLayers?: boolean
  /** Data-parallel ranks (the estimate is per rank), ZeRO stage and gradient bucket size. */
  nproc?: number
  zeroStage?: 0 | 1
  bucketBytes?: number
}

export interface PlanLayer {
  index: number
  isNew: boolean
  /** Per-layer modules with trainable parameters in this layer. */
  trainableModules: string[]
}

export interface PlanReport {
  model: string
  modelType: string
  numLayers: number
  newLayerIds: number[]
  newLayersFrom: 'llamapro_expansion.json' | 'zero o_proj/down_proj' | 'none found'
  strategy: Required<Pick<FreezeOptions, 'finetuningType' | 'useLlamaPro'>> & PlanInput['options']
  trainableLayerIds: number[]
  layers: PlanLayer[]
  extraModules: string[]
  trainable: string[]
  frozen: string[]
  trainableParams: number
  totalParams: number
  trainablePercent: number
  memory: MemoryEstimate & { batch: number; seq: number; computeDtype: ModelDtype; masterDtype: ModelDtype }
  explanation: string[]
}

/** True when the tensor's bytes are all zero; reads a small prefix first, so ordinary layers cost one read. */
async function isAllZero(location: TensorLocation): Promise<boolean> {
  const handle = await open(location.file, 'r')
  try {
    const chunk = Buffer.alloc(Math.min(location.nbytes, 1 << 20))
    for (let done = 0; done < location.nbytes; ) {
      const n = Math.min(chunk.length, location.nbytes - done)
      await handle.read(chunk, 0, n, location.offset + done)
      for (let i = 0; i < n; i++) if (chunk[i] !== 0) return false
      done += n
    }
    return true
  } finally {
    await handle.close()
  }
}

async function findNewLayers(checkpoint: Checkpoint): Promise<{ ids: number[]; from: PlanReport['newLayersFrom'] }> {
  const record = await readExpansionRecord(checkpoint.dir)
  if (record && record.num_layers === checkpoint.config.numLayers)
    return { ids: record.new_layer_ids, from: 'llamapro_expansion.json' }
  const byLayer = new Map<number, TensorLocation[]>()
  for (const t of checkpoint.tensors) {
    const parsed = parseLayerName(t.name)
    if (parsed && ZEROED_IN_NEW_BLOCKS.test(parsed.rest))
      byLayer.set(parsed.layer, [...(byLayer.get(parsed.layer) ?? []), t])
  }
  const ids: number[] = []
  for (const [layer, tensors] of [...byLayer].sort((a, b) => a[0] - b[0])) {
    let zero = true
    for (const t of tensors) {
      if (!(await isAllZero(t))) {
        zero = false
        break
      }
    }
    if (zero) ids.push(layer)
  }
  return { ids, from: ids.length > 0 ? 'zero o_proj/down_proj' : 'none found' }
}

export async function planTraining(input: PlanInput): Promise<PlanReport> {
  const checkpoint = await openCheckpoint(input.modelDir)
  const names = checkpoint.tensors.map((t) => t.name)
  const numel = (t: { shape: readonly number[] }) => t.shape.reduce((a, b) => a * b, 1)
  const parameters = checkpoint.tensors.map((t) => ({ name: t.name, numel: numel(t) }))
  let policy: Omit<TrainablePlan, 'finetuningType'> & { finetuningType: string }
  if (input.options.finetuningType === 'lora') {
    // The adapters are parameters of their own (A [r, in], B [out, r]); the memory walk sees their layers train.
    const rank = input.options.loraRank ?? 8
    const lora = loraPolicy(checkpoint.config.numLayers, checkpoint.tensors, input.options)
    const shapes = new Map(checkpoint.tensors.map((t) => [t.name, t.shape]))
    for (const target of lora.targets) {
      const [out, inFeatures] = shapes.get(`${target}.weight`)!
      parameters.push(
        { name: `${target}.lora_A.weight`, numel: rank * inFeatures! },
        { name: `${target}.lora_B.weight`, numel: out! * rank },
      )
    }
    const fully = new Set(lora.fullyTrained)
    policy = {
      finetuningType: 'lora',
      numLayers: lora.numLayers,
      trainableLayerIds: lora.trainableLayerIds,
      layerModules: [],
      extraModules: lora.modulesToSave ?? [],
      trainable: lora.trainable,
      frozen: names.filter((n) => !fully.has(n)),
      explanation: [
        ...lora.explanation,
        `lora_rank ${rank}: ${lora.targets.length} adapters (A [${rank}, in], B [out, ${rank}]) in float32 with ` +
          `AdamW state; base weights frozen.`,
      ],
    }
  } else {
    policy = freezePolicy(checkpoint.config.numLayers, names, input.options)
  }
  const { ids: newLayerIds, from } = await findNewLayers(checkpoint)
  const trainable = new Set(policy.trainable)
  const totalParams = parameters.reduce((s, p) => s + p.numel, 0)
  const trainableParams = parameters.filter((p) => trainable.has(p.name)).reduce((s, p) => s + p.numel, 0)

  const layers: PlanLayer[] = Array.from({ length: checkpoint.config.numLayers }, (_, index) => ({
    index,
    isNew: newLayerIds.includes(index),
    trainableModules: [],
  }))
  for (const name of policy.trainable) {
    const parsed = parseLayerName(name)
    if (!parsed) continue
    const module = parsed.rest.split('.')[0]!
    const layer = layers[parsed.layer]!
    if (!layer.trainableModules.includes(module)) layer.trainableModules.push(module)
  }

  const explanation = [...policy.explanation]
  if (
    newLayerIds.length > 0 &&
    (policy.finetuningType === 'freeze' || (policy.finetuningType === 'lora' && input.options.useLlamaPro))
  ) {
    const trainedNew = newLayerIds.filter((id) => policy.trainableLayerIds.includes(id))
    const trainedOld = policy.trainableLayerIds.filter((id) => !newLayerIds.includes(id))
    if (trainedNew.length === newLayerIds.length && trainedOld.length === 0) {
      explanation.push(
        `These are exactly the ${newLayerIds.length} expanded blocks (found from ${from}): every original layer ` +
          `stays frozen.`,
      )
    } else {
      if (trainedOld.length > 0)
        explanation.push(
          `Warning: layers ${trainedOld.join(', ')} are original layers, not expanded blocks, and they will train.`,
        )
      const untrained = newLayerIds.filter((id) => !policy.trainableLayerIds.includes(id))
      if (untrained.length > 0)
        explanation.push(
          `Warning: expanded blocks ${untrained.join(', ')} will stay frozen (identity maps that never learn).`,
        )
    }
  } else if (input.options.useLlamaPro && newLayerIds.length === 0) {
    explanation.push(
      'Note: no expanded blocks were found in this checkpoint (no llamapro_expansion.json, no zero ' +
        'o_proj/down_proj): was it expanded?',
    )
  }

  const memory = estimateTrainingMemory({
    config: checkpoint.config,
    parameters,
    trainable,
    batch: input.batch,
    seq: input.seq,
    computeDtype: input.computeDtype,
    masterDtype: input.masterDtype,
    attention: input.attention,
    device: input.device,
    gradientCheckpointing: input.gradientCheckpointing,
    checkpointFrozenLayers: input.checkpointFrozenLayers,
    nproc: input.nproc,
    zeroStage: input.zeroStage,
    bucketBytes: input.bucketBytes,
    kernels: kernelOptions(), // the kernel switches in effect (environment or setKernelOptions)
  })
  return {
    model: checkpoint.dir,
    modelType: checkpoint.config.modelType,
    numLayers: checkpoint.config.numLayers,
    newLayerIds,
    newLayersFrom: from,
    strategy: {
      ...input.options,
      finetuningType: policy.finetuningType,
      useLlamaPro: input.options.useLlamaPro ?? false,
    },
    trainableLayerIds: policy.trainableLayerIds,
    layers,
    extraModules: policy.extraModules,
    trainable: policy.trainable,
    frozen: policy.frozen,
    trainableParams,
    totalParams,
    trainablePercent: totalParams > 0 ? (100 * trainableParams) / totalParams : 0,
    memory: {
      ...memory,
      batch: input.batch,
      seq: input.seq,
      computeDtype: input.computeDtype,
      masterDtype: input.masterDtype,
    },
    explanation,
  }
}
