/**
 * Activation checkpointing: measured peak memory and step time with and without it, beside the estimate of
 * `llamapro plan`, for full fine-tuning, last-2 and LLaMA-Pro on the small preset (CPU, float32); and the estimate
 * for the headline job (Llama-3-8B expanded to 40 layers, pro:8, bf16 on a GPU, batch 1).
 *
 * Step times are paired: each round runs one step of the checkpointed model and one of the other, in alternating
 * order, so both see the same machine state; the cost is the ratio of their medians.
 * Usage: npx tsx bench/activation-checkpointing.ts [--batch 4] [--seq 512] [--steps 8] [--warmup 2]
 */
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { LlamaModel, info } from '../lib/index.js'
import { percentiles } from '../lib/bench/run-bench.js'
import { describeMachine, machineInfo } from '../lib/bench/machine.js'
import { PRESETS } from '../lib/bench/presets.js'
import { parseModelConfig } from '../lib/checkpoint/config.js'
import { expectedParameters } from '../lib/checkpoint/parameters.js'
import { native } from '../lib/native/load.js'
import { type FreezeOptions, freezePolicy } from '../lib/policy/freeze-policy.js'
import { estimateTrainingMemory } from '../lib/policy/memory-estimate.js'
import { randomTokenIds } from '../lib/util/random.js'
import { writeResult } from './lib/results.js'

const { values } = parseArgs({
  options: {
    batch: { type: 'string', default: '4' },
    seq: { type: 'string', default: '512' },
    steps: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
  },
})
const [batch, seq, steps, warmup] = [
  Number(values.batch),
  Number(values.seq),
  Number(values.steps),
  Number(values.warmup),
]
const preset = PRESETS.small!
const loadAtStart = loadavg()
  .map((v) => v.toFixed(1))
  .join(', ')
const attention = Number(info().libtorch.version.split('.')[0]) >= 2 ? 'flash' : 'grouped'
const vocab = preset.config.vocab_size as number
const ids = randomTokenIds(batch * seq, vocab, 1234)
const stepOptions = {
  lossMultiplier: 1,
  update: true,
  lr: 1e-4,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0,
  maxGradNorm: 1,
  reportParamNorms: false,
}

interface Side {
  measuredPeak: number
  estimate: ReturnType<typeof estimateTrainingMemory>
  msPerStep: ReturnType<typeof percentiles>
  /** Process CPU time (user + system, all threads) per step: less sensitive than wall time to other tenants. */
  cpuMsPerStep: ReturnType<typeof percentiles>
  loss: number
}
const rows: { strategy: string; on: Side; off: Side; stepTimeRatio: number; cpuTimeRatio: number }[] = []

