/**
 * `llamapro train … --nproc-per-node N`: starts N ranks on this machine as child processes of the CLI, each with
 * torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), and watches
 * them as torchrun does: when one exits with an error or is killed, the launcher names it and stops the others
 * (SIGTERM, then SIGKILL after a grace period), so no rank is left waiting on a dead one.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'
import { kernelOptionsEnv } from '../native/kernel-options.js'
import { rankEnvironment } from './environment.js'

/** A TCP port that was free a moment ago on 127.0.0.1 (for the TCPStore of a local job). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

export interface LaunchOptions {
  nproc: number
  /** The arguments each rank gets after the CLI script (e.g. ['train', 'cfg.yaml', ...]). */
  args: string[]
  /** Defaults to a free port on 127.0.0.1. */
  masterPort?: number
  /** Seconds between SIGTERM and SIGKILL when stopping the other ranks. */
  graceSeconds?: number
  /** The script each rank runs (default: this CLI's entry point). */
  script?: string
  log?: (line: string) => void
}

/** Runs the ranks to the end; resolves with the exit status the job should have (0 when every rank succeeded). */
export async function launchLocalRanks(options: LaunchOptions): Promise<number> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`))
  const masterPort = options.masterPort ?? (await freePort())
  const script = options.script ?? process.argv[1]!
  const grace = (options.graceSeconds ?? 15) * 1000
  const children: (ChildProcess | null)[] = []
  let status = 0
  let stopping = false
  let killTimer: NodeJS.Timeout | undefined

  const stopOthers = () => {
    if (stopping) return
    stopping = true
    for (const child of children)
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    killTimer = setTimeout(() => {
      for (const child of children)
        if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }, grace)
    killTimer.unref()
  }
  // Ctrl-C reaches every rank from the terminal (same process group): the ranks agree to stop after the current
  // step. A SIGTERM sent to the launcher alone is passed on to them.
  const onSigint = () => {}
  const onSigterm = () => {
    for (const child of children) child?.kill('SIGTERM')
  }
  process.on('SIGINT', onSigint)
  process.on('SIGTERM', onSigterm)

  const exits: Promise<void>[] = []
  for (let rank = 0; rank < options.nproc; rank++) {
    const env = {
      ...process.env,
      ...kernelOptionsEnv(), // the kernel options in effect here (environment or setKernelOptions), for every rank
      ...rankEnvironment({
        rank,
        worldSize: options.nproc,
        localRank: rank,
        localWorldSize: options.nproc,
        masterAddr: '127.0.0.1',
        masterPort,
      }),
    }
    // Rank 0 speaks for the job; the others' output (errors) is passed on with a prefix.
    const child = spawn(process.execPath, [...process.execArgv, script, ...options.args], {
      env,
      stdio: rank === 0 ? ['ignore', 'inherit', 'inherit'] : ['ignore', 'pipe', 'pipe'],
    })
    children.push(child)
    for (const stream of [child.stdout, child.stderr]) {
      if (stream) createInterface({ input: stream }).on('line', (line) => log(`[rank ${rank}] ${line}`))
    }
    exits.push(
      new Promise<void>((resolve) => {
        child.on('error', (error) => {
          log(`llamapro: could not start rank ${rank}: ${error.message}`)
          status ||= 1
          stopOthers()
          resolve()
        })
        child.on('exit', (code, signal) => {
          if (code === 0) return resolve()
          if (code === 130) {
            // interrupted (Ctrl-C reaches every rank): the ranks stop together after the same step
            if (status === 0) status = 130
            return resolve()
          }
          const how = signal ? `was killed by ${signal}` : `exited with status ${code}`
          if (!stopping) {
            log(`llamapro: rank ${rank} (pid ${child.pid}) ${how}; stopping the other ${options.nproc - 1} rank(s)`)
            status = code === 130 ? 130 : code && code > 0 ? code : 1
          }
          stopOthers()
          resolve()
        })
      }),
    )
  }
  try {
    await Promise.all(exits)
  } finally {
    if (killTimer) clearTimeout(killTimer)
    process.off('SIGINT', onSigint)
    process.off('SIGTERM', onSigterm)
  }
  return status
}
