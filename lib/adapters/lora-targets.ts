/**
 * Which linear layers get LoRA adapters and which parameters train, as LLaMA-Factory 0.9.5 decides it
 * (`model/adapter.py` `_setup_lora_tuning`, `model/model_utils/misc.py`) and PEFT then matches it:
 *
 *  - `lora_target: all` = the short names of every linear layer whose name does not contain `lm_head`
 *    (`find_all_linear_modules`); otherwise the comma list as given.
 *  - without `use_llama_pro`, PEFT wraps every module whose name equals a target or ends with `.<target>`.
 *  - with `use_llama_pro`, `find_expanded_modules` keeps the module names that contain a target (substring) and
 *    lie in a layer of the expanded-block stride rule (llamaProLayerIds, shared with freeze tuning); PEFT then
 *    wraps exactly those names. A matched module that is not a linear layer (e.g. `self_attn` itself) is an error,
 *    as PEFT raises for it.
 *  - `additional_target` modules train in full (PEFT's modules_to_save: every module whose name ends with the
 *    target, as `key.endswith(target_key)` in peft/utils/other.py: `norm` is the final norm and every layernorm).
 */
import { parseLayerName } from '../checkpoint/parameters.js'
import {
  PolicyError,
  describeIds,
  llamaProLayerIds,
  llamaProStride,
  ordinal,
  splitList,
} from '../policy/freeze-policy.js'

export interface LoraTargetOptions {
  loraTarget?: string | readonly string[]
  useLlamaPro?: boolean
  /** With useLlamaPro: the number of expanded blocks (default 2, as LLaMA-Factory). */
  freezeTrainableLayers?: number
  additionalTarget?: string | readonly string[] | null
}

export interface LoraPlan {
  finetuningType: 'lora'
  numLayers: number
  /** Layers that carry at least one adapter. */
  trainableLayerIds: number[]
  /** Full module names that get an adapter (model.layers.3.self_attn.q_proj), in model order. */
  targets: string[]
  /** target_modules as LLaMA-Factory hands it to PEFT (and adapter_config.json records it). */
  targetModules: string[]
  /** additional_target as given (adapter_config.json's modules_to_save), or null. */
  modulesToSave: string[] | null
  /** Parameters trained in full because of additional_target. */
  fullyTrained: string[]
  /** Adapter parameter names (lora_A then lora_B per target) plus fullyTrained. */
  trainable: string[]
  explanation: string[]
}

export const loraParameterNames = (target: string): [string, string] => [
  `${target}.lora_A.weight`,
  `${target}.lora_B.weight`,
]

interface ModuleInfo {
  name: string
  linear: boolean
}

/**
 * Every module that owns or contains a parameter, in first-seen order; linear = holds a 2-D weight (not an embedding).
 */
function modulesOf(tensors: readonly { name: string; shape: readonly number[] }[]): ModuleInfo[] {
  const out = new Map<string, ModuleInfo>()
  for (const t of tensors) {
    const parts = t.name.split('.')
    for (let i = 1; i < parts.length; i++) {
      const name = parts.slice(0, i).join('.')
      if (!out.has(name)) out.set(name, { name, linear: false })
    }
    const owner = parts.slice(0, -1).join('.')
    if (parts[parts.length - 1] === 'weight' && t.shape.length === 2 && !owner.endsWith('embed_tokens'))
      out.get(owner)!.linear = true
  }
  return [...out.values()]
}

