/**
 * The demo trains for 1,000 steps, so the last bit of every float sum matters: two machines of the same kind
 * print different losses when OpenBLAS picks different GEMM kernels for their CPUs (its DYNAMIC_ARCH build chooses
 * per CPU: Cooperlake/SkylakeX with AVX-512, Zen, Haswell, ...), each summing in its own order. Measured on one
 * 2-core AMD EPYC: its own choice (Cooperlake) gave 0.664 for LLaMA-Pro on corpus A, OPENBLAS_CORETYPE=Haswell
 * 0.681, and the same choice gave identical results on every run; one OpenBLAS thread instead of two gave 0.518
 * instead of 0.521 for the base model. So the demo asks OpenBLAS for its Haswell kernels (AVX2 + FMA, which every
 * x86-64 server CPU since 2013 has) and 2 threads before LibTorch is loaded, and LibTorch for one intra-op thread.
 * It also keeps the model's products on OpenBLAS (the kernel option gemm 'blas', as LLAMAPRO_GEMM=blas would):
 * where LibTorch has oneDNN, llamapro would
 * otherwise run them there (native/cpu_gemm.h), in the order of the kernel oneDNN generates for each CPU — and at
 * the demo's width of 128 oneDNN is no faster.
 */
import { readFileSync } from 'node:fs'
import type { KernelOptions } from '../native/kernel-options.js'

export interface KernelPin {
  /** What was set, e.g. "OPENBLAS_CORETYPE=Haswell"; empty when nothing was (and why in `reason`). */
  set: string[]
  reason: string
  /** Kernel options for the caller to apply with setKernelOptions ({} when the user's LLAMAPRO_GEMM is kept). */
  kernels: Partial<KernelOptions>
}

function cpuFlags(): Set<string> {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('flags'))
    return new Set((line?.split(':')[1] ?? '').trim().split(/\s+/))
  } catch {
    return new Set()
  }
}

/**
 * Sets OPENBLAS_CORETYPE=Haswell in `env` unless it is set already (the user's choice wins) or the CPU lacks
 * AVX2/FMA (the kernel would not run), OPENBLAS_NUM_THREADS=2 unless set; and unless LLAMAPRO_GEMM is set, returns
 * the kernel option gemm 'blas' for the caller to apply (listed in `set` as the variable that would do the same).
 * The OpenBLAS settings are only effective before LibTorch (and so OpenBLAS) is loaded.
 */
export function pinBlasKernels(
  env: NodeJS.ProcessEnv = process.env,
  arch: string = process.arch,
  flags: Set<string> = cpuFlags(),
): KernelPin {
  const set: string[] = []
  const kept: string[] = []
  if (env.OPENBLAS_NUM_THREADS !== undefined) kept.push(`OPENBLAS_NUM_THREADS=${env.OPENBLAS_NUM_THREADS}`)
  else {
    // OpenBLAS would otherwise take OMP_NUM_THREADS, or the number of cores.
    env.OPENBLAS_NUM_THREADS = '2'
    set.push('OPENBLAS_NUM_THREADS=2')
  }
  if (env.OPENBLAS_CORETYPE !== undefined) kept.push(`OPENBLAS_CORETYPE=${env.OPENBLAS_CORETYPE}`)
  else if (arch === 'x64' && flags.has('avx2') && flags.has('fma')) {
    env.OPENBLAS_CORETYPE = 'Haswell'
    set.push('OPENBLAS_CORETYPE=Haswell')
  } else kept.push('OpenBLAS kernels for this CPU (not x86-64 with AVX2 and FMA)')
  const kernels: Partial<KernelOptions> = {}
  if (env.LLAMAPRO_GEMM !== undefined) kept.push(`LLAMAPRO_GEMM=${env.LLAMAPRO_GEMM}`)
  else {
    kernels.gemm = 'blas'
    set.push('LLAMAPRO_GEMM=blas')
  }
  const reason =
    kept.length === 0
      ? 'the same sums on every x86-64 CPU with AVX2'
      : `kept ${kept.join(', ')}: the numbers may differ from docs/cli/demo.md's`
  return { set, reason, kernels }
}
