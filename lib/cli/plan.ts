import { statSync } from 'node:fs'
import { type ModelDtype, parseModelDtype } from '../checkpoint/dtypes.js'
import { UsageError } from '../errors.js'
import { native } from '../native/load.js'
import { type PlanReport, planTraining } from '../policy/plan.js'
import { loadTrainConfig, trainingDtypes } from '../train/config.js'
import { formatBytes, formatCount } from '../util/format.js'
import { parseArgs, parseInteger, positionals } from './args.js'

export const PLAN_HELP = `llamapro plan <model_dir | train.yaml> [options] [--json]

Shows which layers and modules a freeze strategy trains, which layers are expanded blocks (from
llamapro_expansion.json or their zero o_proj/down_proj), trainable and total parameters, and a memory estimate
(weights, gradients, optimizer state, activations, peak) for one training step. With a train.yaml the strategy,
batch, sequence length and dtype come from it; flags override.

  --finetuning-type freeze|full|lora
  --lora-rank R --lora-target LIST   lora: rank (default 8) and targets (default all: every linear but lm_head)
  --additional-target LIST           lora: modules trained in full beside the adapters (modules_to_save)
  --freeze-trainable-layers N        N > 0 last N layers, N < 0 first |N|; with --use-llama-pro: expanded blocks
  --freeze-trainable-modules LIST    all (default) or mlp,self_attn,input_layernorm,post_attention_layernorm
  --freeze-extra-modules LIST        embed_tokens, norm (the final norm), lm_head
  --freeze-trainable-layer-ids LIST  explicit layers, e.g. 10,16,17,23
  --use-llama-pro                    train the expanded blocks (stride rule of LLaMA-Factory)
  --batch B --seq T                  micro-batch for the activation estimate (default 8 x 2048, or the YAML's)
  --dtype D                          float32 (default), bfloat16 or float16 activations
  --pure-bf16                        bfloat16 master weights too
  --device cpu|cuda                  where training would run (the estimate differs slightly; default cpu)
  --gradient-checkpointing on|off|all
                                     recompute the decoder layers that train in backward (on, the default, or
                                     the YAML's disable_gradient_checkpointing); all: the frozen layers above
                                     the lowest trainable one too (the YAML's checkpoint_frozen_layers)
  --nproc N                          data-parallel ranks: the estimate is per rank (default 1)
  --zero-stage 0|1                   1: ZeRO stage 1, AdamW state sharded over the N ranks (default 0, or the
                                     YAML's zero_stage)
  --json                             print a JSON object instead of text`

function attentionKind(): 'grouped' | 'flash' {
  try {
    return Number(native().runtimeInfo().torchVersion.split('.')[0]) >= 2 ? 'flash' : 'grouped'
  } catch {
    return 'grouped' // the addon is not needed for planning; assume LibTorch 1.x's attention
  }
}

