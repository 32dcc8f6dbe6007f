import t from 'tap'
import { join } from 'node:path'
import { LlamaModel } from '../lib/index.js'
import { native } from '../lib/native/load.js'
import { freezePolicy } from '../lib/policy/freeze-policy.js'
import { estimateTrainingMemory } from '../lib/policy/memory-estimate.js'
import type { NativeTrainStepOptions } from '../lib/native/binding.js'
import { tinyRawConfig, writeTinyModel } from './helpers/tiny-model.js'

const STEP: NativeTrainStepOptions = {
  lossMultiplier: 1,
  update: true,
  lr: 1e-2,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.1,
  maxGradNorm: 1,
  reportParamNorms: false,
}

function batch(b: number, seq: number, vocab: number, salt = 0): Int32Array {
  return new Int32Array(b * seq).map((_, i) => (i * 7919 + salt * 104729 + 13) % vocab)
}

t.test('after setTrainable, backward gives gradients to exactly the trainable set', async (t) => {
  const model = await LlamaModel.random(tinyRawConfig({ layers: 6, kvHeads: 2, modelType: 'qwen2' }), { seed: 3 })
  const names = model.parameters().map((p) => p.name)
  const plan = freezePolicy(6, names, {
    useLlamaPro: true,
    freezeTrainableLayers: 2,
    freezeTrainableModules: 'mlp,self_attn',
  })
  await model.setTrainable(plan.trainable)
  t.same(
    model
      .parameters()
      .filter((p) => p.requiresGrad)
      .map((p) => p.name),
    plan.trainable,
  )
  const ids = batch(2, 12, 96)
  await model.native.trainStep(ids, ids, 2, 12, { ...STEP, update: false })
  const grads = await model.native.gradients()
  t.same(
    grads.map((g) => g.name).sort(),
    [...plan.trainable].sort(),
    'gradients exist for the trainable parameters and nothing else',
  )
  t.ok(
    grads.every((g) => g.norm > 0),
    'each of them is non-zero',
  )
  const memory = model.native.memory()
  const trainableBytes = model
    .parameters()
    .filter((p) => p.requiresGrad)
    .reduce((s, p) => s + p.numel * 4, 0)
  t.equal(memory.gradientBytes, trainableBytes, 'gradient memory is exactly the trainable parameters (float32)')
  model.dispose()
})

t.test(
  'frozen tensors are bit-identical after optimizer steps; trainable ones change; no optimizer state for frozen ones',
  async (t) => {
    const dir = t.testdir()
    const base = await writeTinyModel(join(dir, 'm'), { layers: 4, dtype: 'BF16', seed: 9 })
    const model = await LlamaModel.load(base.dir)
    const names = model.parameters().map((p) => p.name)
    const plan = freezePolicy(4, names, { freezeTrainableLayers: 1, freezeExtraModules: 'norm' })
    await model.setTrainable(plan.trainable)
    const before = new Map<string, Buffer>()
    const bytesOf = async (name: string) => Buffer.from(await model.native.tensorBytes(name, 'BF16'))
    for (const name of names) before.set(name, await bytesOf(name))
    model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
    for (let i = 0; i < 3; i++) {
      const ids = batch(2, 10, 96, i)
      const result = await model.native.trainStep(ids, ids, 2, 10, STEP)
      t.ok(result.updated)
    }
    for (const name of plan.frozen) {
      if (!before.get(name)!.equals(await bytesOf(name))) t.fail(`${name} changed`)
    }
    for (const name of plan.trainable) {
      if (before.get(name)!.equals(await bytesOf(name))) t.fail(`${name} did not change`)
    }
    const state = model.native.optimizerState()
    t.equal(state.step, 3)
    t.same(state.names.sort(), plan.trainable.flatMap((n) => [`exp_avg:${n}`, `exp_avg_sq:${n}`]).sort())
    const trainableNumel = model
      .parameters()
      .filter((p) => p.requiresGrad)
      .reduce((s, p) => s + p.numel, 0)
    t.equal(
      model.native.memory().optimizerBytes,
      2 * 4 * trainableNumel,
      'optimizer state: two float32 tensors per trainable parameter, none for frozen ones',
    )
    t.same(
      [
        ...new Set(
          model
            .parameters()
            .filter((p) => p.requiresGrad)
            .map((p) => p.dtype),
        ),
      ],
      ['float32'],
      'trainable parameters are float32 master weights',
    )
    model.dispose()
  },
)

