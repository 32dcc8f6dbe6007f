/**
 * Which parameters train: LLaMA-Factory's freeze-tuning rules as a pure function of (layer count, parameter
 * names, options). Results and errors agree with LLaMA-Factory for every combination it accepts, with two
 * deliberate differences, both documented in docs/llamafactory-differences.md:
 *
 *  - module names match exactly. LLaMA-Factory matches `freeze_extra_modules` by substring, so `norm` there also
 *    unfreezes every layer's input_layernorm and post_attention_layernorm; here `norm` is the final norm only.
 *  - `use_llama_pro` with `freeze_trainable_layers` <= 0 is an error. LLaMA-Factory divides by zero for 0 and
 *    silently trains no layer for most negative values.
 *
 * Beyond LLaMA-Factory: `freeze_trainable_layer_ids` names the layers explicitly (e.g. "10,16,17,23").
 */
import { LlamaproError } from '../errors.js'
import { parseLayerName } from '../checkpoint/parameters.js'

export type FinetuningType = 'freeze' | 'full'

export interface FreezeOptions {
  /** 'freeze' (default) or 'full'. */
  finetuningType?: string
  /**
   * N > 0: the last N layers train; N < 0: the first |N|. With useLlamaPro: N counts the expanded blocks. Default 2.
   */
  freezeTrainableLayers?: number
  /** 'all' (default) or per-layer module names: self_attn, mlp, input_layernorm, post_attention_layernorm. */
  freezeTrainableModules?: string | readonly string[]
  /** Non-layer modules that also train: embed_tokens, norm, lm_head. */
  freezeExtraModules?: string | readonly string[] | null
  useLlamaPro?: boolean
  /** Explicit layer indices (replaces freezeTrainableLayers). */
  freezeTrainableLayerIds?: string | readonly number[] | null
}

export interface TrainablePlan {
  finetuningType: FinetuningType
  numLayers: number
  trainableLayerIds: number[]
  /** Per-layer modules that train in those layers ('all' expanded to the module names). */
  layerModules: string[]
  extraModules: string[]
  trainable: string[]
  frozen: string[]
  /** Plain-language account of the selection, for `llamapro plan`. */
  explanation: string[]
}

export class PolicyError extends LlamaproError {
  constructor(message: string) {
    super('LLAMAPRO_POLICY', message)
    this.name = 'PolicyError'
  }
}

/** LLaMA-Factory's split_arg: "a, b" -> ["a", "b"]; lists pass through. */
export function splitList(value: string | readonly string[]): string[] {
  return typeof value === 'string' ? value.split(',').map((s) => s.trim()) : [...value]
}

function parseLayerIds(value: string | readonly number[], numLayers: number): number[] {
  const items = typeof value === 'string' ? value.split(',').map((s) => s.trim()) : value.map(String)
  const ids: number[] = []
  for (const item of items) {
    if (!/^\d+$/.test(item))
      throw new PolicyError(
        `freeze_trainable_layer_ids: ${JSON.stringify(item)} is not a layer index (use a list such as 10,16,17,23)`,
      )
    const id = Number(item)
    if (id >= numLayers)
      throw new PolicyError(
        `freeze_trainable_layer_ids: layer ${id} is out of range; the model has ${numLayers} layers ` +
          `(0..${numLayers - 1})`,
      )
    if (ids.includes(id)) throw new PolicyError(`freeze_trainable_layer_ids: layer ${id} is listed twice`)
    ids.push(id)
  }
  if (ids.length === 0) throw new PolicyError('freeze_trainable_layer_ids is empty')
  return ids.sort((a, b) => a - b)
}

/** Per-layer module names (the component after `model.layers.<i>.`) in first-seen order. */
export function layerModuleNames(names: readonly string[]): string[] {
  const out: string[] = []
  for (const name of names) {
    const parsed = parseLayerName(name)
    const module = parsed?.rest.split('.')[0]
    if (module && !out.includes(module)) out.push(module)
  }
  return out
}

