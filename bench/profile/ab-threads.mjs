// Alternates LibTorch's intra-op threads step by step inside one `llamapro bench <yaml>` run (checkpointing on)
// and reports each setting's wall and CPU time per step: a same-process A/B, so a shared machine's drifts reach
// both alike. The BLAS threads and wait policies come from the environment the process starts with
// (OPENBLAS_NUM_THREADS, OPENBLAS_THREAD_TIMEOUT, OMP_WAIT_POLICY): run it once per environment to compare those.
// usage: node bench/profile/ab-threads.mjs YAML A B [steps]     e.g. ab-threads.mjs x.yaml 1 2 10
import { benchTrainConfig } from '../../dist/bench/train-config-bench.js'
import { setThreads } from '../../dist/info.js'

const [yaml, a, b, stepsArg] = process.argv.slice(2)
const settings = [Number(a), Number(b)]
const steps = Number(stepsArg ?? 10)
const wall = [[], []]
const cpu = [[], []]
let last = null
let side = null
const mark = () => {
  const now = { cpu: process.cpuUsage(), wall: performance.now() }
  if (last && side !== null) {
    wall[side].push(now.wall - last.wall)
    cpu[side].push((now.cpu.user - last.cpu.user + now.cpu.system - last.cpu.system) / 1000)
  }
  last = now
}
await benchTrainConfig({
  config: yaml,
  steps,
  warmup: 1,
  checkpointing: ['on'],
  onProgress: (message) => {
    const m = /^step (\d+)\//.exec(message)
    if (!m) return
    mark()
    const step = Number(m[1])
    side = step === 1 ? null : step % 2
    setThreads(settings[step % 2])
  },
})
mark()
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]
const env = ['OPENBLAS_NUM_THREADS', 'OPENBLAS_THREAD_TIMEOUT', 'OMP_WAIT_POLICY'].map((k) => `${k}=${process.env[k] ?? ''}`).join(' ')
console.log(JSON.stringify({ env, load: (await import('node:os')).loadavg().map((x) => +x.toFixed(1)),
  results: settings.map((threads, k) => ({ threads, wallMs: wall[k].map(Math.round), medianWallMs: Math.round(median(wall[k])), medianCpuMs: Math.round(median(cpu[k])) })) }))
