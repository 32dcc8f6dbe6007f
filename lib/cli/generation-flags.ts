/** Flags shared by chat, generate and eval --predict: model placement and sampling. */
import type { ModelDtype } from '../checkpoint/dtypes.js'
import type { GenerateOptions } from '../generate/generate.js'
import type { Device, LoadOptions } from '../model/llama-model.js'
import { parseInteger, parseNumber } from './args.js'

export const GENERATION_FLAGS = {
  device: { type: 'string' },
  dtype: { type: 'string' },
  adapter: { type: 'string' },
  template: { type: 'string' },
  'max-new-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  'repetition-penalty': { type: 'string' },
  seed: { type: 'string' },
  stop: { type: 'string', multiple: true },
} as const

export const GENERATION_FLAGS_HELP = `  --template NAME            chat template: any name train accepts (LLaMA-Factory's llama3, qwen, chatml, ...;
                             an unknown name lists them) or model, the model's own Jinja chat template
                             (default: model if the model has a chat template, else default)
  --max-new-tokens N         most tokens per reply (default: generation_config.json max_new_tokens, else 256)
  --temperature T            0 is greedy (default: generation_config.json, greedy unless it sets do_sample)
  --top-k K  --top-p P       sampling filters (defaults: generation_config.json, else 50 and 1)
  --repetition-penalty R     > 1 discourages repeats (default 1)
  --seed N                   seed of the sampler (default: random)
  --stop TEXT                a string that ends the reply (repeatable)
  --device cpu|cuda[:n]      where the model runs (default cpu)
  --dtype float32|bfloat16|float16   weights and compute dtype (default: float32 on the CPU)
  --adapter DIR              apply a PEFT LoRA adapter folder (llamapro train with finetuning_type: lora writes
                             one) on top of the model, unmerged`

type FlagValues = {
  [K in keyof typeof GENERATION_FLAGS]?: (typeof GENERATION_FLAGS)[K] extends { multiple: true } ? string[] : string
}

export function loadOptionsFrom(values: FlagValues): LoadOptions {
  return {
    device: values.device as Device | undefined,
    dtype: values.dtype as ModelDtype | undefined,
    ...(values.adapter !== undefined ? { adapter: values.adapter } : {}),
  }
}

export function generateOptionsFrom(values: FlagValues): GenerateOptions {
  const o: GenerateOptions = {}
  const set = <K extends keyof GenerateOptions>(key: K, value: GenerateOptions[K] | undefined) => {
    if (value !== undefined) o[key] = value
  }
  set('template', values.template)
  set('maxNewTokens', parseInteger(values['max-new-tokens'], '--max-new-tokens', { min: 1 }))
  set('temperature', parseNumber(values.temperature, '--temperature'))
  set('topK', parseInteger(values['top-k'], '--top-k', { min: 0 }))
  set('topP', parseNumber(values['top-p'], '--top-p'))
  set('repetitionPenalty', parseNumber(values['repetition-penalty'], '--repetition-penalty'))
  set('seed', parseInteger(values.seed, '--seed', { min: 0 }))
  if (values.stop && values.stop.length > 0) o.stop = values.stop
  return o
}
