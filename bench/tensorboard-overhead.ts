/**
 * What TensorBoard logging costs a training step, against the step itself, measured in one run on one machine:
 *   one logged step's events (a trainer_log.jsonl line: 9 numbers + 40 per-layer gradient norms = 49 scalars)
 *     encode   tensorboardScalars(line) + writer.addScalars(...) on the main thread (what the step path pays)
 *     append   the asynchronous write of those bytes to the event file, per step (it runs on libuv's thread pool,
 *              off the event loop; counted here as if it were not)
 *   against the real native training step of `llamapro bench` presets (tiny: the shortest step there is; small).
 * Goal: encode + append <= 1% of the step, when every step is logged (logging_steps: 1, the worst case).
 * Usage: npx tsx bench/tensorboard-overhead.ts [--rounds 40] [--steps-per-round 500] [--train-steps 200]
 */
import { execSync } from 'node:child_process'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { runBench } from '../lib/bench/run-bench.js'
import { describeMachine, machineInfo } from '../lib/bench/machine.js'
import { TensorBoardWriter, tensorboardScalars } from '../lib/report/tensorboard.js'
import { median } from './lib/measure.js'
import { writeResult } from './lib/results.js'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '40' },
    'steps-per-round': { type: 'string', default: '500' },
    'train-steps': { type: 'string', default: '200' },
  },
})
const loadAtStart = loadavg()[0]!
const rounds = Number(values.rounds)
const stepsPerRound = Number(values['steps-per-round'])
const trainSteps = Number(values['train-steps'])

/** A training line of a 40-layer LLaMA-Pro run with every layer's gradient norm (all layers trainable). */
function logLine(step: number) {
  const layerGradNorms: Record<string, number> = {}
  for (let i = 0; i < 40; i++) layerGradNorms[String(i)] = 0.1 + ((i * 7919 + step) % 1000) / 1000
  return {
    current_steps: step,
    total_steps: 100_000,
    loss: 2 - step / 1e5,
    lr: 1e-4 * (1 - step / 1e5),
    epoch: step / 1e4,
    percentage: step / 1e3,
    elapsed_time: '1:02:03',
    remaining_time: '3:04:05',
    throughput: 5123.4 + step,
    total_tokens: step * 4096,
    grad_norm: 0.9,
    tokens_per_second: 5120 + step,
    elapsed_seconds: step * 0.8,
    allreduce_bytes: 1 << 20,
    optimizer_state_bytes: 1 << 28,
    layer_grad_norms: layerGradNorms,
  }
}

// Lines are built before timing: the trainer has them anyway (it writes them to trainer_log.jsonl).
const lines = Array.from({ length: stepsPerRound }, (_, i) => logLine(i + 1))
const dir = await mkdtemp(join(tmpdir(), 'llamapro-tb-bench-'))
const writer = await TensorBoardWriter.open(dir)
const scalarsPerStep = Object.keys(tensorboardScalars(lines[0]!)).length
const encodeUs: number[] = []
const appendUs: number[] = []
for (let round = 0; round < rounds + 2; round++) {
  const start = performance.now()
  for (const line of lines) writer.addScalars(tensorboardScalars(line), line.current_steps + round * stepsPerRound)
  const encoded = performance.now()
  await writer.flush()
  const appended = performance.now()
  if (round < 2) continue // warm-up: JIT, file creation, page cache
  encodeUs.push(((encoded - start) * 1000) / stepsPerRound)
  appendUs.push(((appended - encoded) * 1000) / stepsPerRound)
}
await writer.close()
const fileBytes = (await stat(writer.path)).size
await rm(dir, { recursive: true, force: true })
const encode = median(encodeUs)
const append = median(appendUs)
const bytesPerStep = fileBytes / ((rounds + 2) * stepsPerRound)
console.log(
  `per logged step (${scalarsPerStep} scalars): encode ${encode.toFixed(2)} us, append ${append.toFixed(2)} us`,
)

