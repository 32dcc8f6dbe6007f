import { verifyExpansion } from '../expand/verify.js'
import type { Device } from '../model/llama-model.js'
import { parseArgs, parseNumber, positionals } from './args.js'

export const VERIFY_HELP = `llamapro verify <original_dir> <expanded_dir> [--json] [--tolerance 1e-5] [--device cpu]

Proves an expanded checkpoint is the original plus identity blocks: every new block's o_proj and down_proj are
zero and its other tensors equal the layer it copies, every other tensor is unchanged, and both models give the
same logits (within --tolerance, in float32) on one random batch. Exit status 0 when all hold, 1 otherwise.`

export async function runVerify(argv: string[]): Promise<number> {
  const { values, positionals: args } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      json: { type: 'boolean', default: false },
      tolerance: { type: 'string' },
      device: { type: 'string' },
    },
  })
  const [original, expanded] = positionals(args, ['original_dir', 'expanded_dir'])
  const result = await verifyExpansion(original!, expanded!, {
    tolerance: parseNumber(values.tolerance, '--tolerance'),
    device: values.device as Device | undefined,
  })
  if (values.json) {
    console.log(JSON.stringify(result, null, 2))
  } else {
    const blocks = result.newLayers.map((l) => `${l.index}←${l.source}`).join(', ')
    console.log(`new blocks (from ${result.mappingFrom}): ${blocks || 'none'}`)
    console.log(`max |logit difference| ${result.maxLogitDifference.toExponential(2)} (tolerance ${result.tolerance})`)
    if (result.ok)
      console.log('ok: the expanded model computes what the original does; its new blocks are identity maps')
    else for (const failure of result.failures) console.log(`FAIL: ${failure}`)
  }
  return result.ok ? 0 : 1
}
