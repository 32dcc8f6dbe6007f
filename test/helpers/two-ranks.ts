/** Two `llamapro train` ranks started as torchrun starts them (its environment only), for the failure tests. */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { rankEnvironment } from '../../lib/distributed/environment.js'
import { freePort } from '../../lib/distributed/launcher.js'
import { REPO_ROOT } from './python.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')

/** Two ranks started as torchrun starts them (environment only), running until step 2 has been logged. */
export async function startTwoRanks(config: string) {
  const port = await freePort()
  const ranks = [0, 1].map((rank) =>
    spawn(process.execPath, [CLI, 'train', config], {
      env: {
        ...process.env,
        ...rankEnvironment({
          rank,
          worldSize: 2,
          localRank: rank,
          localWorldSize: 2,
          masterAddr: '127.0.0.1',
          masterPort: port,
        }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  )
  let out0 = ''
  let err0 = ''
  ranks[0]!.stdout!.on('data', (d) => (out0 += d))
  ranks[0]!.stderr!.on('data', (d) => (err0 += d))
  ranks[1]!.stdout!.resume()
  ranks[1]!.stderr!.resume()
  const exit0 = new Promise<number | null>((resolve) => ranks[0]!.on('exit', (code) => resolve(code)))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`rank 0 never logged a step: ${out0} ${err0}`)), 90_000)
    ranks[0]!.stdout!.on('data', () => {
      if (/step 2\/100000/.test(out0)) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
  return { ranks, exit0, output: () => err0 }
}
