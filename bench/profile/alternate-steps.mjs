// A same-process A/B for the profile scripts: runs `llamapro bench <yaml>` and, before each step, applies setting
// A or B in turn (step 1 is warm-up and not counted), so a shared machine's drifts reach both alike. Returns each
// setting's wall times and median wall and CPU time per step.
import { loadavg } from 'node:os'
import { benchTrainConfig } from '../../dist/bench/train-config-bench.js'

export async function alternateSteps({ yaml, steps, checkpointing = 'on', settings, apply }) {
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
    checkpointing: [checkpointing],
    onProgress: (message) => {
      const m = /^step (\d+)\//.exec(message)
      if (!m) return
      mark()
      const step = Number(m[1])
      side = step === 1 ? null : step % 2
      apply(settings[step % 2])
    },
  })
  mark()
  const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]
  return {
    load: loadavg().map((x) => +x.toFixed(1)),
    results: settings.map((setting, k) => ({
      setting,
      wallMs: wall[k].map(Math.round),
      medianWallMs: Math.round(median(wall[k])),
      medianCpuMs: Math.round(median(cpu[k])),
    })),
  }
}
