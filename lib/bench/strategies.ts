/**
 * Strategies named on the command line: full, last:N, first:N, pro:N, modules:a+b, ids:a,b,... (freeze tuning)
 * and lora:all, lora:pro:N (LoRA of rank LORA_BENCH_RANK on every linear, or on the expanded blocks only)
 * (`ids:` swallows the integers that follow it, so "full,ids:1,5,pro:2" is three strategies).
 */
import { UsageError } from '../errors.js'
import type { FreezeOptions } from '../policy/freeze-policy.js'

/** Rank (and alpha = 2 x rank, LLaMA-Factory's default) of the lora: strategies. */
export const LORA_BENCH_RANK = 8

export interface Strategy {
  name: string
  options: FreezeOptions
  /** LoRA strategies: adapters of this rank on loraPolicy's targets for `options`. */
  lora?: { rank: number }
  /** Activation checkpointing (default true). */
  gradientCheckpointing?: boolean
}

export function parseStrategies(text: string, numLayers: number): Strategy[] {
  const tokens = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  const out: Strategy[] = []
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!
    const [kind, arg] = token.includes(':')
      ? [token.slice(0, token.indexOf(':')), token.slice(token.indexOf(':') + 1)]
      : [token, '']
    const count = () => {
      if (!/^\d+$/.test(arg) || Number(arg) === 0)
        throw new UsageError(`strategy "${token}": ${kind}:N needs a positive integer N`)
      return Number(arg)
    }
    switch (kind) {
      case 'full':
        out.push({ name: 'full', options: { finetuningType: 'full' } })
        break
      case 'last':
        out.push({ name: token, options: { freezeTrainableLayers: count() } })
        break
      case 'first':
        out.push({ name: token, options: { freezeTrainableLayers: -count() } })
        break
      case 'pro':
        out.push({ name: token, options: { useLlamaPro: true, freezeTrainableLayers: count() } })
        break
      case 'modules':
        if (!arg)
          throw new UsageError(`strategy "${token}": modules:NAME needs module names (joined with +), e.g. modules:mlp`)
        out.push({ name: token, options: { freezeTrainableLayers: numLayers, freezeTrainableModules: arg.split('+') } })
        break
      case 'lora': {
        if (arg === 'all')
          out.push({ name: token, options: { finetuningType: 'lora' }, lora: { rank: LORA_BENCH_RANK } })
        else if (/^pro:\d+$/.test(arg) && Number(arg.slice(4)) > 0) {
          out.push({
            name: token,
            options: { finetuningType: 'lora', useLlamaPro: true, freezeTrainableLayers: Number(arg.slice(4)) },
            lora: { rank: LORA_BENCH_RANK },
          })
        } else
          throw new UsageError(
            `strategy "${token}": lora takes all or pro:N (adapters on every linear, or on the N expanded blocks)`,
          )
        break
      }
      case 'ids': {
        const ids = [arg]
        while (i + 1 < tokens.length && /^\d+$/.test(tokens[i + 1]!)) ids.push(tokens[++i]!)
        out.push({ name: `ids:${ids.join(',')}`, options: { freezeTrainableLayerIds: ids.join(',') } })
        break
      }
      default:
        throw new UsageError(
          `unknown strategy "${token}" (valid: full, last:N, first:N, pro:N, modules:mlp, ids:a,b,..., lora:all, ` +
            `lora:pro:N)`,
        )
    }
  }
  if (out.length === 0) throw new UsageError('no strategies given')
  return out
}