export function loraPolicy(
  numLayers: number,
  tensors: readonly { name: string; shape: readonly number[] }[],
  options: LoraTargetOptions = {},
): LoraPlan {
  const modules = modulesOf(tensors)
  const explanation: string[] = []
  let targetModules = splitList(options.loraTarget ?? 'all').filter(Boolean)
  if (targetModules.length === 0)
    throw new PolicyError('lora_target is empty (use all, or module names such as q_proj,v_proj)')
  if (targetModules.length === 1 && targetModules[0] === 'all') {
    targetModules = [
      ...new Set(modules.filter((m) => m.linear && !m.name.includes('lm_head')).map((m) => m.name.split('.').pop()!)),
    ]
    explanation.push(`lora_target: all = every linear layer but lm_head: ${targetModules.join(', ')}.`)
  }
  let matched: ModuleInfo[]
  let layerIds: number[] | null = null
  if (options.useLlamaPro) {
    const n = options.freezeTrainableLayers ?? 2
    const stride = llamaProStride(numLayers, n)
    layerIds = llamaProLayerIds(numLayers, n)
    const layers = new Set(layerIds)
    matched = modules.filter((m) => {
      const layer = parseLayerName(`${m.name}.`)?.layer
      return layer !== undefined && layers.has(layer) && targetModules.some((t) => m.name.includes(t))
    })
    targetModules = matched.map((m) => m.name)
    explanation.push(
      `use_llama_pro: freeze_trainable_layers: ${n} counts expanded blocks; stride = ${numLayers} / ${n} = ` +
        `${stride}: adapters go on every ${ordinal(stride)} layer only: ${describeIds(layerIds)}.`,
    )
  } else {
    matched = modules.filter((m) => targetModules.some((t) => m.name === t || m.name.endsWith(`.${t}`)))
  }
  if (matched.length === 0) {
    const valid = [
      ...new Set(modules.filter((m) => m.linear && parseLayerName(`${m.name}.`)).map((m) => m.name.split('.').pop()!)),
    ]
    throw new PolicyError(
      `Target modules ${JSON.stringify(splitList(options.loraTarget ?? 'all'))} not found in the base model ` +
        `(lora_target; valid: all, ${valid.join(', ')})`,
    )
  }
  for (const m of matched) {
    if (!m.linear) {
      throw new PolicyError(
        `lora_target matches ${m.name}, which is not a linear layer (PEFT raises "Target module ... is not ` +
          `supported"): name linear layers such as q_proj, v_proj, down_proj`,
      )
    }
    if (!parseLayerName(`${m.name}.`)) {
      throw new PolicyError(
        `lora_target matches ${m.name}: llamapro puts adapters only on the decoder layers' linear layers; train ` +
          `${m.name} in full with additional_target: ${m.name.split('.').pop()}`,
      )
    }
  }
  const targets = matched.map((m) => m.name)
  const trainableLayerIds =
    layerIds ?? [...new Set(targets.map((t) => parseLayerName(`${t}.`)!.layer))].sort((a, b) => a - b)
  explanation.push(
    `${targets.length} adapter(s) on ${describeIds(trainableLayerIds)}${layerIds ? '' : ' (layers)'}; every base ` +
      `weight stays frozen.`,
  )

  const modulesToSave =
    options.additionalTarget === undefined || options.additionalTarget === null
      ? null
      : splitList(options.additionalTarget).filter(Boolean)
  const fullyTrained: string[] = []
  for (const target of modulesToSave ?? []) {
    const owners = modules.filter((m) => m.name.endsWith(target))
    if (owners.length === 0) {
      const tied = target === 'lm_head' && !tensors.some((t) => t.name === 'lm_head.weight')
      throw new PolicyError(
        tied
          ? 'additional_target: lm_head is not found: this model ties its output layer to its input embeddings ' +
              '(tie_word_embeddings), so lm_head is embed_tokens. Use additional_target: embed_tokens'
          : `additional_target: module ${target} is not found (valid: embed_tokens, norm, lm_head, or a layer module ` +
              `such as model.layers.0.mlp.down_proj)`,
      )
    }
    for (const owner of owners) {
      for (const t of tensors)
        if (t.name.startsWith(`${owner.name}.`) && !fullyTrained.includes(t.name)) fullyTrained.push(t.name)
    }
  }
  if (modulesToSave)
    explanation.push(`additional_target: ${modulesToSave.join(', ')} train in full (saved as modules_to_save).`)
  const trainable = [
    ...targets.flatMap(loraParameterNames),
    ...fullyTrained.filter((n) => !targets.some((t) => n.startsWith(`${t}.`))),
  ]
  return {
    finetuningType: 'lora',
    numLayers,
    trainableLayerIds,
    targets,
    targetModules,
    modulesToSave,
    fullyTrained,
    trainable,
    explanation,
  }
}
