// Alternates LibTorch's intra-op threads step by step inside one `llamapro bench <yaml>` run (checkpointing on)
// and reports each setting's wall and CPU time per step: a same-process A/B, so a shared machine's drifts reach
// both alike. The BLAS threads and wait policies come from the environment the process starts with
// (OPENBLAS_NUM_THREADS, OPENBLAS_THREAD_TIMEOUT, OMP_WAIT_POLICY): run it once per environment to compare those.
// usage: node bench/profile/ab-threads.mjs YAML A B [steps]     e.g. ab-threads.mjs x.yaml 1 2 10
import { setThreads } from '../../dist/info.js'
import { alternateSteps } from './alternate-steps.mjs'

const [yaml, a, b, stepsArg] = process.argv.slice(2)
const { load, results } = await alternateSteps({
  yaml,
  steps: Number(stepsArg ?? 10),
  settings: [Number(a), Number(b)],
  apply: setThreads,
})
const env = ['OPENBLAS_NUM_THREADS', 'OPENBLAS_THREAD_TIMEOUT', 'OMP_WAIT_POLICY']
  .map((k) => `${k}=${process.env[k] ?? ''}`)
  .join(' ')
console.log(JSON.stringify({ env, load, results: results.map(({ setting, ...r }) => ({ threads: setting, ...r })) }))