/** Modules outside the layers (the component before .weight/.bias): embed_tokens, norm, lm_head. */
export function extraModuleNames(names: readonly string[]): string[] {
  const out: string[] = []
  for (const name of names) {
    if (parseLayerName(name)) continue
    const parts = name.split('.')
    const module = parts[parts.length - 2]
    if (module && !out.includes(module)) out.push(module)
  }
  return out
}

export const describeIds = (ids: readonly number[]) =>
  ids.length <= 12 ? ids.join(', ') : `${ids.slice(0, 5).join(', ')}, ..., ${ids.slice(-3).join(', ')}`

/**
 * LLaMA-Pro's expanded blocks, the one place this rule lives (freeze tuning and LoRA targets both use it):
 * `n` counts the expanded blocks, stride = numLayers / n, and layers stride-1, 2·stride-1, …, numLayers-1 train
 * (LLaMA-Factory's `range(stride - 1, num_layers + stride - 1, stride)`). Errors as LLaMA-Factory's, plus n <= 0.
 */
export function llamaProStride(numLayers: number, n: number): number {
  if (!Number.isInteger(n) || n <= 0) {
    throw new PolicyError(
      `freeze_trainable_layers is ${n} with use_llama_pro: it must be the number of expanded blocks (a positive ` +
        `divisor of ${numLayers}), ` +
        'e.g. 8 for a 32-layer model expanded to 40 layers',
    )
  }
  if (numLayers % n !== 0) {
    throw new PolicyError(
      `\`num_layers\` ${numLayers} should be divisible by \`num_layer_trainable\` ${n}. ` +
        `With use_llama_pro, freeze_trainable_layers counts the expanded blocks: for this ${numLayers}-layer model ` +
        `it must divide ${numLayers}.`,
    )
  }
  return numLayers / n
}

/** The layer indices use_llama_pro trains (see llamaProStride). */
export function llamaProLayerIds(numLayers: number, n: number): number[] {
  const stride = llamaProStride(numLayers, n)
  return Array.from({ length: n }, (_, i) => (i + 1) * stride - 1)
}

