// The kernel switches (lib/native/kernel-options.ts, native/kernel_options.h): the environment is read once, each
// variable in one spelling (README's: LLAMAPRO_GEMM=blas, LLAMAPRO_FUSED_ATTENTION=0, LLAMAPRO_ROW_PLAN=0,
// LLAMAPRO_CPU_CACHE=0, LLAMAPRO_PROFILE_OPS=1|wall), a wrong value is an error naming the variable and the valid
// ones, setKernelOptions changes them from the API, and what C++ holds is what info() and the run's log report.
// Whether each option really switches its kernel is tested where the kernel is (cpu-gemm, causal-attention,
// row-plan, cpu-allocator, op-profile).
import t from 'tap'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import {
  type KernelOptions,
  describeKernelOptions,
  info,
  kernelOptions,
  kernelOptionsFromEnv,
  setKernelOptions,
} from '../lib/index.js'
import { kernelOptionsEnv } from '../lib/native/kernel-options.js'
import { native } from '../lib/native/load.js'
import { describeEvent } from '../lib/train/event-text.js'
import { REPO_ROOT } from './helpers/python.js'

const DEFAULTS: KernelOptions = {
  gemm: 'onednn',
  fusedAttention: true,
  rowPlan: true,
  cpuCache: true,
  profileOps: 'off',
}
const EVERY_OTHER: KernelOptions = {
  gemm: 'blas',
  fusedAttention: false,
  rowPlan: false,
  cpuCache: false,
  profileOps: 'wall',
}
const EVERY_OTHER_ENV = {
  LLAMAPRO_GEMM: 'blas',
  LLAMAPRO_FUSED_ATTENTION: '0',
  LLAMAPRO_ROW_PLAN: '0',
  LLAMAPRO_CPU_CACHE: '0',
  LLAMAPRO_PROFILE_OPS: 'wall',
}
const OPTION_NAMES = 'gemm, fusedAttention, rowPlan, cpuCache, profileOps'

t.test('the environment, in its one spelling', async (t) => {
  t.same(kernelOptionsFromEnv({}), DEFAULTS, 'nothing set: the defaults')
  const empty = { LLAMAPRO_GEMM: '', LLAMAPRO_PROFILE_OPS: '', LLAMAPRO_ROW_PLAN: '' }
  t.same(kernelOptionsFromEnv(empty), DEFAULTS, 'empty is unset')
  t.same(kernelOptionsFromEnv(EVERY_OTHER_ENV), EVERY_OTHER)
  const spelledOut = {
    LLAMAPRO_GEMM: 'onednn',
    LLAMAPRO_FUSED_ATTENTION: '1',
    LLAMAPRO_ROW_PLAN: '1',
    LLAMAPRO_CPU_CACHE: '1',
    LLAMAPRO_PROFILE_OPS: '0',
  }
  t.same(kernelOptionsFromEnv(spelledOut), DEFAULTS, 'the defaults spelled out')
  t.equal(kernelOptionsFromEnv({ LLAMAPRO_PROFILE_OPS: '1' }).profileOps, 'cpu', 'LLAMAPRO_PROFILE_OPS=1: CPU time')
  t.throws(() => kernelOptionsFromEnv({ LLAMAPRO_GEMM: 'mkl' }), {
    code: 'LLAMAPRO_KERNEL_OPTION',
    message: /LLAMAPRO_GEMM="mkl" is not a valid value: use onednn, blas \(or leave it unset for the default, onednn\)/,
  })
  t.throws(() => kernelOptionsFromEnv({ LLAMAPRO_FUSED_ATTENTION: 'off' }), {
    message: /LLAMAPRO_FUSED_ATTENTION="off" .* use 0, 1 .*default, 1/,
  })
  t.throws(() => kernelOptionsFromEnv({ LLAMAPRO_PROFILE_OPS: 'cpu' }), {
    message: /LLAMAPRO_PROFILE_OPS="cpu" .* use 0, 1, wall/,
  })
  for (const options of [DEFAULTS, EVERY_OTHER, { ...DEFAULTS, profileOps: 'cpu' as const }]) {
    const described = describeKernelOptions(options)
    t.same(kernelOptionsFromEnv(kernelOptionsEnv(options)), options, `kernelOptionsEnv round trip: ${described}`)
  }
})

