/** A description of the machine a benchmark ran on, recorded with every result. */
import { readFileSync } from 'node:fs'
import { availableParallelism, totalmem, type as osType, release } from 'node:os'
import { info } from '../info.js'

export interface MachineInfo {
  cpu: string
  cores: number
  memoryGiB: number
  os: string
  node: string
  libtorch: string
  blas: string
  gpu: string | null
}

export function machineInfo(): MachineInfo {
  let cpu = 'unknown'
  try {
    cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu
  } catch {
    // not Linux
  }
  const runtime = info()
  return {
    cpu,
    cores: availableParallelism(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    os: `${osType()} ${release()}`,
    node: process.version,
    libtorch: runtime.libtorch.version,
    blas:
      runtime.cpuGemm.library === 'onednn'
        ? `oneDNN sgemm for projections (${runtime.cpuGemm.threads} threads), ${runtime.blas.name} for the rest`
        : `${runtime.blas.name}${runtime.threads.blas ? ` (${runtime.threads.blas} threads)` : ''}`,
    gpu: runtime.cuda.devices[0]?.name ?? null,
  }
}

export const describeMachine = (m: MachineInfo) =>
  `${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}, LibTorch ${m.libtorch}, ` +
  `${m.blas}${m.gpu ? `, GPU ${m.gpu}` : ', no GPU'}`
