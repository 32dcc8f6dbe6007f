// The row plan (native/llama_modules.h RowPlan): a training step computes only the rows its loss reads — no padding
// after a sequence's last counted prediction (when that is 1/32 of the batch or more), and in the last layer only the
// counted rows. It must change no number beyond float32 rounding: the same loss and gradients as computing every
// row (the kernel option rowPlan false, LLAMAPRO_ROW_PLAN=0), for every architecture and freeze strategy; and with it,
// checkpointing on
// and off stay exactly equal (activation-checkpointing.test.ts trains padded sft batches both ways).
import t, { type Test } from 'tap'
import { LlamaModel, kernelOptions, setKernelOptions } from '../lib/index.js'
import type { NativeTrainStepOptions } from '../lib/native/binding.js'
import { type FreezeOptions, freezePolicy } from '../lib/policy/freeze-policy.js'
import { gradientGap } from './helpers/gradient-gap.js'
import { profiledStep } from './helpers/profiled-step.js'
import { tinyRawConfig } from './helpers/tiny-model.js'

const STEP: NativeTrainStepOptions = {
  lossMultiplier: 1,
  update: false,
  lr: 1e-2,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0,
  maxGradNorm: 0,
  reportParamNorms: false,
}

/**
 * A right-padded sft batch: row r holds lengths[r] tokens, the first `prompt` of them labelled -100, then padding (id
 * 0, -100).
 */
function sftBatch(lengths: number[], seq: number, vocab: number, prompt = 3) {
  const ids = new Int32Array(lengths.length * seq)
  const labels = new Int32Array(lengths.length * seq).fill(-100)
  lengths.forEach((length, row) => {
    for (let t = 0; t < length; t++) {
      const id = 1 + ((row * 131 + t * 17 + 5) % (vocab - 1))
      ids[row * seq + t] = id
      if (t >= prompt) labels[row * seq + t] = id
    }
  })
  return { ids, labels, batch: lengths.length, seq }
}

async function trained(
  raw: Record<string, unknown>,
  options: FreezeOptions,
  plan: boolean,
  data: ReturnType<typeof sftBatch>,
  checkpointing = true,
) {
  setKernelOptions({ rowPlan: plan })
  const model = await LlamaModel.random(raw, { seed: 11, gradientCheckpointing: checkpointing })
  const policy = freezePolicy(
    model.config.numLayers,
    model.parameters().map((p) => p.name),
    options,
  )
  await model.setTrainable(policy.trainable)
  model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
  const step = await model.native.trainStep(data.ids, data.labels, data.batch, data.seq, STEP)
  const evaluation = await model.native.loss(data.ids, data.labels, data.batch, data.seq)
  return { model, step, evaluation, trainable: policy.trainable }
}

async function expectClose(
  t: Test,
  label: string,
  raw: Record<string, unknown>,
  options: FreezeOptions,
  data: ReturnType<typeof sftBatch>,
) {
  const all = await trained(raw, options, false, data)
  const planned = await trained(raw, options, true, data)
  const relative = (a: number, b: number) => Math.abs(a - b) / Math.abs(b)
  t.ok(
    relative(planned.step.loss, all.step.loss) <= 1e-5,
    `${label}: training loss ${planned.step.loss} = ${all.step.loss} (every row)`,
  )
  t.ok(
    relative(planned.evaluation.loss, all.evaluation.loss) <= 1e-5,
    `${label}: evaluation loss ${planned.evaluation.loss} = ${all.evaluation.loss}`,
  )
  t.equal(planned.evaluation.tokens, all.evaluation.tokens, `${label}: the same counted tokens`)
  const names = (await all.model.native.gradients()).map((g) => g.name).sort()
  t.same(
    (await planned.model.native.gradients()).map((g) => g.name).sort(),
    names,
    `${label}: gradients for the same parameters`,
  )
  const { worst, scales } = await gradientGap(planned.model, all.model, names)
  t.ok(
    worst.relative <= 1e-4,
    `${label}: every gradient equal to float32 rounding (worst ${worst.name}: ${worst.relative.toExponential(2)})`,
  )
  t.ok(
    scales.some((s) => s > 0),
    `${label}: the gradients are not all zero`,
  )
  all.model.dispose()
  planned.model.dispose()
}

const initial = kernelOptions()
t.afterEach(() => {
  setKernelOptions(initial)
})

