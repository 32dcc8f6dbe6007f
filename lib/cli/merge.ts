import { mergeAdapter } from '../adapters/merge-adapter.js'
import { isAdapterFolder } from '../adapters/peft-adapter.js'
import { LlamaproError } from '../errors.js'
import { mergeDelta } from '../merge/merge-delta.js'
import { formatBytes } from '../util/format.js'
import { parseArgs, positionals } from './args.js'

export const MERGE_HELP = `llamapro merge <base_dir> <delta_dir> <output_dir> [--force] [--shard-size 5GB] [--json]
llamapro merge <base_dir> <output_dir> --adapter <adapter_dir> [--force] [--shard-size 5GB] [--json]

Applies a delta (the trained tensors alone, written by llamapro train with save_delta: true) to the base model
it was trained from, giving a complete Hugging Face model folder.

With --adapter: merges a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors, as llamapro train
with finetuning_type: lora or PEFT's save_pretrained writes it) into its base: W + scale * B A for every adapted
layer (scale = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora), modules_to_save tensors replaced — what
PEFT's merge_and_unload() gives, for tools that do not load adapters (llama.cpp, vLLM without LoRA).

A PEFT adapter folder given where the delta goes (merge <base_dir> <adapter_dir> <output_dir>) is recognised by
its adapter_config.json and merged as with --adapter.

Both stream the files; no GPU needed.`

export async function runMerge(argv: string[]): Promise<number> {
  const { values, positionals: args } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      force: { type: 'boolean', default: false },
      'shard-size': { type: 'string' },
      json: { type: 'boolean', default: false },
      adapter: { type: 'string' },
    },
  })
  let adapter = values.adapter
  if (adapter !== undefined) {
    if (args.length === 3)
      throw new LlamaproError(
        'LLAMAPRO_ARG',
        'merge --adapter takes <base_dir> <output_dir> (the adapter is the --adapter folder, not a delta)',
      )
  } else if (args.length === 3 && isAdapterFolder(args[1]!)) {
    adapter = args[1]!
    args.splice(1, 1)
  }
  if (adapter !== undefined) {
    const [base, out] = positionals(args, ['base_dir', 'output_dir'])
    const result = await mergeAdapter(base!, adapter, out!, { force: values.force, shardSize: values['shard-size'] })
    const replaced = result.replaced ? `, ${result.replaced} modules_to_save tensors` : ''
    const count = result.files.length
    const files = `${count} file${count === 1 ? '' : 's'}, ${formatBytes(result.bytesWritten)}`
    const merged = `${result.merged} linear weights${replaced}`
    const summary = `Merged the LoRA adapter ${adapter} into ${base} (${merged}): wrote ${out} (${files}).`
    console.log(values.json ? JSON.stringify(result, null, 2) : summary)
    return 0
  }
  const [base, delta, out] = positionals(args, ['base_dir', 'delta_dir', 'output_dir'])
  const result = await mergeDelta(base!, delta!, out!, { force: values.force, shardSize: values['shard-size'] })
  console.log(
    values.json
      ? JSON.stringify(result, null, 2)
      : `Merged ${result.replaced} trained tensors into ${base}: wrote ${out} (${result.files.length} ` +
          `file${result.files.length === 1 ? '' : 's'}, ${formatBytes(result.bytesWritten)}).`,
  )
  return 0
}
