/** `llamapro info` and `info()`: what llamapro runs on. */
import type { KernelOptions } from './native/kernel-options.js'
import { native, builtAgainst } from './native/load.js'
import { VERSION } from './version.js'

export interface CudaDevice {
  index: number
  name: string
  totalMemory: number
  computeCapability: string
}

export interface RuntimeInfo {
  llamapro: { version: string }
  node: { version: string; napi: string }
  libtorch: { version: string; library: string; cmakeDir: string; foundBy: string | null }
  cuda: { compiled: boolean; available: boolean; devices: CudaDevice[] }
  threads: { intraOp: number; interOp: number; blas: number | null }
  blas: { name: string; library: string; config: string | null }
  /**
   * What runs the model's float32 CPU projections: oneDNN's sgemm where the LibTorch has oneDNN beside OpenBLAS
   * (Debian's; OpenBLAS then keeps one thread for what LibTorch still gives it), else the BLAS library through
   * LibTorch. `LLAMAPRO_GEMM=blas` chooses the BLAS library. `threads`: those a product may use (0: the BLAS's own).
   */
  cpuGemm: { library: 'onednn' | 'blas'; threads: number }
  /** The kernel switches in effect, as the addon holds them (environment or setKernelOptions). */
  kernels: KernelOptions
  warnings: string[]
}

export function info(): RuntimeInfo {
  const raw = native().runtimeInfo()
  const warnings: string[] = []
  if (raw.blas.name === 'reference BLAS') {
    warnings.push(
      `LibTorch is using the reference BLAS (${raw.blas.library}): training is about 25x slower. ` +
        'On Debian/Ubuntu install libopenblas0-pthread (npm run setup does).',
    )
  }
  if (raw.cuda.compiled && !raw.cuda.available) {
    warnings.push('LibTorch was built with CUDA but no usable GPU was found (driver missing or no device visible).')
  }
  return {
    llamapro: { version: VERSION },
    node: { version: process.version, napi: process.versions.napi ?? 'unknown' },
    libtorch: {
      version: raw.torchVersion,
      library: raw.torchLibrary,
      cmakeDir: raw.torchCmakeDir,
      foundBy: builtAgainst()?.source ?? null,
    },
    cuda: raw.cuda,
    threads: { intraOp: raw.threads.intraOp, interOp: raw.threads.interOp, blas: raw.threads.blas ?? null },
    blas: { name: raw.blas.name || 'unknown', library: raw.blas.library, config: raw.blas.config ?? null },
    cpuGemm: { library: raw.cpuGemm.library, threads: raw.cpuGemm.threads },
    kernels: native().kernelOptions(),
    warnings,
  }
}

/**
 * LibTorch intra-op threads for every later native call (0 = LibTorch's default). On a 2-core machine one
 * intra-op thread with OpenBLAS's own threads measured fastest for a training step.
 */
export function setThreads(threads: number): void {
  native().setThreads(threads)
}
