/**
 * One rank's membership of a data-parallel job: c10d's TCPStore rendezvous and process group (Gloo on the CPU,
 * NCCL on CUDA when this build has it), owned by native/process_group.cc. Attached to a model, it sums the
 * trainable gradients inside each update; the trainer itself only asks for a few numbers to be summed.
 */
import type { NativeProcessGroupHandle } from '../native/binding.js'
import { callNative } from '../native/call.js'
import { native } from '../native/load.js'
import { DistributedError, type DistributedEnv } from './environment.js'

export interface ConnectOptions {
  /** Seconds a collective (and the rendezvous) waits for the other ranks: ddp_timeout. */
  timeoutSeconds: number
  /** 'cpu' or 'cuda[:N]': NCCL is used for CUDA when the build has it, Gloo otherwise. */
  device: string
  /** Gradient bucket size (DDP's bucket_cap_mb, 25 MiB by default). */
  bucketBytes?: number
}

export class ProcessGroup {
  readonly env: DistributedEnv
  readonly backend: 'gloo' | 'nccl'
  /** @internal The addon's object, for GradientSync (lib/model/gradient-sync.ts) to attach to a model. */
  readonly handle: NativeProcessGroupHandle

  private constructor(env: DistributedEnv, backend: 'gloo' | 'nccl', handle: NativeProcessGroupHandle) {
    this.env = env
    this.backend = backend
    this.handle = handle
  }

  get rank(): number {
    return this.env.rank
  }
  get worldSize(): number {
    return this.env.worldSize
  }
  /** Rank 0 writes logs, checkpoints and the model. */
  get isMain(): boolean {
    return this.env.rank === 0
  }

  static async connect(env: DistributedEnv, options: ConnectOptions): Promise<ProcessGroup> {
    const binding = native()
    const available = binding.distributedBackends()
    const backend = options.device.startsWith('cuda') && available.includes('nccl') ? 'nccl' : 'gloo'
    if (!available.includes(backend)) {
      throw new DistributedError(
        `this build of llamapro has no ${backend} backend for distributed training (it has: ` +
          `${available.join(', ') || 'none'}); ` +
          'on Debian install libgloo-dev and rebuild (npm run build:native)',
      )
    }
    const handle = new binding.NativeProcessGroup()
    const what = `joining the ${env.worldSize}-rank job at ${env.masterAddr}:${env.masterPort} as rank ${env.rank}`
    await callNative(what, () =>
      handle.connect({
        rank: env.rank,
        worldSize: env.worldSize,
        localRank: env.localRank,
        masterAddr: env.masterAddr,
        masterPort: env.masterPort,
        timeoutMs: Math.round(options.timeoutSeconds * 1000),
        backend,
        bucketBytes: options.bucketBytes ?? 25 * 1024 * 1024,
      }),
    ).catch((error: Error) => {
      const hint =
        env.rank === 0
          ? `rank 0 hosts the rendezvous on port ${env.masterPort}: is the port free, and did all ${env.worldSize} ` +
            `ranks start within ddp_timeout (${options.timeoutSeconds} s)?`
          : `is rank 0 running, and do MASTER_ADDR=${env.masterAddr} and MASTER_PORT=${env.masterPort} name its host ` +
            `and port?`
      throw new DistributedError(`${error.message} (${hint})`)
    })
    return new ProcessGroup(env, backend, handle)
  }

  /** Element-wise sums over the ranks. */
  async sum(values: number[], what: string): Promise<number[]> {
    return [...(await callNative(what, () => this.handle.allReduce(Float64Array.from(values))))]
  }

  async barrier(what: string): Promise<void> {
    await callNative(what, () => this.handle.barrier())
  }

  /**
   * Leaves the job: this rank's store connection, process group and heartbeat close off the JS thread. A model
   * still attached keeps them open until it is disposed.
   */
  async destroy(): Promise<void> {
    await callNative('closing the process group', () => this.handle.destroy())
  }
}