for (const [strategy, options] of [
  ['full', { finetuningType: 'full' }],
  ['last:2', { freezeTrainableLayers: 2 }],
  ['pro:2', { useLlamaPro: true, freezeTrainableLayers: 2 }],
] as [string, FreezeOptions][]) {
  const sides: Record<
    'on' | 'off',
    {
      model: LlamaModel
      times: number[]
      cpu: number[]
      loss: number
      measuredPeak: number
      estimate: Side['estimate']
    }
  > = {} as never
  try {
    for (const key of ['on', 'off'] as const) {
      const model = await LlamaModel.random(preset.config, { seed: 0, gradientCheckpointing: key === 'on' })
      const params = model.parameters()
      const policy = freezePolicy(
        8,
        params.map((p) => p.name),
        options,
      )
      await model.setTrainable(policy.trainable)
      model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
      const estimate = estimateTrainingMemory({
        config: model.config,
        parameters: params,
        trainable: new Set(policy.trainable),
        batch,
        seq,
        computeDtype: 'float32',
        attention,
        gradientCheckpointing: key === 'on',
      })
      sides[key] = { model, times: [], cpu: [], loss: 0, measuredPeak: 0, estimate }
    }
    // Peak memory: each model alone, its second step (the first allocates AdamW's state).
    for (const key of ['on', 'off'] as const) {
      const side = sides[key]
      await side.model.native.trainStep(ids, ids, batch, seq, stepOptions)
      native().resetPeakMemory()
      // The other model's weights and optimizer state are held too: the peak above the current level is this step's.
      const before = native().memoryStats().cpu.current
      side.loss = (await side.model.native.trainStep(ids, ids, batch, seq, stepOptions)).loss
      const stats = native().memoryStats().cpu
      side.measuredPeak = stats.peak - before + heldBy(side.model)
    }
    for (let i = 0; i < warmup; i++)
      for (const key of ['on', 'off'] as const)
        await sides[key].model.native.trainStep(ids, ids, batch, seq, stepOptions)
    for (let round = 0; round < steps; round++) {
      for (const key of round % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
        const cpuStart = process.cpuUsage()
        const start = performance.now()
        await sides[key].model.native.trainStep(ids, ids, batch, seq, stepOptions)
        sides[key].times.push(performance.now() - start)
        const cpu = process.cpuUsage(cpuStart)
        sides[key].cpu.push((cpu.user + cpu.system) / 1000)
      }
    }
    const side = (key: 'on' | 'off'): Side => ({
      measuredPeak: sides[key].measuredPeak,
      estimate: sides[key].estimate,
      msPerStep: percentiles(sides[key].times),
      cpuMsPerStep: percentiles(sides[key].cpu),
      loss: sides[key].loss,
    })
    const on = side('on')
    const off = side('off')
    rows.push({
      strategy,
      on,
      off,
      stepTimeRatio: on.msPerStep.median / off.msPerStep.median,
      cpuTimeRatio: on.cpuMsPerStep.median / off.cpuMsPerStep.median,
    })
    console.error(
      `${strategy}: peak ${mib(on.measuredPeak)} / ${mib(off.measuredPeak)} MiB, step ` +
        `${on.msPerStep.median.toFixed(0)} / ${off.msPerStep.median.toFixed(0)} ms`,
    )
  } finally {
    for (const key of ['on', 'off'] as const) sides[key]?.model.dispose()
  }
}

/** Weights, gradients and optimizer state a model holds between steps (what the step's own peak sits on). */
function heldBy(model: LlamaModel): number {
  const m = model.native.memory()
  return m.parameterBytes + m.gradientBytes + m.optimizerBytes
}

// The headline job, estimated: Llama-3-8B expanded by 8 blocks, LLaMA-Pro's 8 blocks train, bf16, GPU.
const big = parseModelConfig({ ...PRESETS['8b']!.config, num_hidden_layers: 40 }, 'Llama-3-8B + 8 blocks')
const bigParams = expectedParameters(big).map((p) => ({ name: p.name, numel: p.shape.reduce((a, b) => a * b, 1) }))
const bigPolicy = freezePolicy(
  40,
  bigParams.map((p) => p.name),
  { useLlamaPro: true, freezeTrainableLayers: 8 },
)
// 'grouped' is the attention of LibTorch 1.x (what `llamapro plan` assumes where LibTorch 1.13 is installed, as in
// the figures); 'flash' is LibTorch 2.x's scaled_dot_product_attention, what a GPU machine runs.
const headline = (['grouped', 'flash'] as const).flatMap((kind) =>
  [2048, 4096].map((cutoff) => {
    const estimate = (gradientCheckpointing: boolean, checkpointFrozenLayers = false) =>
      estimateTrainingMemory({
        config: big,
        parameters: bigParams,
        trainable: new Set(bigPolicy.trainable),
        batch: 1,
        seq: cutoff,
        computeDtype: 'bfloat16',
        masterDtype: 'float32',
        attention: kind,
        device: 'cuda',
        gradientCheckpointing,
        checkpointFrozenLayers,
      })
    return { attention: kind, cutoff, on: estimate(true), all: estimate(true, true), off: estimate(false) }
  }),
)

