/**
 * The kernel switches: which CPU kernels the addon runs. Users set them in the environment (LLAMAPRO_GEMM, ...)
 * or from the API (setKernelOptions); this module is the only reader of those variables. It reads them once, on
 * first use, checks each against its one spelling, and hands the whole set to the addon when it loads and on every
 * change (lib/native/load.ts attaches it); native/kernel_options.h holds them there, and no C++ reads the
 * environment for them.
 */
import { LlamaproError } from '../errors.js'

/** 'onednn': oneDNN's sgemm for float32 CPU projections where the process has it (else the BLAS); 'blas': the BLAS. */
export type GemmChoice = 'onednn' | 'blas'
/** Per training step, a table of LibTorch operators on stderr: by thread CPU time ('cpu') or wall time ('wall'). */
export type OpProfileMode = 'off' | 'cpu' | 'wall'

export interface KernelOptions {
  gemm: GemmChoice
  /** One autograd node for causal attention where oneDNN runs the products; false: the composite form. */
  fusedAttention: boolean
  /** Rows the loss does not read (padding after the last label; in the last layer, all but the counted) are skipped. */
  rowPlan: boolean
  /** Freed CPU blocks of 64 KiB and more are kept for reuse (not counted as in use; dispose() releases them). */
  cpuCache: boolean
  profileOps: OpProfileMode
}

interface Switch<K extends keyof KernelOptions> {
  variable: string
  /** The environment's spelling of each value (the only one accepted), and the option value it means. */
  values: Record<string, KernelOptions[K]>
}

/** Each option's variable and values, declared once: the parser, the errors and the docs come from here. */
export const KERNEL_SWITCHES: { [K in keyof KernelOptions]: Switch<K> } = {
  gemm: { variable: 'LLAMAPRO_GEMM', values: { onednn: 'onednn', blas: 'blas' } },
  fusedAttention: { variable: 'LLAMAPRO_FUSED_ATTENTION', values: { '1': true, '0': false } },
  rowPlan: { variable: 'LLAMAPRO_ROW_PLAN', values: { '1': true, '0': false } },
  cpuCache: { variable: 'LLAMAPRO_CPU_CACHE', values: { '1': true, '0': false } },
  profileOps: { variable: 'LLAMAPRO_PROFILE_OPS', values: { '0': 'off', '1': 'cpu', wall: 'wall' } },
}

export const DEFAULT_KERNEL_OPTIONS: Readonly<KernelOptions> = Object.freeze({
  gemm: 'onednn',
  fusedAttention: true,
  rowPlan: true,
  cpuCache: true,
  profileOps: 'off',
})

const KEYS = Object.keys(KERNEL_SWITCHES) as (keyof KernelOptions)[]

const spellings = (key: keyof KernelOptions) => Object.keys(KERNEL_SWITCHES[key].values)
const optionValues = (key: keyof KernelOptions) =>
  Object.values(KERNEL_SWITCHES[key].values).map((v) => JSON.stringify(v))

/**
 * The options the environment asks for: each variable unset or empty keeps its default; any other value must be
 * one of its spellings, else a LLAMAPRO_KERNEL_OPTION error names the variable, the value and the valid ones.
 */
export function kernelOptionsFromEnv(env: Record<string, string | undefined> = process.env): KernelOptions {
  const options: Record<string, unknown> = { ...DEFAULT_KERNEL_OPTIONS }
  for (const key of KEYS) {
    const { variable, values } = KERNEL_SWITCHES[key]
    const raw = env[variable]
    if (raw === undefined || raw === '') continue
    if (!Object.hasOwn(values, raw)) {
      const defaultSpelling = Object.keys(values).find((s) => values[s] === DEFAULT_KERNEL_OPTIONS[key])
      throw new LlamaproError(
        'LLAMAPRO_KERNEL_OPTION',
        `${variable}=${JSON.stringify(raw)} is not a valid value: use ${spellings(key).join(', ')} ` +
          `(or leave it unset for the default, ${defaultSpelling})`,
      )
    }
    options[key] = values[raw]
  }
  return options as unknown as KernelOptions
}

/** Checks options given to the API (`where` names the call): unknown keys and wrong values name the valid ones. */
export function checkKernelOptions(
  partial: Partial<KernelOptions>,
  where = 'setKernelOptions',
): Partial<KernelOptions> {
  if (typeof partial !== 'object' || partial === null || Array.isArray(partial)) {
    throw new LlamaproError('LLAMAPRO_KERNEL_OPTION', `${where}: expected an object with some of ${KEYS.join(', ')}`)
  }
  for (const [key, value] of Object.entries(partial)) {
    if (!(KEYS as string[]).includes(key)) {
      throw new LlamaproError(
        'LLAMAPRO_KERNEL_OPTION',
        `${where}: unknown kernel option "${key}"; the options are ${KEYS.join(', ')}`,
      )
    }
    const k = key as keyof KernelOptions
    if (!Object.values(KERNEL_SWITCHES[k].values).includes(value as never)) {
      throw new LlamaproError(
        'LLAMAPRO_KERNEL_OPTION',
        `${where}: ${key} ${JSON.stringify(value)} is not valid: use ${optionValues(k).join(' or ')} ` +
          `(${KERNEL_SWITCHES[k].variable} in the environment)`,
      )
    }
  }
  return partial
}

/** What receives the options: the addon (lib/native/load.ts attaches it when it loads). */
export interface KernelOptionsSink {
  setKernelOptions(options: KernelOptions): void
}

let current: KernelOptions | undefined
let sink: KernelOptionsSink | undefined

/** The options in effect (the environment's, read on the first call, with every setKernelOptions since). */
export function kernelOptions(): KernelOptions {
  current ??= kernelOptionsFromEnv()
  return { ...current }
}

/**
 * Changes some kernel options for every later native call of this process (a step in flight keeps the ones it
 * started with). Child processes llamapro starts (ranks, benches) get them through the environment
 * (kernelOptionsEnv).
 */
export function setKernelOptions(partial: Partial<KernelOptions>): KernelOptions {
  checkKernelOptions(partial)
  current = { ...kernelOptions(), ...partial }
  sink?.setKernelOptions({ ...current })
  return { ...current }
}

/** Called once by lib/native/load.ts with the loaded addon: it gets the options now and on every change. */
export function attachKernelOptions(target: KernelOptionsSink): void {
  target.setKernelOptions(kernelOptions())
  sink = target
}

/** The environment that gives a child process these options (every variable, so the parent's own are overridden). */
export function kernelOptionsEnv(options: KernelOptions = kernelOptions()): Record<string, string> {
  const env: Record<string, string> = {}
  for (const key of KEYS) {
    const { variable, values } = KERNEL_SWITCHES[key]
    env[variable] = Object.keys(values).find((s) => values[s] === options[key])!
  }
  return env
}

/** One line for logs: "gemm onednn, fused attention on, row plan on, CPU cache on, op profile off". */
export function describeKernelOptions(options: KernelOptions = kernelOptions()): string {
  const onOff = (on: boolean) => (on ? 'on' : 'off')
  return (
    `gemm ${options.gemm}, fused attention ${onOff(options.fusedAttention)}, row plan ${onOff(options.rowPlan)}, ` +
    `CPU cache ${onOff(options.cpuCache)}, op profile ${options.profileOps}`
  )
}
