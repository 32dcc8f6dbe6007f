/** Byte sizes as transformers' max_shard_size spells them: 5GB = 5 * 10^9, 2GiB = 2 * 2^30, or a number. */
import { LlamaproError } from '../errors.js'

const UNITS: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KIB: 2 ** 10,
  MIB: 2 ** 20,
  GIB: 2 ** 30,
  TIB: 2 ** 40,
}

export function parseSize(value: string | number, what = 'size'): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value <= 0)
      throw new LlamaproError('LLAMAPRO_ARG', `${what} must be a positive number of bytes, got ${value}`)
    return value
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value)
  const unit = match ? (match[2] || 'B').toUpperCase() : ''
  if (!match || !(unit in UNITS)) {
    throw new LlamaproError(
      'LLAMAPRO_ARG',
      `${what} ${JSON.stringify(value)} is not a size (examples: 5GB, 500MB, 2GiB, 1000000)`,
    )
  }
  const bytes = Math.floor(Number(match[1]) * UNITS[unit]!)
  if (bytes <= 0) throw new LlamaproError('LLAMAPRO_ARG', `${what} must be larger than 0, got ${JSON.stringify(value)}`)
  return bytes
}
