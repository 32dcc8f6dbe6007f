/**
 * The token store under data parallelism: LOCAL_RANK 0 builds it while the other ranks wait; when it dies while
 * building, the waiting rank ends with an error that says so, and no store is left that a later run would use.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { rankEnvironment } from '../lib/distributed/environment.js'
import { freePort } from '../lib/distributed/launcher.js'
import { isStore } from '../lib/data/store/reader.js'
import { REPO_ROOT } from './helpers/python.js'
import { writeDatasets, writeTrainableModel } from './helpers/trainable-model.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')

t.test('rank 0 killed while tokenizing: rank 1 ends with a clear error, the store is not left half-made', async (t) => {
  const dir = t.testdir()
  await writeTrainableModel(join(dir, 'model'), { seed: 3 })
  const files = await writeDatasets(dir)
  const text = readFileSync(files.pt, 'utf8').trim()
  writeFileSync(join(dir, 'big.jsonl'), `${Array.from({ length: 400 }, () => text).join('\n')}\n`)
  const tokens = join(dir, 'tokens')
  const config = join(dir, 'run.yaml')
  writeFileSync(
    config,
    JSON.stringify({
      model_name_or_path: join(dir, 'model'),
      stage: 'pt',
      dataset: join(dir, 'big.jsonl'),
      tokenized_path: tokens,
      preprocessing_num_workers: 1,
      cutoff_len: 48,
      output_dir: join(dir, 'out'),
      max_steps: 2,
      threads: 1,
      ddp_timeout: 120,
    }),
  )
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
  let err1 = ''
  ranks[1]!.stderr!.on('data', (d) => (err1 += d))
  ranks[1]!.stdout!.resume()
  ranks[0]!.stdout!.resume()
  ranks[0]!.stderr!.resume()
  const exit1 = new Promise<number | null>((resolve) => ranks[1]!.on('exit', (code) => resolve(code)))
  const building = () => readdirSync(dir).some((e) => e.startsWith('.tokens.tmp-'))
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (building()) {
        clearInterval(timer)
        resolve()
      }
    }, 20)
    ranks[0]!.on('exit', () => reject(new Error('rank 0 finished before it could be killed')))
  })
  ranks[0]!.kill('SIGKILL')
  const killed = performance.now()
  const guard = setTimeout(() => ranks[1]!.kill('SIGKILL'), 90_000)
  const code = await exit1
  clearTimeout(guard)
  t.not(code, 0, 'rank 1 exits non-zero')
  t.not(code, null, 'by itself')
  t.ok((performance.now() - killed) / 1000 < 90, 'promptly')
  t.match(
    err1,
    /rank 1: the first process of this node \(LOCAL_RANK 0\), which tokenizes the data, failed or died before the token store was ready/,
  )
  t.notOk(isStore(tokens), 'no store at tokenized_path')
})
