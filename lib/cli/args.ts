/** Parsing helpers for command-line values: errors name the flag and say what is valid. */
import { type ParseArgsConfig, parseArgs as nodeParseArgs } from 'node:util'
import { InterruptedError, UsageError } from '../errors.js'

const NEGATIVE_NUMBER = /^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/

/**
 * `--flag -2` becomes `--flag=-2` when `--flag` takes a value: node's parseArgs refuses a value that starts with a
 * dash as ambiguous, but LLaMA-Factory's users write `--freeze-trainable-layers -2` ("the first 2 layers").
 * Only negative numbers are joined, so a forgotten value before another flag is still reported.
 */
export function joinNegativeValues(args: readonly string[], options: ParseArgsConfig['options'] = {}): string[] {
  const out: string[] = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === '--') {
      out.push(...args.slice(i))
      break
    }
    const next = args[i + 1]
    const name = arg.startsWith('--') && !arg.includes('=') ? arg.slice(2) : undefined
    if (name !== undefined && options[name]?.type === 'string' && next !== undefined && NEGATIVE_NUMBER.test(next)) {
      out.push(`${arg}=${next}`)
      i++
    } else {
      out.push(arg)
    }
  }
  return out
}

/** node:util's parseArgs, with negative numbers accepted as flag values (see joinNegativeValues). */
export function parseArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof nodeParseArgs<T>> {
  return nodeParseArgs({
    ...config,
    args: joinNegativeValues(config.args ?? process.argv.slice(2), config.options),
  } as T)
}

export function parseInteger(
  value: string | undefined,
  flag: string,
  options: { min?: number; allowNegative?: boolean } = {},
): number | undefined {
  if (value === undefined) return undefined
  if (!/^-?\d+$/.test(value.trim())) throw new UsageError(`${flag} must be an integer, got ${JSON.stringify(value)}`)
  const n = Number(value)
  if (options.min !== undefined && n < options.min)
    throw new UsageError(`${flag} must be at least ${options.min}, got ${n}`)
  return n
}

export function parseNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n))
    throw new UsageError(`${flag} must be a number, got ${JSON.stringify(value)}`)
  return n
}

/** "3,7,11" -> [3, 7, 11] */
export function parseIntegerList(value: string | undefined, flag: string): number[] | undefined {
  if (value === undefined) return undefined
  const items = value.split(',').map((s) => s.trim())
  if (items.some((s) => !/^-?\d+$/.test(s))) {
    throw new UsageError(
      `${flag} must be a comma-separated list of integers (like 3,7,11), got ${JSON.stringify(value)}`,
    )
  }
  return items.map(Number)
}

/** Exactly `names.length` positional arguments, named in the error. */
export function positionals(values: string[], names: string[]): string[] {
  if (values.length !== names.length) {
    throw new UsageError(
      `expected ${names.map((n) => `<${n}>`).join(' ')}, got ${values.length} argument${values.length === 1 ? '' : 's'}`,
    )
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
