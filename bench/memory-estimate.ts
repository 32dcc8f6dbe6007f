/**
 * The memory estimate of `llamapro plan` against the CPU allocation high-water mark of real training steps, for
 * full fine-tuning, last-N and LLaMA-Pro on the small preset.
 * Usage: npx tsx bench/memory-estimate.ts [--batch 4] [--seq 128]
 */
import { parseArgs } from 'node:util'
import { LlamaModel, info } from '../lib/index.js'
import { describeMachine, machineInfo } from '../lib/bench/machine.js'
import { PRESETS } from '../lib/bench/presets.js'
import { native } from '../lib/native/load.js'
import { freezePolicy } from '../lib/policy/freeze-policy.js'
import { estimateTrainingMemory } from '../lib/policy/memory-estimate.js'
import { writeResult } from './lib/results.js'

const { values } = parseArgs({
  options: { batch: { type: 'string', default: '4' }, seq: { type: 'string', default: '128' } },
})
const [batch, seq] = [Number(values.batch), Number(values.seq)]
const preset = PRESETS.small!
const attention = Number(info().libtorch.version.split('.')[0]) >= 2 ? 'flash' : 'grouped'
const rows: { strategy: string; estimate: ReturnType<typeof estimateTrainingMemory>; measured: number }[] = []
for (const [strategy, options] of [
  ['full', { finetuningType: 'full' }],
  ['last:2', { freezeTrainableLayers: 2 }],
  ['pro:2', { useLlamaPro: true, freezeTrainableLayers: 2 }],
] as const) {
  const model = await LlamaModel.random(preset.config, { seed: 0 })
  const params = model.parameters()
  const policy = freezePolicy(
    8,
    params.map((p) => p.name),
    options,
  )
  await model.setTrainable(policy.trainable)
  model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
  const ids = new Int32Array(batch * seq).map((_, i) => (i * 7919) % (preset.config.vocab_size as number))
  const step = {
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
  await model.native.trainStep(ids, ids, batch, seq, step)
  native().resetPeakMemory()
  await model.native.trainStep(ids, ids, batch, seq, step)
  const measured = native().memoryStats().cpu.peak
  rows.push({
    strategy,
    measured,
    estimate: estimateTrainingMemory({
      config: model.config,
      parameters: params,
      trainable: new Set(policy.trainable),
      batch,
      seq,
      computeDtype: 'float32',
      attention,
    }),
  })
  model.dispose()
}
const mib = (v: number) => (v / 2 ** 20).toFixed(1)
const machine = machineInfo()
const command = `npx tsx bench/memory-estimate.ts --batch ${batch} --seq ${seq}`
const md = [
  '# Memory estimate (`llamapro plan`) versus measured',
  '',
  `Machine: ${describeMachine(machine)}`,
  `Command: \`${command}\``,
  `Model: the small preset (8 layers, hidden 256, vocab 32000), float32, batch ${batch} x ${seq}, AdamW. Measured: ` +
    `the CPU allocation high-water mark of the second training step (counting allocator in front of LibTorch's).`,
  '',
  '| strategy | weights | gradients | optimizer | activations | estimated peak | measured peak | estimate / measured |',
  '|---|---|---|---|---|---|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.strategy} | ${mib(r.estimate.weights)} MiB | ${mib(r.estimate.gradients)} MiB | ` +
      `${mib(r.estimate.optimizer)} MiB | ${mib(r.estimate.activations)} MiB | ${mib(r.estimate.peak)} MiB | ` +
      `${mib(r.measured)} MiB | ${(r.estimate.peak / r.measured).toFixed(3)} |`,
  ),
].join('\n')
await writeResult('memory-estimate', { benchmark: 'memory-estimate', command, machine, batch, seq, rows }, md)
console.log(md)