function mib(v: number): string {
  return (v / 2 ** 20).toFixed(1)
}
const gib = (v: number) => (v / 2 ** 30).toFixed(1)
const machine = machineInfo()
const command =
  `npx tsx bench/activation-checkpointing.ts --batch ${batch} --seq ${seq} --steps ${steps} --warmup ` + `${warmup}`
const md = [
  '# Activation checkpointing: memory and step time',
  '',
  `Machine: ${describeMachine(machine)}`,
  `Command: \`${command}\``,
  `Model: the small preset (8 layers, hidden 256, vocab 32000), random weights, float32 on the CPU, batch ${batch} x ` +
    `${seq}, AdamW, ${attention} attention (LibTorch ${info().libtorch.version}).`,
  "Peak: CPU allocation high-water mark of one training step (counting allocator in front of LibTorch's), plus the " +
    "weights, gradients and optimizer state the model holds; estimate: `llamapro plan`'s " +
    '(lib/policy/memory-estimate.ts).',
  `Step time: median of ${steps} paired rounds (one step with checkpointing, one without, alternating order) after ` +
    `${warmup} warm-up rounds; the cost is the ratio of the medians, measured in the same run. CPU time is the ` +
    `process's user + system time per step (all threads), which other tenants of a shared machine disturb less ` +
    `than wall time. Load average at the start: ${loadAtStart}.`,
  '',
  '| strategy | checkpointing | activations kept (est.) | estimated peak | measured peak | estimate / measured | ' +
    'step (median, p10-p90) | CPU time per step | loss |',
  '|---|---|---|---|---|---|---|---|---|',
  ...rows.flatMap((r) =>
    (['on', 'off'] as const).map((key) => {
      const s = r[key]
      return (
        `| ${r.strategy} | ${key} | ${mib(s.estimate.activations)} MiB | ${mib(s.estimate.peak)} MiB | ` +
        `${mib(s.measuredPeak)} MiB | ${(s.estimate.peak / s.measuredPeak).toFixed(3)} | ` +
        `${s.msPerStep.median.toFixed(0)} ms (${s.msPerStep.p10.toFixed(0)}-${s.msPerStep.p90.toFixed(0)}) | ` +
        `${s.cpuMsPerStep.median.toFixed(0)} ms | ${s.loss.toFixed(6)} |`
      )
    }),
  ),
  '',
  '| strategy | measured peak on / off | step time on / off | CPU time on / off (the cost of recomputing) |',
  '|---|---|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.strategy} | ${(r.on.measuredPeak / r.off.measuredPeak).toFixed(3)} | ${r.stepTimeRatio.toFixed(3)} | ` +
      `${r.cpuTimeRatio.toFixed(3)} |`,
  ),
  '',
  'The estimate for the job issue 12 names (Llama-3-8B expanded to 40 layers, `use_llama_pro` with 8 blocks, bf16 ' +
    "activations, float32 master weights, CUDA, batch 1), with LibTorch 1.x's attention (grouped: the [T, T] scores " +
    "are kept; what `llamapro plan` assumes where LibTorch 1.13 is installed) and 2.x's (flash). Estimates only: " +
    'no GPU was used.',
  '',
  '| attention | cutoff | checkpointing | activations | recomputed layer | peak |',
  '|---|---|---|---|---|---|',
  ...headline.flatMap((h) => [
    `| ${h.attention} | ${h.cutoff} | off | ${gib(h.off.activations)} GiB | - | ${gib(h.off.peak)} GiB |`,
    `| ${h.attention} | ${h.cutoff} | on (the layers that train) | ${gib(h.on.activations)} GiB | ` +
      `${gib(h.on.recomputed)} GiB | ${gib(h.on.peak)} GiB |`,
    `| ${h.attention} | ${h.cutoff} | on, frozen layers too | ${gib(h.all.activations)} GiB | ` +
      `${gib(h.all.recomputed)} GiB | ${gib(h.all.peak)} GiB |`,
  ]),
].join('\n')
await writeResult(
  'activation-checkpointing',
  { benchmark: 'activation-checkpointing', command, machine, batch, seq, steps, warmup, attention, rows, headline },
  md,
)
console.log(md)
