import { expandCheckpoint } from '../expand/expand-checkpoint.js'
import { UsageError } from '../errors.js'
import { formatBytes } from '../util/format.js'
import { ProgressBar } from '../util/progress.js'
import { interruptSignal, parseArgs, parseInteger, parseIntegerList, positionals } from './args.js'

export const EXPAND_HELP = `llamapro expand <model_dir> <output_dir> (--num-expand K | --positions a,b,...) [options]

Grows a Hugging Face LLaMA-family checkpoint by block expansion (LLaMA-Pro). Each new block is a copy of the
layer before it with o_proj and down_proj set to zero, so the expanded model computes exactly what the original
did until it is trained. Streams the files: memory stays bounded and no GPU is needed.

  --num-expand K      add K blocks, one after every n/K layers (LLaMA-Factory's llama_pro.py);
                      the layer count n must be divisible by K
  --positions a,b,..  add one block after each of these original layers instead (0-based)
  --shard-size SIZE   largest output shard, e.g. 5GB (default), 500MB, 2GiB
  --force             replace an existing non-empty output folder
  --json              print a JSON summary instead of text (no progress bar)`

export async function runExpand(argv: string[]): Promise<number> {
  const { values, positionals: args } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      'num-expand': { type: 'string' },
      positions: { type: 'string' },
      'shard-size': { type: 'string' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  })
  const [src, dst] = positionals(args, ['model_dir', 'output_dir'])
  const numExpand = parseInteger(values['num-expand'], '--num-expand', { min: 1 })
  const positions = parseIntegerList(values.positions, '--positions')
  if (numExpand === undefined && positions === undefined)
    throw new UsageError('give --num-expand K or --positions a,b,...')
  if (numExpand !== undefined && positions !== undefined)
    throw new UsageError('give either --num-expand or --positions, not both')

  let bar: ProgressBar | undefined
  const interrupt = interruptSignal()
  let result
  try {
    result = await expandCheckpoint(src!, dst!, {
      numExpand,
      positions,
      shardSize: values['shard-size'],
      force: values.force,
      signal: interrupt.signal,
      onWarning: (message) => {
        bar?.done()
        console.error(`warning: ${message}`)
      },
      onProgress: (p) => {
        if (values.json) return
        bar ??= new ProgressBar({ total: p.bytesTotal, format: formatBytes, label: 'expand ' })
        bar.update(p.bytesDone, `${p.tensorsDone}/${p.tensorsTotal} tensors`)
      },
    })
  } finally {
    bar?.done()
    interrupt.dispose()
  }
  if (values.json) {
    console.log(JSON.stringify(result, null, 2))
    return 0
  }
  const sources = result.newLayerIds.map((id) => `${id}←${result.sourceLayerOf[id]}`).join(', ')
  console.log(
    [
      `Expanded ${src} (${result.originalNumLayers} layers) into ${dst} (${result.numLayers} layers).`,
      `New blocks (index←copied from layer): ${sources}`,
      `Wrote ${result.files.length} file${result.files.length === 1 ? '' : 's'}, ${formatBytes(result.bytesWritten)} ` +
        `in ${result.seconds.toFixed(1)}s.`,
      '',
      'To train exactly the new blocks, use these lines in your `llamapro train` YAML:',
      ...result.hint.split('\n').map((line) => `  ${line}`),
    ].join('\n'),
  )
  return 0
}