t.test('pure bf16 keeps trainable parameters in bfloat16; unfreezing returns them to the model dtype', async (t) => {
  const model = await LlamaModel.random(tinyRawConfig({ layers: 2 }), { dtype: 'bfloat16' })
  const layer1 = model
    .parameters()
    .filter((p) => p.name.startsWith('model.layers.1.'))
    .map((p) => p.name)
  await model.setTrainable(layer1, { masterDtype: 'bfloat16' })
  t.same(
    [
      ...new Set(
        model
          .parameters()
          .filter((p) => p.requiresGrad)
          .map((p) => p.dtype),
      ),
    ],
    ['bfloat16'],
  )
  await model.setTrainable(layer1)
  t.same(
    [
      ...new Set(
        model
          .parameters()
          .filter((p) => p.requiresGrad)
          .map((p) => p.dtype),
      ),
    ],
    ['float32'],
  )
  await model.setTrainable([])
  t.same([...new Set(model.parameters().map((p) => p.dtype))], ['bfloat16'], 'frozen again: back in the model dtype')
  await t.rejects(model.setTrainable(['model.layers.9.mlp.up_proj.weight']), {
    message: /no parameter named "model\.layers\.9\.mlp\.up_proj\.weight"/,
  })
  model.dispose()
})

t.test('the memory estimate is within 20% of the measured CPU allocation high-water mark', async (t) => {
  const raw = tinyRawConfig({ layers: 8, hidden: 128, intermediate: 344, heads: 4, kvHeads: 2, vocab: 4000 })
  const [B, T] = [4, 64]
  for (const [label, options] of [
    ['full', { finetuningType: 'full' }],
    ['last 2', { freezeTrainableLayers: 2 }],
    ['LLaMA-Pro 4', { useLlamaPro: true, freezeTrainableLayers: 4 }],
  ] as const) {
    const model = await LlamaModel.random(raw, { seed: 1 })
    const params = model.parameters()
    const plan = freezePolicy(
      8,
      params.map((p) => p.name),
      options,
    )
    await model.setTrainable(plan.trainable)
    model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
    const ids = batch(B, T, 4000)
    await model.native.trainStep(ids, ids, B, T, STEP) // the first step allocates optimizer state
    native().resetPeakMemory()
    await model.native.trainStep(ids, ids, B, T, STEP)
    const measured = native().memoryStats().cpu.peak
    const attention = Number(native().runtimeInfo().torchVersion.split('.')[0]) >= 2 ? 'flash' : 'grouped'
    const estimate = estimateTrainingMemory({
      config: model.config,
      parameters: params,
      trainable: new Set(plan.trainable),
      batch: B,
      seq: T,
      computeDtype: 'float32',
      attention,
    })
    const ratio = estimate.peak / measured
    t.ok(
      ratio > 0.8 && ratio < 1.2,
      `${label}: estimated ${(estimate.peak / 1e6).toFixed(1)} MB, measured ${(measured / 1e6).toFixed(1)} MB (ratio ` +
        `${ratio.toFixed(3)})`,
    )
    model.dispose()
  }
})

t.test('synchronous methods answer LLAMAPRO_BUSY instead of blocking the JS thread while a step runs', async (t) => {
  const model = await LlamaModel.random(tinyRawConfig({ layers: 4, hidden: 256, intermediate: 1024, vocab: 4000 }), {
    seed: 5,
  })
  await model.setTrainable(model.parameters().map((p) => p.name))
  model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
  const ids = batch(8, 256, 4000)
  let settled = false
  const step = model.native.trainStep(ids, ids, 8, 256, STEP).finally(() => (settled = true))
  const calls = { busy: 0, answered: 0, slowest: 0 }
  const failures = new Set<string>()
  while (!settled) {
    const started = performance.now()
    try {
      model.parameters()
      calls.answered++
    } catch (error) {
      failures.add(`${(error as { code?: string }).code}: ${(error as Error).message}`)
      calls.busy++
    }
    calls.slowest = Math.max(calls.slowest, performance.now() - started)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  await step
  t.same(
    [...failures],
    [
      'LLAMAPRO_BUSY: parameters: the model is busy with an asynchronous operation (await it before calling parameters)',
    ],
  )
  t.ok(calls.busy > 0, `${calls.busy} calls during the step found the model busy (and ${calls.answered} found it free)`)
  t.ok(calls.slowest < 50, `no call waited for the step: the slowest took ${calls.slowest.toFixed(1)} ms`)
  t.equal(
    model.parameters().length,
    model.native.parameters().length,
    'once the step is done, the methods answer again',
  )
  model.dispose()
})
