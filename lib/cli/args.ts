/** Parsing helpers for command-line values: errors name the flag and say what is valid. */
import { InterruptedError, UsageError } from '../errors.js'

export function parseInteger(value: string | undefined, flag: string, options: { min?: number; allowNegative?: boolean } = {}): number | undefined {
  if (value === undefined) return undefined
  if (!/^-?\d+$/.test(value.trim())) throw new UsageError(`${flag} must be an integer, got ${JSON.stringify(value)}`)
  const n = Number(value)
  if (options.min !== undefined && n < options.min) throw new UsageError(`${flag} must be at least ${options.min}, got ${n}`)
  return n
}

export function parseNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag} must be a number, got ${JSON.stringify(value)}`)
  return n
}

/** "3,7,11" -> [3, 7, 11] */
export function parseIntegerList(value: string | undefined, flag: string): number[] | undefined {
  if (value === undefined) return undefined
  const items = value.split(',').map((s) => s.trim())
  if (items.some((s) => !/^-?\d+$/.test(s))) {
    throw new UsageError(`${flag} must be a comma-separated list of integers (like 3,7,11), got ${JSON.stringify(value)}`)
  }
  return items.map(Number)
}

/** Exactly `names.length` positional arguments, named in the error. */
export function positionals(values: string[], names: string[]): string[] {
  if (values.length !== names.length) {
    throw new UsageError(`expected ${names.map((n) => `<${n}>`).join(' ')}, got ${values.length} argument${values.length === 1 ? '' : 's'}`)
  }
  return values
}

/** An AbortSignal that fires on Ctrl-C (SIGINT) and SIGTERM, so work stops cleanly and leaves nothing half-written. */
export function interruptSignal(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController()
  // A second Ctrl-C finds no handler left (once) and ends the process the default way.
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`\nllamapro: ${signal}: stopping cleanly (press Ctrl-C again to stop at once)\n`)
    controller.abort(new InterruptedError(`interrupted by ${signal}; nothing was left half-written`))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    },
  }
}