export async function runPlan(argv: string[]): Promise<number> {
  const { values, positionals: args } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      'finetuning-type': { type: 'string' },
      'freeze-trainable-layers': { type: 'string' },
      'freeze-trainable-modules': { type: 'string' },
      'freeze-extra-modules': { type: 'string' },
      'freeze-trainable-layer-ids': { type: 'string' },
      'use-llama-pro': { type: 'boolean' },
      'lora-rank': { type: 'string' },
      'lora-target': { type: 'string' },
      'additional-target': { type: 'string' },
      batch: { type: 'string' },
      seq: { type: 'string' },
      dtype: { type: 'string' },
      'pure-bf16': { type: 'boolean' },
      device: { type: 'string' },
      'gradient-checkpointing': { type: 'string' },
      nproc: { type: 'string' },
      'zero-stage': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  })
  const [source] = positionals(args, ['model_dir | train.yaml'])
  let modelDir = source!
  let base = {
    finetuningType: 'freeze',
    freezeTrainableLayers: 2,
    freezeTrainableModules: 'all',
    freezeExtraModules: null as string | null,
    freezeTrainableLayerIds: null as string | null,
    useLlamaPro: false,
    loraRank: 8,
    loraTarget: 'all',
    additionalTarget: null as string | null,
  }
  let batch = 8
  let seq = 2048
  let dtypes: { compute: ModelDtype; master: ModelDtype } = { compute: 'float32', master: 'float32' }
  let device: 'cpu' | 'cuda' = 'cpu'
  let gradientCheckpointing = true
  let checkpointFrozenLayers = false
  let zeroStage: 0 | 1 = 0
  let bucketBytes = 25 * 1024 * 1024
  let isFile = false
  try {
    isFile = statSync(source!).isFile()
  } catch {
    // not a file: treated as a model folder, which openCheckpoint reports on
  }
  if (isFile) {
    const config = await loadTrainConfig(source!, {}, { partial: true })
    modelDir = config.modelNameOrPath
    base = { ...config }
    batch = config.perDeviceTrainBatchSize
    seq = config.cutoffLen
    dtypes = trainingDtypes(config)
    device = config.device.startsWith('cuda') ? 'cuda' : 'cpu'
    gradientCheckpointing = !config.disableGradientCheckpointing
    checkpointFrozenLayers = config.checkpointFrozenLayers
    zeroStage = config.zeroStage
    bucketBytes = Math.max(1, Math.round(config.ddpBucketCapMb * 1024 * 1024))
  }
  const nproc = parseInteger(values.nproc, '--nproc', { min: 1 }) ?? 1
  if (values['zero-stage'] !== undefined) {
    const flag = values['zero-stage']
    if (flag !== '0' && flag !== '1')
      throw new UsageError(
        `--zero-stage must be 0 or 1 (ZeRO stage 1 shards AdamW's state), got ${JSON.stringify(flag)}`,
      )
    zeroStage = flag === '1' ? 1 : 0
  }
  if (values['gradient-checkpointing'] !== undefined) {
    const flag = values['gradient-checkpointing']
    if (flag !== 'on' && flag !== 'off' && flag !== 'all')
      throw new UsageError(`--gradient-checkpointing must be on, off or all, got ${JSON.stringify(flag)}`)
    gradientCheckpointing = flag !== 'off'
    checkpointFrozenLayers = flag === 'all'
  }
  if (values.device !== undefined) {
    if (!/^(cpu|cuda(:\d+)?)$/.test(values.device))
      throw new UsageError(`--device must be cpu or cuda, got ${JSON.stringify(values.device)}`)
    device = values.device.startsWith('cuda') ? 'cuda' : 'cpu'
  }
  const layers = parseInteger(values['freeze-trainable-layers'], '--freeze-trainable-layers')
  if (values.dtype !== undefined) {
    const compute = parseModelDtype(values.dtype)
    if (!compute)
      throw new UsageError(`--dtype must be float32, bfloat16 or float16, got ${JSON.stringify(values.dtype)}`)
    dtypes = { compute, master: dtypes.master }
  }
  if (values['pure-bf16']) dtypes = { compute: 'bfloat16', master: 'bfloat16' }
  const report = await planTraining({
    modelDir,
    options: {
      finetuningType: values['finetuning-type'] ?? base.finetuningType,
      freezeTrainableLayers: layers ?? base.freezeTrainableLayers,
      freezeTrainableModules: values['freeze-trainable-modules'] ?? base.freezeTrainableModules,
      freezeExtraModules: values['freeze-extra-modules'] ?? base.freezeExtraModules,
      freezeTrainableLayerIds: values['freeze-trainable-layer-ids'] ?? base.freezeTrainableLayerIds,
      useLlamaPro: values['use-llama-pro'] ?? base.useLlamaPro,
      loraRank: parseInteger(values['lora-rank'], '--lora-rank', { min: 1 }) ?? base.loraRank,
      loraTarget: values['lora-target'] ?? base.loraTarget,
      additionalTarget: values['additional-target'] ?? base.additionalTarget,
    },
    batch: parseInteger(values.batch, '--batch', { min: 1 }) ?? batch,
    seq: parseInteger(values.seq, '--seq', { min: 2 }) ?? seq,
    computeDtype: dtypes.compute,
    masterDtype: dtypes.master,
    attention: attentionKind(),
    device,
    gradientCheckpointing,
    checkpointFrozenLayers,
    nproc,
    zeroStage,
    bucketBytes,
  })
  console.log(values.json ? JSON.stringify(report, null, 2) : formatPlan(report))
  return 0
}

