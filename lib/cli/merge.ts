import { mergeDelta } from '../merge/merge-delta.js'
import { formatBytes } from '../util/format.js'
import { parseArgs, positionals } from './args.js'

export const MERGE_HELP = `llamapro merge <base_dir> <delta_dir> <output_dir> [--force] [--shard-size 5GB] [--json]

Applies a delta (the trained tensors alone, written by llamapro train with save_delta: true) to the base model
it was trained from, giving a complete Hugging Face model folder. Streams the files; no GPU needed.`

export async function runMerge(argv: string[]): Promise<number> {
  const { values, positionals: args } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: { force: { type: 'boolean', default: false }, 'shard-size': { type: 'string' }, json: { type: 'boolean', default: false } },
  })
  const [base, delta, out] = positionals(args, ['base_dir', 'delta_dir', 'output_dir'])
  const result = await mergeDelta(base!, delta!, out!, { force: values.force, shardSize: values['shard-size'] })
  console.log(
    values.json
      ? JSON.stringify(result, null, 2)
      : `Merged ${result.replaced} trained tensors into ${base}: wrote ${out} (${result.files.length} file${result.files.length === 1 ? '' : 's'}, ${formatBytes(result.bytesWritten)}).`,
  )
  return 0
}
