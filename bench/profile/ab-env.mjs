// Alternates one kernel switch step by step inside one `llamapro bench <yaml>` run and reports each value's
// wall and CPU time per step: a same-process A/B, so a shared machine's drifts reach both alike. The switch is named
// and valued as in the environment (LLAMAPRO_ROW_PLAN 1 0) and applied with setKernelOptions before each step.
// usage: node bench/profile/ab-env.mjs YAML VAR A B [steps] [on|off]   e.g. ab-env.mjs x.yaml LLAMAPRO_ROW_PLAN 1 0 16
import { KERNEL_SWITCHES, kernelOptionsFromEnv, setKernelOptions } from '../../dist/native/kernel-options.js'
import { alternateSteps } from './alternate-steps.mjs'

const [yaml, name, a, b, stepsArg, checkpointing] = process.argv.slice(2)
if (!yaml || !name || a === undefined || b === undefined) {
  console.error('usage: node bench/profile/ab-env.mjs YAML VAR A B [steps] [on|off]')
  process.exit(2)
}
const variables = Object.values(KERNEL_SWITCHES).map((s) => s.variable)
if (!variables.includes(name)) {
  console.error(`ab-env.mjs: ${name} is not a kernel switch; use one of ${variables.join(', ')}`)
  process.exit(2)
}
const { load, results } = await alternateSteps({
  yaml,
  steps: Number(stepsArg ?? 16),
  checkpointing: checkpointing === 'off' ? 'off' : 'on',
  settings: [a, b],
  apply: (value) => {
    setKernelOptions(kernelOptionsFromEnv({ ...process.env, [name]: value }))
  },
})
const ratio = +(results[1].medianWallMs / results[0].medianWallMs).toFixed(3)
console.log(JSON.stringify({ load, ratio, results: results.map(({ setting, ...r }) => ({ [name]: setting, ...r })) }))
