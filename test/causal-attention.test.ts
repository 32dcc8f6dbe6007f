// The fused causal attention of LibTorch 1.x builds with oneDNN (native/causal_attention.h): scores, masked softmax
// and the value product in one autograd node, against the composite form it replaces (baddbmm, softmax, bmm with
// an additive mask; the kernel option fusedAttention false, LLAMAPRO_FUSED_ATTENTION=0, in effect from the next call).
// Two independent implementations of the same
// attention must give the same loss and gradients to float32 rounding — grouped-query heads, a sliding window
// shorter than the batch, biases, padded sft batches (the row plan's grid) — and checkpointing on and off must stay
// exactly equal with it. training-numerics.test.ts compares the default path with PyTorch itself.
import t, { type Test } from 'tap'
import { LlamaModel, info, kernelOptions, setKernelOptions } from '../lib/index.js'
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

// The fused form is built only where LibTorch has no scaled_dot_product_attention (1.x) and used where oneDNN runs
// the products; elsewhere the comparisons below would compare one path with itself.
const runtime = info()
const fusedBuilt = Number(runtime.libtorch.version.split('.')[0]) < 2 && runtime.cpuGemm.library === 'onednn'
const skip = fusedBuilt
  ? false
  : `LibTorch ${runtime.libtorch.version} with ${runtime.cpuGemm.library} products: attention is SDPA or the ` +
    `composite form`

function sftBatch(lengths: number[], seq: number, vocab: number) {
  const ids = new Int32Array(lengths.length * seq)
  const labels = new Int32Array(lengths.length * seq).fill(-100)
  lengths.forEach((length, row) => {
    for (let i = 0; i < length; i++) {
      ids[row * seq + i] = 1 + ((row * 97 + i * 29 + 3) % (vocab - 1))
      if (i >= 2) labels[row * seq + i] = ids[row * seq + i]!
    }
  })
  return { ids, labels, batch: lengths.length, seq }
}

async function trained(
  fused: boolean,
  raw: Record<string, unknown>,
  options: FreezeOptions,
  data: ReturnType<typeof sftBatch>,
  checkpointing = true,
) {
  setKernelOptions({ fusedAttention: fused })
  const model = await LlamaModel.random(raw, { seed: 3, gradientCheckpointing: checkpointing })
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
  const composite = await trained(false, raw, options, data)
  const fused = await trained(true, raw, options, data)
  const relative = (a: number, b: number) => Math.abs(a - b) / Math.abs(b)
  t.ok(
    relative(fused.step.loss, composite.step.loss) <= 1e-5,
    `${label}: training loss ${fused.step.loss} against ${composite.step.loss}`,
  )
  t.ok(
    relative(fused.evaluation.loss, composite.evaluation.loss) <= 1e-5,
    `${label}: evaluation loss (no graph) ${fused.evaluation.loss} against ${composite.evaluation.loss}`,
  )
  const { worst, scales } = await gradientGap(fused.model, composite.model, fused.trainable)
  t.ok(
    scales.every((s) => s > 0),
    `${label}: every trainable tensor has a gradient`,
  )
  t.ok(
    worst.relative <= 1e-4,
    `${label}: gradients equal to float32 rounding (worst ${worst.name}: ${worst.relative.toExponential(2)})`,
  )
  composite.model.dispose()
  fused.model.dispose()
}

const initial = kernelOptions()
t.afterEach(() => {
  setKernelOptions(initial)
})

t.test('the same losses and gradients as the composite attention', { skip }, async (t) => {
  const padded = sftBatch([20, 9, 14, 4], 20, 150) // the row plan packs these rows onto the grid in every layer
  const full = sftBatch([16, 16, 16], 16, 150)
  const gqa = tinyRawConfig({ layers: 4, hidden: 64, intermediate: 128, heads: 4, kvHeads: 2, vocab: 150 })
  const cases: [string, Record<string, unknown>, FreezeOptions, ReturnType<typeof sftBatch>][] = [
    [
      'llama, 4 query heads on 2 KV heads, LLaMA-Pro blocks, padded rows',
      gqa,
      { useLlamaPro: true, freezeTrainableLayers: 2 },
      padded,
    ],
    ['llama, full fine-tuning, no padding', gqa, { finetuningType: 'full' }, full],
    [
      'llama, one KV head for 4 query heads',
      tinyRawConfig({ layers: 3, heads: 4, kvHeads: 1, vocab: 150 }),
      { finetuningType: 'full' },
      padded,
    ],
    [
      'mistral, sliding window 5 (shorter than the rows)',
      { ...tinyRawConfig({ layers: 3, modelType: 'mistral', vocab: 150 }), sliding_window: 5 },
      { finetuningType: 'full' },
      padded,
    ],
    [
      'qwen2 biases, tied embeddings',
      tinyRawConfig({ layers: 3, modelType: 'qwen2', kvHeads: 2, tie: true, vocab: 150 }),
      { freezeTrainableLayers: 1 },
      full,
    ],
  ]
  for (const [label, raw, options, data] of cases) await expectClose(t, label, raw, options, data)
})

t.test('with the fused attention, checkpointing on and off give the same numbers', { skip }, async (t) => {
  const data = sftBatch([18, 7, 12], 18, 150)
  const raw = tinyRawConfig({ layers: 6, hidden: 64, intermediate: 128, heads: 4, kvHeads: 2, vocab: 150 })
  const on = await trained(true, raw, { useLlamaPro: true, freezeTrainableLayers: 2 }, data, true)
  const off = await trained(true, raw, { useLlamaPro: true, freezeTrainableLayers: 2 }, data, false)
  t.equal(on.step.loss, off.step.loss, `loss ${on.step.loss}`)
  const pairs = on.trainable.map((n) => [`grad:${n}`, `grad:${n}`] as [string, string])
  const differences = await on.model.native.maxAbsDifference(off.model.native, pairs)
  t.ok(
    differences.every((d) => d === 0),
    `every gradient identical (largest difference ${Math.max(...differences)})`,
  )
  on.model.dispose()
  off.model.dispose()
})

// The fused node must really run: its step has no batched products (aten::bmm) and no softmax operator; with
// LLAMAPRO_FUSED_ATTENTION=0 it has both. (In a child process, so through the environment: the variable reaches the
// option.) Without this the comparisons above could compare one path with itself.

t.test('the fused node is what runs', { skip }, async (t) => {
  const profile = (fused: string) => profiledStep({ LLAMAPRO_FUSED_ATTENTION: fused })
  const fused = await profile('1')
  t.match(fused, /^llamapro::onednn_sgemm\s/m, 'the profile was printed')
  t.notMatch(fused, /^aten::(bmm|baddbmm|_softmax)\s/m, 'fused: no batched products, no softmax operator')
  t.match(fused, /^llamapro::causal_attention\s/m, 'fused: the fused node ran')
  const composite = await profile('0')
  t.match(composite, /^aten::(bmm|baddbmm)\s/m, 'LLAMAPRO_FUSED_ATTENTION=0: the composite form')
  t.match(composite, /^aten::_softmax\s/m)
})