t.test('setKernelOptions reaches the addon, and info() reports what C++ holds', async (t) => {
  const initial = kernelOptions()
  t.teardown(() => void setKernelOptions(initial))
  t.same(native().kernelOptions(), initial, 'on load the addon got the options')
  const changed = setKernelOptions({ gemm: 'blas', rowPlan: false })
  t.same(changed, { ...initial, gemm: 'blas', rowPlan: false }, 'a partial change keeps the other options')
  t.same(native().kernelOptions(), changed, 'C++ holds them')
  t.same(info().kernels, changed, 'info() says which are in effect')
  t.equal(info().cpuGemm.library, 'blas', 'and the projections run through the BLAS')
  setKernelOptions(EVERY_OTHER)
  t.same(native().kernelOptions(), EVERY_OTHER)
  t.throws(() => setKernelOptions({ gemm: 'mkl' as never }), {
    code: 'LLAMAPRO_KERNEL_OPTION',
    message: /setKernelOptions: gemm "mkl" is not valid: use "onednn" or "blas" \(LLAMAPRO_GEMM in the environment\)/,
  })
  t.throws(() => setKernelOptions({ fusedAttention: 0 as never }), {
    message: /fusedAttention 0 is not valid: use false or true/,
  })
  t.throws(() => setKernelOptions({ rowplan: false } as never), {
    message: new RegExp(`unknown kernel option "rowplan"; the options are ${OPTION_NAMES}`),
  })
  t.throws(() => setKernelOptions(null as never), {
    message: new RegExp(`setKernelOptions: expected an object with some of ${OPTION_NAMES}`),
  })
  t.same(native().kernelOptions(), EVERY_OTHER, 'a refused change changes nothing')
})

t.test('the addon checks the options itself (lib/ bypassed)', async (t) => {
  const initial = native().kernelOptions()
  t.teardown(() => native().setKernelOptions(initial))
  const binding = native() as unknown as { setKernelOptions(o: unknown): void }
  t.throws(() => binding.setKernelOptions(undefined), {
    name: 'TypeError',
    message: 'kernel options must be an object',
  })
  t.throws(() => binding.setKernelOptions({ ...DEFAULTS, gemm: 'mkl' }), {
    name: 'TypeError',
    message: "kernel options.gemm must be 'onednn' or 'blas', got 'mkl'",
  })
  t.throws(() => binding.setKernelOptions({ ...DEFAULTS, profileOps: 'on' }), {
    message: "kernel options.profileOps must be 'off', 'cpu' or 'wall', got 'on'",
  })
  const { rowPlan: _, ...withoutRowPlan } = DEFAULTS
  t.throws(() => binding.setKernelOptions({ ...withoutRowPlan, gemm: 'blas' }), {
    message: 'kernel options.rowPlan must be a boolean',
  })
  t.same(native().kernelOptions(), initial, 'a refused call changes nothing')
})

t.test("the run's start line names the kernel options", async (t) => {
  const line = describeEvent({
    type: 'start',
    totalSteps: 4,
    startStep: 0,
    stepsPerEpoch: 4,
    trainSequences: 8,
    evalSequences: 0,
    trainableParams: 10,
    totalParams: 20,
    trainableLayerIds: [1],
    resumedFrom: null,
    device: 'cpu',
    deviceReason: 'no GPU',
    kernels: { ...DEFAULTS, rowPlan: false },
  })
  t.match(line, /\nkernels: gemm onednn, fused attention on, row plan off, CPU cache on, op profile off$/)
})

// The user's way: variables in the environment of a new process reach C++ (and info()); a wrong one stops the
// first native call with the error naming it.
const CHILD = `
import { info } from ${JSON.stringify(join(REPO_ROOT, 'dist', 'index.js'))}
try {
  console.log(JSON.stringify(info().kernels))
} catch (error) {
  console.log(JSON.stringify({ code: error.code, message: error.message }))
}
`

async function childKernels(env: Record<string, string>): Promise<unknown> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LLAMAPRO_')))
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', CHILD], {
    env: { ...clean, ...env },
    cwd: REPO_ROOT,
  })
  return JSON.parse(stdout.trim())
}

t.test('the environment of a new process reaches the addon', async (t) => {
  t.same(await childKernels({}), DEFAULTS, 'unset: the defaults')
  t.same(await childKernels(EVERY_OTHER_ENV), EVERY_OTHER)
  t.same(await childKernels({ LLAMAPRO_ROW_PLAN: 'no' }), {
    code: 'LLAMAPRO_KERNEL_OPTION',
    message: 'LLAMAPRO_ROW_PLAN="no" is not a valid value: use 0, 1 (or leave it unset for the default, 1)',
  })
})
