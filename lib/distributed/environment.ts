/**
 * torchrun's contract is the environment: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and
 * MASTER_PORT. `llamapro train` reads the same variables, so torchrun, SLURM or Kubernetes can start its ranks,
 * and `--nproc-per-node` sets them for the child processes it starts itself.
 */
import { LlamaproError } from '../errors.js'

export interface DistributedEnv {
  rank: number
  worldSize: number
  localRank: number
  localWorldSize: number
  masterAddr: string
  masterPort: number
}

export class DistributedError extends LlamaproError {
  constructor(message: string) {
    super('LLAMAPRO_DISTRIBUTED', message)
    this.name = 'DistributedError'
  }
}

function integer(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  min: number,
  max: number,
  fallback?: number,
): number {
  const raw = env[name]
  if (raw === undefined || raw === '') {
    if (fallback !== undefined) return fallback
    throw new DistributedError(
      `WORLD_SIZE is set, so ${name} must be set too (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and ` +
        `MASTER_PORT)`,
    )
  }
  const value = Number(raw)
  if (!/^\d+$/.test(raw.trim()) || value < min || value > max) {
    throw new DistributedError(`environment variable ${name}=${raw} must be an integer in ${min}..${max}`)
  }
  return value
}

/** The rank's place in a torchrun-style job, or null when WORLD_SIZE is not set (a single process). */
export function distributedFromEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
): DistributedEnv | null {
  if (env.WORLD_SIZE === undefined || env.WORLD_SIZE === '') return null
  const worldSize = integer(env, 'WORLD_SIZE', 1, 1 << 20)
  const rank = integer(env, 'RANK', 0, worldSize - 1)
  const localWorldSize = integer(env, 'LOCAL_WORLD_SIZE', 1, worldSize, worldSize)
  const localRank = integer(env, 'LOCAL_RANK', 0, localWorldSize - 1, rank % localWorldSize)
  const masterAddr = env.MASTER_ADDR?.trim() || (worldSize === 1 ? '127.0.0.1' : '')
  if (!masterAddr) throw new DistributedError('WORLD_SIZE is above 1, so MASTER_ADDR must name the host of rank 0')
  const masterPort = integer(env, 'MASTER_PORT', 1, 65535, 29500)
  return { rank, worldSize, localRank, localWorldSize, masterAddr, masterPort }
}

/** The variables a child rank gets (the same names torchrun sets). */
export function rankEnvironment(d: DistributedEnv): Record<string, string> {
  return {
    RANK: String(d.rank),
    WORLD_SIZE: String(d.worldSize),
    LOCAL_RANK: String(d.localRank),
    LOCAL_WORLD_SIZE: String(d.localWorldSize),
    GROUP_RANK: '0',
    MASTER_ADDR: d.masterAddr,
    MASTER_PORT: String(d.masterPort),
  }
}
