// The addon refuses misuse with JS errors: foreign native objects and plain objects where a NativeModel or a
// NativeProcessGroup is expected (a TypeError naming the class; before, maxAbsDifference(aKvCache) hung), and batch
// shapes that are negative, not integers, overflow int64 or disagree with the typed arrays (a RangeError or TypeError
// naming the argument; before, batch * seq could wrap to match an empty array and crash), and bad ids or lengths
// given to a KV cache, and a NativeModel constructed other than by NativeModel.create or from a spec above the
// limits. Each call is repeated 50 times. The calls run in a child process, so that a crash or a hang fails this
// test (naming the case that was running) instead of killing tap.
import t from 'tap'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { REPO_ROOT } from './helpers/python.js'

const CHILD = join(REPO_ROOT, 'test', 'helpers', 'native-misuse-child.ts')
const TIMEOUT_MS = 60_000

interface Line {
  case?: string
  event: 'start' | 'end' | 'done'
  ok?: boolean
  resolved?: number
  errors?: string[]
  expected?: string
  cases?: number
}

t.test('every misuse ends in the expected JS error, in a child that neither crashes nor hangs', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    child.kill('SIGKILL')
  }, TIMEOUT_MS)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on('close', (c, s) => resolve([c, s])),
  )
  clearTimeout(timer)
  const lines = stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line)
  const started = lines.filter((l) => l.event === 'start').map((l) => l.case)
  const ended = new Map(lines.filter((l) => l.event === 'end').map((l) => [l.case, l]))
  const unfinished = started.filter((c) => !ended.has(c))
  t.same(
    unfinished,
    [],
    `no case crashed or hung (timed out: ${timedOut}, exit ${code}, signal ${signal})\n${stderr.slice(-2000)}`,
  )
  t.equal(code, 0, `the child exits cleanly\n${stderr.slice(-2000)}`)
  const done = lines.find((l) => l.event === 'done')
  t.ok(done !== undefined && done.cases === started.length && started.length >= 55, `all ${started.length} cases ran`)
  for (const line of ended.values()) {
    t.ok(
      line.ok,
      `${line.case}: ${line.errors?.join(' | ') || `resolved ${line.resolved} times`} (expected ${line.expected})`,
    )
  }
})