export function formatPlan(r: PlanReport): string {
  const lines: string[] = []
  lines.push(`model     ${r.model} (${r.modelType}, ${r.numLayers} layers)`)
  const s = r.strategy
  lines.push(
    `strategy  finetuning_type: ${s.finetuningType}` +
      (s.finetuningType === 'freeze'
        ? s.freezeTrainableLayerIds
          ? `, freeze_trainable_layer_ids: ${s.freezeTrainableLayerIds}`
          : `, freeze_trainable_layers: ${s.freezeTrainableLayers}${s.useLlamaPro ? ', use_llama_pro: true' : ''}`
        : '') +
      (s.finetuningType === 'freeze' && s.freezeTrainableModules && s.freezeTrainableModules !== 'all'
        ? `, modules: ${s.freezeTrainableModules}`
        : '') +
      (s.finetuningType === 'lora'
        ? `, lora_rank: ${s.loraRank ?? 8}, lora_target: ` +
          `${s.loraTarget ?? 'all'}${s.useLlamaPro ? `, use_llama_pro: true, freeze_trainable_layers: ${s.freezeTrainableLayers}` : ''}${s.additionalTarget ? `, additional_target: ${s.additionalTarget}` : ''}`
        : '') +
      (s.finetuningType !== 'lora' && s.freezeExtraModules ? `, extra: ${s.freezeExtraModules}` : ''),
  )
  lines.push('')
  for (const line of r.explanation) lines.push(`  ${line}`)
  lines.push('')
  lines.push('  layer  block      trains')
  for (const layer of r.layers) {
    const trains = layer.trainableModules.length === 0 ? '-' : layer.trainableModules.join(', ')
    lines.push(`  ${String(layer.index).padStart(5)}  ${(layer.isNew ? 'expanded' : 'original').padEnd(9)}  ${trains}`)
  }
  if (r.extraModules.length > 0) lines.push(`  outside the layers: ${r.extraModules.join(', ')}`)
  lines.push('')
  lines.push(
    `parameters  ${formatCount(r.trainableParams)} trainable of ${formatCount(r.totalParams)} ` +
      `(${r.trainablePercent.toFixed(2)}%)`,
  )
  const m = r.memory
  lines.push(
    `memory      one step, batch ${m.batch} x ${m.seq}, ${m.computeDtype} activations, ${m.masterDtype} master ` +
      `weights, activation checkpointing ` +
      `${m.gradientCheckpointing ? (m.checkpointFrozenLayers ? 'on, frozen layers too' : 'on') : 'off'}`,
  )
  if (m.nproc > 1)
    lines.push(
      `            per rank of ` +
        `${m.nproc}${m.zeroStage === 1 ? `, ZeRO stage 1: optimizer state is this rank's 1/${m.nproc} share` : ', every rank holds the whole optimizer state (zero_stage 0)'}`,
    )
  for (const [label, value] of [
    ['weights', m.weights],
    ['gradients', m.gradients],
    ['optimizer', m.optimizer],
    ...(m.nproc > 1 ? ([['buckets', m.communication]] as const) : []),
    ['activations', m.activations],
    ...(m.gradientCheckpointing ? ([['recomputed', m.recomputed]] as const) : []),
    ['peak', m.peak],
  ] as const) {
    lines.push(`  ${label.padEnd(12)} ${formatBytes(value).padStart(10)}`)
  }
  return lines.join('\n')
}
