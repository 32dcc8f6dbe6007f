// Alternates one environment variable step by step inside one `llamapro bench <yaml>` run and reports each value's
// wall and CPU time per step: a same-process A/B, so a shared machine's drifts reach both alike. For switches the
// native code reads on every call (LLAMAPRO_ROW_PLAN); Node's process.env writes through to the C environment.
// usage: node bench/profile/ab-env.mjs YAML VAR A B [steps] [on|off]   e.g. ab-env.mjs x.yaml LLAMAPRO_ROW_PLAN 1 0 16
import { benchTrainConfig } from '../../dist/bench/train-config-bench.js'

const [yaml, name, a, b, stepsArg, checkpointing] = process.argv.slice(2)
if (!yaml || !name || a === undefined || b === undefined) {
  console.error('usage: node bench/profile/ab-env.mjs YAML VAR A B [steps] [on|off]')
  process.exit(2)
}
const values = [a, b]
const steps = Number(stepsArg ?? 16)
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
  checkpointing: [checkpointing === 'off' ? 'off' : 'on'],
  onProgress: (message) => {
    const m = /^step (\d+)\//.exec(message)
    if (!m) return
    mark()
    const step = Number(m[1])
    side = step === 1 ? null : step % 2
    process.env[name] = values[step % 2]
  },
})
mark()
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]
const load = (await import('node:os')).loadavg().map((x) => +x.toFixed(1))
const results = values.map((value, k) => ({ [name]: value, wallMs: wall[k].map(Math.round), medianWallMs: Math.round(median(wall[k])), medianCpuMs: Math.round(median(cpu[k])) }))
console.log(JSON.stringify({ load, ratio: +(median(wall[1]) / median(wall[0])).toFixed(3), results }))
