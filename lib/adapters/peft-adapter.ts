/**
 * LoRA adapters in PEFT's folder format, which PEFT's `PeftModel.from_pretrained`, vLLM's `--lora-modules` and
 * llama.cpp's `convert_lora_to_gguf.py` read:
 *
 *   adapter_config.json        peft_type LORA, task_type CAUSAL_LM, r, lora_alpha, lora_dropout, target_modules,
 *                              modules_to_save, use_rslora, base_model_name_or_path, …
 *   adapter_model.safetensors  base_model.model.<module>.lora_A.weight [r, in] and .lora_B.weight [out, r] per
 *                              adapted linear layer; base_model.model.<param> for each modules_to_save parameter
 *
 * (PEFT strips the adapter name "default" from saved names.) llamapro's parameter names are the same without the
 * `base_model.model.` prefix.
 */
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { readSafetensorsHeader, type SafetensorsFile } from '../checkpoint/safetensors.js'
import { LlamaproError } from '../errors.js'

export const ADAPTER_CONFIG_FILE = 'adapter_config.json'
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors'
export const PEFT_PREFIX = 'base_model.model.'

export class AdapterError extends LlamaproError {
  constructor(message: string) {
    super('LLAMAPRO_ADAPTER', message)
    this.name = 'AdapterError'
  }
}

/** What llamapro needs of a LoRA adapter's configuration. */
export interface LoraAdapterConfig {
  r: number
  loraAlpha: number
  loraDropout: number
  useRslora: boolean
  /** As recorded: a list of module names / suffixes (or a regular expression string in PEFT's format). */
  targetModules: string[] | string
  modulesToSave: string[] | null
  baseModelNameOrPath: string | null
}

export const loraScale = (c: Pick<LoraAdapterConfig, 'r' | 'loraAlpha' | 'useRslora'>): number =>
  c.useRslora ? c.loraAlpha / Math.sqrt(c.r) : c.loraAlpha / c.r

/**
 * adapter_config.json as PEFT 0.18's LoraConfig.save_pretrained writes it (the fields llamapro uses, the rest at PEFT's
 * defaults).
 */
export function adapterConfigJson(config: LoraAdapterConfig): string {
  const json = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: config.baseModelNameOrPath,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: config.loraAlpha,
    lora_dropout: config.loraDropout,
    modules_to_save: config.modulesToSave,
    peft_type: 'LORA',
    r: config.r,
    rank_pattern: {},
    revision: null,
    target_modules: config.targetModules,
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: config.useRslora,
  }
  return `${JSON.stringify(json, null, 2)}\n`
}

/** PEFT options that change the math and that llamapro does not implement: an adapter using them is refused. */
const UNSUPPORTED: [string, (v: unknown) => boolean, string][] = [
  ['use_dora', (v) => v === true, 'DoRA'],
  ['fan_in_fan_out', (v) => v === true, 'fan_in_fan_out (Conv1D-style weights)'],
  ['bias', (v) => v !== undefined && v !== null && v !== 'none', 'trained biases (bias other than "none")'],
  [
    'rank_pattern',
    (v) => v !== undefined && v !== null && Object.keys(v as object).length > 0,
    'per-module ranks (rank_pattern)',
  ],
  [
    'alpha_pattern',
    (v) => v !== undefined && v !== null && Object.keys(v as object).length > 0,
    'per-module alphas (alpha_pattern)',
  ],
  ['use_qalora', (v) => v === true, 'QALoRA'],
  ['lora_bias', (v) => v === true, 'lora_bias'],
]

export interface AdapterFolder {
  dir: string
  config: LoraAdapterConfig
  weightsPath: string
  file: SafetensorsFile
  /** Adapted modules (llamapro names), from the lora_A tensors, in file order. */
  targets: string[]
  /** modules_to_save parameters the file holds (llamapro names). */
  fullyTrained: string[]
}

/** Whether `dir` is meant as a PEFT adapter folder: it holds adapter_config.json (readAdapter checks the rest). */
export const isAdapterFolder = (dir: string): boolean => existsSync(join(dir, ADAPTER_CONFIG_FILE))