export function freezePolicy(
  numLayers: number,
  parameterNames: readonly string[],
  options: FreezeOptions = {},
): TrainablePlan {
  const finetuningType = options.finetuningType ?? 'freeze'
  const useLlamaPro = options.useLlamaPro ?? false
  if (finetuningType === 'lora') {
    throw new PolicyError(
      'finetuning_type "lora" is not a freeze strategy: its adapters and trainable set come from loraPolicy ' +
        '(lib/adapters/lora-targets.ts)',
    )
  }
  if (finetuningType !== 'freeze' && finetuningType !== 'full') {
    throw new PolicyError(
      `finetuning_type ${JSON.stringify(finetuningType)} is not supported (valid: freeze, full, lora)`,
    )
  }
  if (useLlamaPro && finetuningType === 'full') {
    throw new PolicyError(
      '`use_llama_pro` is only valid for Freeze or LoRA training. Use finetuning_type: freeze to train the expanded ' +
        'blocks.',
    )
  }
  if (!Number.isInteger(numLayers) || numLayers <= 0)
    throw new PolicyError('Current model does not support freeze tuning (no layers).')
  const allModules = layerModuleNames(parameterNames)
  if (finetuningType === 'full') {
    return {
      finetuningType,
      numLayers,
      trainableLayerIds: Array.from({ length: numLayers }, (_, i) => i),
      layerModules: allModules,
      extraModules: extraModuleNames(parameterNames),
      trainable: [...parameterNames],
      frozen: [],
      explanation: ['finetuning_type: full trains every parameter.'],
    }
  }

  const explanation: string[] = []
  const n = options.freezeTrainableLayers ?? 2
  if (!Number.isInteger(n)) throw new PolicyError(`freeze_trainable_layers must be an integer, got ${n}`)
  let layerIds: number[]
  if (options.freezeTrainableLayerIds !== undefined && options.freezeTrainableLayerIds !== null) {
    if (useLlamaPro)
      throw new PolicyError(
        'give either freeze_trainable_layer_ids or use_llama_pro, not both (the ids already say which layers train)',
      )
    layerIds = parseLayerIds(options.freezeTrainableLayerIds, numLayers)
    explanation.push(`freeze_trainable_layer_ids: layers ${describeIds(layerIds)} train, as listed.`)
  } else if (useLlamaPro) {
    const stride = llamaProStride(numLayers, n)
    layerIds = llamaProLayerIds(numLayers, n)
    explanation.push(
      `use_llama_pro: freeze_trainable_layers: ${n} counts expanded blocks; it does not mean "the last ${n} layers".`,
      `stride = ${numLayers} / ${n} = ${stride}: every ${ordinal(stride)} layer trains, ending with the last: layers ` +
        `${describeIds(layerIds)}.`,
    )
  } else if (n > 0) {
    layerIds = range(Math.max(0, numLayers - n), numLayers)
    explanation.push(
      `freeze_trainable_layers: ${n} trains the last ${Math.min(n, numLayers)} layers: ${describeIds(layerIds)}.`,
    )
  } else {
    layerIds = range(0, Math.min(-n, numLayers))
    explanation.push(
      n === 0
        ? 'freeze_trainable_layers: 0 trains no layer.'
        : `freeze_trainable_layers: ${n} trains the first ${Math.min(-n, numLayers)} layers: ${describeIds(layerIds)}.`,
    )
  }

  const requested = splitList(options.freezeTrainableModules ?? 'all')
  for (const module of requested) {
    if (module !== 'all' && !allModules.includes(module)) {
      throw new PolicyError(`Module ${module} is not found, please choose from ${allModules.join(', ')} (or all)`)
    }
  }
  const layerModules = requested.includes('all') ? allModules : allModules.filter((m) => requested.includes(m))
  if (!requested.includes('all'))
    explanation.push(`freeze_trainable_modules: only ${layerModules.join(', ')} of those layers train.`)

  const extras =
    options.freezeExtraModules === undefined || options.freezeExtraModules === null
      ? []
      : splitList(options.freezeExtraModules)
  const validExtras = extraModuleNames(parameterNames)
  for (const module of extras) {
    if (validExtras.includes(module)) continue
    if (module === 'lm_head' && validExtras.includes('embed_tokens')) {
      throw new PolicyError(
        'Module lm_head is not found: this model ties its output layer to its input embeddings (tie_word_embeddings), ' +
          'so lm_head is embed_tokens. Use freeze_extra_modules: embed_tokens',
      )
    }
    throw new PolicyError(`Module ${module} is not found, please choose from ${validExtras.join(', ')}`)
  }
  if (extras.length > 0)
    explanation.push(
      `freeze_extra_modules: ${extras.join(', ')} also ` +
        `train${extras.includes('norm') ? ' (norm is the final norm only)' : ''}.`,
    )

  const trainableLayers = new Set(layerIds)
  const trainable: string[] = []
  const frozen: string[] = []
  for (const name of parameterNames) {
    const parsed = parseLayerName(name)
    let trains: boolean
    if (parsed) {
      trains = trainableLayers.has(parsed.layer) && layerModules.includes(parsed.rest.split('.')[0]!)
    } else {
      const parts = name.split('.')
      trains = extras.includes(parts[parts.length - 2]!)
    }
    ;(trains ? trainable : frozen).push(name)
  }
  return {
    finetuningType,
    numLayers,
    trainableLayerIds: layerIds,
    layerModules,
    extraModules: extras,
    trainable,
    frozen,
    explanation,
  }
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i)
}

export function ordinal(n: number): string {
  const suffix =
    n % 100 >= 11 && n % 100 <= 13 ? 'th' : (({ 1: 'st', 2: 'nd', 3: 'rd' } as Record<number, string>)[n % 10] ?? 'th')
  return `${n}${suffix}`
}
