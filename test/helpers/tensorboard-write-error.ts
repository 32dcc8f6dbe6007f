// Child of test/tensorboard.test.ts. Once the writer's file exists, it lowers its own file-size limit (RLIMIT_FSIZE,
// soft, with util-linux's prlimit) to 1 KiB, so that appending a larger event fails with EFBIG, as a full disk would;
// it raises the limit again before exiting. Prints what the writer did as JSON: what each call threw, and whether
// any promise rejection went unhandled (the writer must never leave one).
import { execFileSync } from 'node:child_process'
import { TensorBoardWriter } from '../../lib/report/tensorboard.js'

const [dir, mode] = process.argv.slice(2) as [string, 'flush' | 'timer']
const unhandled: string[] = []
process.on('unhandledRejection', (reason) => unhandled.push(String(reason)))
// Writing past the limit also raises SIGXFSZ. Node ignores it, but tap's process tracking (signal-exit) listens for
// it and re-raises it to kill the process when no other listener exists; this one keeps the plain EFBIG error.
process.on('SIGXFSZ', () => undefined)
const fileSizeLimit = (limit: string) => execFileSync('prlimit', ['--pid', String(process.pid), `--fsize=${limit}:`])

const outcome = async (call: () => Promise<void>): Promise<string | null> => {
  try {
    await call()
    return null
  } catch (error) {
    return (error as Error).message
  }
}

const flushIntervalMs = mode === 'timer' ? 20 : 60_000
const writer = await TensorBoardWriter.open(dir, { hostname: 'limited', flushIntervalMs })
fileSizeLimit('1024')
writer.addText('big', 'x'.repeat(8192), 1)
// 'flush': the append runs in flush(), which must throw. 'timer': it runs on the writer's timer, with nobody awaiting
// it; close() must throw it.
let firstFlush: string | null = null
let secondFlush: string | null = null
if (mode === 'flush') {
  firstFlush = await outcome(() => writer.flush())
  // After a failure, adds are dropped (no growing buffer) and the error is not thrown a second time.
  writer.addScalar('after', 1, 2)
  secondFlush = await outcome(() => writer.flush())
} else {
  await new Promise((resolve) => setTimeout(resolve, 300))
}
const close = await outcome(() => writer.close())
const closeAgain = await outcome(() => writer.close())
fileSizeLimit('unlimited')
await new Promise((resolve) => setTimeout(resolve, 50))
console.log(JSON.stringify({ path: writer.path, firstFlush, secondFlush, close, closeAgain, unhandled }))