/** Reads and validates an adapter folder (PEFT format): config, tensor names, shapes and rank. */
export async function readAdapter(dir: string): Promise<AdapterFolder> {
  const configPath = join(dir, ADAPTER_CONFIG_FILE)
  const weightsPath = join(dir, ADAPTER_WEIGHTS_FILE)
  if (!existsSync(configPath))
    throw new AdapterError(`${dir} is not a PEFT adapter folder: ${ADAPTER_CONFIG_FILE} is missing`)
  if (!existsSync(weightsPath)) {
    const bin = existsSync(join(dir, 'adapter_model.bin'))
    throw new AdapterError(
      `${dir}: ${ADAPTER_WEIGHTS_FILE} is ` +
        `missing${bin ? ' (the folder has adapter_model.bin, a pickle llamapro does not read: re-save it with safe_serialization=True)' : ''}`,
    )
  }
  let raw: Record<string, unknown>
  try {
    raw = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>
  } catch (error) {
    throw new AdapterError(`${configPath}: not valid JSON (${(error as Error).message})`)
  }
  if (raw.peft_type !== 'LORA')
    throw new AdapterError(
      `${configPath}: peft_type is ${JSON.stringify(raw.peft_type)}; llamapro loads LORA adapters only`,
    )
  for (const [key, used, what] of UNSUPPORTED) {
    if (used(raw[key]))
      throw new AdapterError(
        `${configPath}: ${key}: ${JSON.stringify(raw[key])} — ${what} is not supported by llamapro`,
      )
  }
  const number = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new AdapterError(`${configPath}: ${key} must be a number, got ${JSON.stringify(raw[key])}`)
    return v
  }
  const r = number('r')
  if (!Number.isInteger(r) || r <= 0) throw new AdapterError(`${configPath}: r must be a positive integer, got ${r}`)
  const config: LoraAdapterConfig = {
    r,
    loraAlpha: number('lora_alpha', 8),
    loraDropout: number('lora_dropout', 0),
    useRslora: raw.use_rslora === true,
    targetModules: (raw.target_modules as string[] | string | undefined) ?? [],
    modulesToSave: Array.isArray(raw.modules_to_save) ? (raw.modules_to_save as string[]) : null,
    baseModelNameOrPath: typeof raw.base_model_name_or_path === 'string' ? raw.base_model_name_or_path : null,
  }
  const file = await readSafetensorsHeader(weightsPath)
  const byName = new Map(file.tensors.map((t) => [t.name, t]))
  const targets: string[] = []
  const fullyTrained: string[] = []
  for (const t of file.tensors) {
    if (!t.name.startsWith(PEFT_PREFIX))
      throw new AdapterError(
        `${weightsPath}: tensor "${t.name}" does not start with ${PEFT_PREFIX} (not a PEFT causal-LM adapter)`,
      )
    const name = t.name.slice(PEFT_PREFIX.length)
    const lora = /^(.*)\.lora_([AB])\.weight$/.exec(name)
    if (!lora) {
      if (/\.lora_(embedding_)?[AB]\b|\.lora_magnitude_vector\b/.test(name))
        throw new AdapterError(`${weightsPath}: tensor "${t.name}" is a LoRA variant llamapro does not support`)
      fullyTrained.push(name)
      continue
    }
    if (lora[2] === 'B') continue
    const module = lora[1]!
    const b = byName.get(`${PEFT_PREFIX}${module}.lora_B.weight`)
    if (!b) throw new AdapterError(`${weightsPath}: ${t.name} has no matching lora_B tensor`)
    if (t.shape.length !== 2 || b.shape.length !== 2 || t.shape[0] !== r || b.shape[1] !== r) {
      throw new AdapterError(
        `${weightsPath}: ${module}: lora_A is [${t.shape}] and lora_B [${b.shape}], but r is ${r} (expected [${r}, ` +
          `in] and [out, ${r}])`,
      )
    }
    targets.push(module)
  }
  for (const t of file.tensors) {
    const module = /^base_model\.model\.(.*)\.lora_B\.weight$/.exec(t.name)?.[1]
    if (module && !targets.includes(module))
      throw new AdapterError(`${weightsPath}: ${t.name} has no matching lora_A tensor`)
  }
  if (targets.length === 0 && fullyTrained.length === 0)
    throw new AdapterError(`${weightsPath}: holds no adapter tensor`)
  return { dir, config, weightsPath, file, targets, fullyTrained }
}

/** The native load items of an adapter's tensors, under llamapro's parameter names. */
export function adapterLoadItems(
  adapter: AdapterFolder,
): { name: string; file: string; offset: number; nbytes: number; dtype: string; shape: number[] }[] {
  return adapter.file.tensors.map((t) => ({
    name: t.name.slice(PEFT_PREFIX.length),
    file: adapter.weightsPath,
    offset: adapter.file.dataStart + t.begin,
    nbytes: t.end - t.begin,
    dtype: t.dtype,
    shape: [...t.shape],
  }))
}

export async function writeAdapterConfig(dir: string, config: LoraAdapterConfig): Promise<void> {
  await writeFile(join(dir, ADAPTER_CONFIG_FILE), adapterConfigJson(config))
}