const presets = [
  { model: 'tiny', strategies: 'full' },
  { model: 'small', strategies: 'last:2' },
]
const steps: { preset: string; strategy: string; ms: number; p10: number; p90: number; steps: number }[] = []
for (const { model, strategies } of presets) {
  const count = model === 'tiny' ? trainSteps : Math.max(10, Math.round(trainSteps / 10))
  const report = await runBench({ model, strategies, steps: count, warmup: Math.max(3, count / 10), threads: 1 })
  const { median: ms, p10, p90 } = report.results[0]!.msPerStep
  steps.push({ preset: model, strategy: strategies, ms, p10, p90, steps: count })
  console.log(`${model} ${strategies}: ${ms.toFixed(2)} ms/step`)
}

const percent = (us: number, ms: number) => (us / (ms * 1000)) * 100
const machine = machineInfo()
const cpuModel = execSync("lscpu | grep 'Model name' | sed 's/.*: *//'", { encoding: 'utf8' }).trim()
const command =
  'npx tsx bench/tensorboard-overhead.ts ' +
  `--rounds ${rounds} --steps-per-round ${stepsPerRound} --train-steps ${trainSteps}`
const rows = steps.map((s) => {
  const total = percent(encode + append, s.ms)
  return (
    `| ${s.preset} (${s.strategy}) | ${s.ms.toFixed(2)} (${s.p10.toFixed(2)}-${s.p90.toFixed(2)}) | ` +
    `${percent(encode, s.ms).toFixed(3)}% | ${total.toFixed(3)}% | ${total <= 1 ? 'met' : 'missed'} |`
  )
})
const markdown = `# TensorBoard logging overhead

Date: ${new Date().toISOString().slice(0, 10)}
Machine: ${describeMachine(machine)} (lscpu Model name: ${cpuModel})
Command: \`${command}\`
Load average (1 min) at start: ${loadAtStart.toFixed(1)} on ${machine.cores} cores (above the core count, the machine
was shared with other jobs: the writer's µs and the step times are then both slower and noisier than on a quiet one).

One logged step = one trainer_log.jsonl training line of a 40-layer run: ${scalarsPerStep} scalars
(train/loss, train/learning_rate, train/grad_norm, train/epoch, train/throughput, … and grad_norm/layer_0..39),
mapped by \`tensorboardScalars\` and added with \`TensorBoardWriter.addScalars\` as one event
(${bytesPerStep.toFixed(0)} bytes in the file). Medians of ${rounds} rounds of ${stepsPerRound} steps each.

| cost per logged step | µs |
| --- | --- |
| encode: map the line + encode the event into the buffer (main thread, the step's path) | ${encode.toFixed(2)} |
| append: the asynchronous write of its bytes, amortized (libuv thread pool) | ${append.toFixed(2)} |

Against a real training step (the native step \`llamapro bench\` times; 1 intra-op thread, ${steps[0]!.steps} and
${steps[1]!.steps} timed steps), logging every step (\`logging_steps: 1\`, the worst case):

| preset (strategy) | ms/step median (p10-p90) | encode / step | encode + append / step | goal <= 1% |
| --- | --- | --- | --- | --- |
${rows.join('\n')}

The tiny preset (4 layers, hidden 64, batch 2 x 32) has the shortest step of all presets, so it bounds the
overhead from above; real runs log every 10 steps or more (LLaMA-Factory's examples use \`logging_steps: 10\`),
which divides these shares by 10. The append runs off the event loop and is counted as if it did not.`
await writeResult(
  'tensorboard-overhead',
  {
    date: new Date().toISOString(),
    machine,
    cpuModel,
    command,
    scalarsPerStep,
    bytesPerStep,
    loadAtStart,
    encodeUs,
    appendUs,
    encode,
    append,
    steps,
  },
  markdown,
)
console.log(markdown)