t.test('the same losses and gradients as computing every row, for each architecture and freeze strategy', async (t) => {
  // 33 of 80 positions are padding: the decoder packs the rows, and the last layer keeps the counted ones.
  const data = sftBatch([20, 9, 14, 4], 20, 150)
  const llama = tinyRawConfig({ layers: 6, hidden: 64, intermediate: 128, heads: 4, kvHeads: 2, vocab: 150 })
  const cases: [string, Record<string, unknown>, FreezeOptions][] = [
    ['llama, the last two layers train (the last one checkpointed)', llama, { freezeTrainableLayers: 2 }],
    ['llama, LLaMA-Pro blocks 2 and 5', llama, { useLlamaPro: true, freezeTrainableLayers: 2 }],
    [
      'llama, only layer 1 (the last layer frozen, its input needs a gradient)',
      llama,
      { freezeTrainableLayerIds: '1' },
    ],
    ['llama, full fine-tuning', llama, { finetuningType: 'full' }],
    [
      'mistral, sliding window 5',
      { ...tinyRawConfig({ layers: 4, modelType: 'mistral', vocab: 150 }), sliding_window: 5 },
      { freezeTrainableLayers: 2 },
    ],
    [
      'qwen2 biases, tied embeddings',
      tinyRawConfig({ layers: 4, modelType: 'qwen2', kvHeads: 2, tie: true, vocab: 150 }),
      { finetuningType: 'full' },
    ],
  ]
  for (const [label, raw, options] of cases) await expectClose(t, label, raw, options, data)
})

t.test('little padding (under 1/32: rows not packed) and a row with nothing counted', async (t) => {
  const llama = tinyRawConfig({ layers: 4, vocab: 150 })
  await expectClose(
    t,
    'one token of padding in 4 x 16',
    llama,
    { freezeTrainableLayers: 2 },
    sftBatch([16, 16, 16, 15], 16, 150),
  )
  // Row 1 is all prompt: it is read by nothing, and packed out entirely.
  await expectClose(
    t,
    'a row with no counted label',
    llama,
    { freezeTrainableLayers: 2 },
    sftBatch([12, 3, 10], 12, 150),
  )
  // Every position counted (pt): no row is left out but each row's last.
  const ids = new Int32Array(2 * 16).map((_, i) => 1 + ((i * 37) % 149))
  await expectClose(
    t,
    'pt, every label counted',
    llama,
    { freezeTrainableLayers: 2 },
    { ids, labels: ids, batch: 2, seq: 16 },
  )
})

t.test('with the row plan, checkpointing on and off give the same numbers', async (t) => {
  const data = sftBatch([18, 7, 12], 18, 150)
  const raw = tinyRawConfig({ layers: 6, hidden: 64, intermediate: 128, heads: 4, kvHeads: 2, vocab: 150 })
  const on = await trained(raw, { useLlamaPro: true, freezeTrainableLayers: 2 }, true, data, true)
  const off = await trained(raw, { useLlamaPro: true, freezeTrainableLayers: 2 }, true, data, false)
  t.equal(on.step.loss, off.step.loss, `loss ${on.step.loss}`)
  const pairs = on.trainable.map((n) => [`grad:${n}`, `grad:${n}`] as [string, string])
  const differences = await on.model.native.maxAbsDifference(off.model.native, pairs)
  const scales = await off.model.native.tensorMaxAbs(pairs.map((p) => p[0]))
  t.ok(
    differences.every((d, i) => d <= 1e-6 * scales[i]!),
    `every gradient equal (worst ${Math.max(...differences).toExponential(2)})`,
  )
  on.model.dispose()
  off.model.dispose()
})

// The plan must really run: with it, the step scatters q/k/v onto the grid (aten::index_copy_ in the op profile);
// with LLAMAPRO_ROW_PLAN=0 it does not. Without this, the comparisons above could pass with the plan never taken.

t.test(
  'the plan is taken: packed rows are scattered for attention; LLAMAPRO_ROW_PLAN=0 computes every row',
  async (t) => {
    const profile = (plan: string) => profiledStep({ LLAMAPRO_ROW_PLAN: plan })
    const planned = await profile('1')
    t.match(planned, /^aten::index_copy_\s/m, 'with the plan: q, k and v are scattered onto the [batch, seq] grid')
    t.match(planned, /^(aten::mm|llamapro::onednn_sgemm)\s/m, 'the products are in the profile')
    const all = await profile('0')
    t.notMatch(all, /^aten::index_copy_\s/m, 'LLAMAPRO_ROW_PLAN=0: no scatter, every row computed')
  },
)
